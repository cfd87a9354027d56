"""SettingsStore: the one owner of the current settings and the callbacks told of each change."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import Any

import pytest

from suggest_ls.settings import DEFAULTS, Settings, SettingsStore

# (raw updates in turn, expected (old, new) field changes told to a subscriber, expected messages in turn)
UPDATES: list[tuple[str, list[Any], list[dict[str, tuple[Any, Any]]], list[list[str]]]] = [
    ("one change", [{"parallel": 2}], [{"parallel": (4, 2)}], [[]]),
    ("section wrapper", [{"suggestLs": {"enabled": False}}], [{"enabled": (True, False)}], [[]]),
    ("two options, one call", [{"parallel": 2, "debounceMs": 5}], [{"parallel": (4, 2), "debounce_ms": (-1, 5)}], [[]]),
    (
        "invalid value: no change, a message",
        [{"parallel": 0}],
        [],
        [["invalid value 0 for suggestLs.parallel; keeping 4"]],
    ),
    ("unknown option", [{"colour": "blue"}], [], [["unknown setting suggestLs.colour ignored"]]),
    (
        "valid beside invalid",
        [{"parallel": 2, "temperature": "hot"}],
        [{"parallel": (4, 2)}],
        [["invalid value 'hot' for suggestLs.temperature; keeping 0.1"]],
    ),
    ("the same value again", [{"parallel": 4}], [], [[]]),
    ("nothing", [None], [], [[]]),
    (
        "layered over the current",
        [{"parallel": 2}, {"temperature": 0.5}, {"temperature": 0.5}, {"parallel": 3}],
        [{"parallel": (4, 2)}, {"temperature": (0.1, 0.5)}, {"parallel": (2, 3)}],
        [[], [], [], []],
    ),
]


def _diff(old: Settings, new: Settings) -> dict[str, tuple[Any, Any]]:
    return {
        f.name: (getattr(old, f.name), getattr(new, f.name))
        for f in dataclasses.fields(Settings)
        if getattr(old, f.name) != getattr(new, f.name)
    }


@pytest.mark.parametrize(("raws", "told", "messages"), [c[1:] for c in UPDATES], ids=[c[0] for c in UPDATES])
def test_update_tells_each_change_once(raws, told, messages):
    store = SettingsStore()
    seen: list[tuple[Settings, Settings]] = []
    store.subscribe(lambda old, new: seen.append((old, new)))
    got = [store.update(raw) for raw in raws]
    assert got == messages
    assert [_diff(old, new) for old, new in seen] == told
    assert all(new is not old for old, new in seen)
    assert store.current == (seen[-1][1] if seen else DEFAULTS)
    for (_, new), (old, _) in itertools.pairwise(seen):  # each change starts where the last ended
        assert old is new


# (subscribers, by name: "ok" records, "fails" raises; expected records in order, expected failures logged)
SUBSCRIBERS: list[tuple[str, list[str], list[str], int]] = [
    ("in subscription order", ["ok", "ok", "ok"], ["0", "1", "2"], 0),
    ("a failing one does not stop the others", ["ok", "fails", "ok"], ["0", "2"], 1),
    ("the first failing", ["fails", "ok"], ["1"], 1),
    ("all failing", ["fails", "fails"], [], 2),
    ("none", [], [], 0),
]


@pytest.mark.parametrize(
    ("kinds", "records", "failures"), [c[1:] for c in SUBSCRIBERS], ids=[c[0] for c in SUBSCRIBERS]
)
def test_subscribers_in_order_and_a_failing_one_is_logged(kinds, records, failures, caplog):
    store = SettingsStore()
    seen: list[str] = []

    def make(i: int, kind: str):
        def callback(old: Settings, new: Settings) -> None:
            if kind == "fails":
                raise RuntimeError(f"subscriber {i}")
            seen.append(str(i))

        return callback

    for i, kind in enumerate(kinds):
        store.subscribe(make(i, kind))
    with caplog.at_level(logging.ERROR, logger="suggest_ls.settings"):
        assert store.update({"parallel": 2}) == []
    assert seen == records
    assert store.current.parallel == 2  # taken even when a subscriber fails
    logged = [r for r in caplog.records if r.name == "suggest_ls.settings"]
    assert len(logged) == failures
    assert all(r.exc_info and "settings subscriber" in r.getMessage() for r in logged)


# (the settings set in turn, as changed fields over the defaults; how many changes are told)
SETS: list[tuple[str, list[dict[str, Any]], int]] = [
    ("a new value", [{"model": "/m.gguf"}], 1),
    ("equal to the current", [{}], 0),
    ("back and forth", [{"enabled": False}, {}, {}], 2),
]


@pytest.mark.parametrize(("changes", "calls"), [c[1:] for c in SETS], ids=[c[0] for c in SETS])
def test_set_replaces_and_tells_only_changes(changes, calls):
    store = SettingsStore()
    seen: list[Settings] = []
    store.subscribe(lambda _old, new: seen.append(new))
    for change in changes:
        store.set(dataclasses.replace(DEFAULTS, **change))
    assert len(seen) == calls
    assert store.current == dataclasses.replace(DEFAULTS, **changes[-1])


def test_a_store_starts_from_its_initial_settings():
    initial = Settings(parallel=2)
    store = SettingsStore(initial)
    assert store.current is initial
    assert store.update({"temperature": 0.5}) == []
    assert (store.current.parallel, store.current.temperature) == (2, 0.5)
