"""The typist of the typing replays: its keystrokes rebuild the real file, in bursts and pauses."""

from __future__ import annotations

from suggest_ls.harness.typist import DEFAULT_FILES, Rhythm, plan, stdlib_file
from suggest_ls.harness.wire import position


def test_replayed_keystrokes_type_the_file_back():
    sources, keys = plan(list(DEFAULT_FILES), 40, Rhythm(), seed=7)
    docs = [s.initial for s in sources]
    for k in keys:
        docs[k.doc] = docs[k.doc][: k.offset] + k.text + docs[k.doc][k.offset :]
    for src, doc in zip(sources, docs, strict=True):
        original = stdlib_file(src.path).read_text(encoding="utf-8")
        assert doc[: src.start + len(src.typed)] == original[: src.start + len(src.typed)]
        assert original.endswith(doc[src.start + len(src.typed) :])
        assert src.typed and not src.initial[src.start : src.initial.find("\n", src.start)].strip()
    times = [k.at for k in keys]
    assert times == sorted(times) and times[-1] <= 40
    assert {k.doc for k in keys} == {0, 1}
    assert 0 < sum(k.pause_after for k in keys) < len(keys) / 3
    assert all(k.text.strip(" \t") or k.text.startswith("\n") or k.text == " " for k in keys)


def test_same_seed_same_replay_and_positions_in_utf16():
    assert plan(list(DEFAULT_FILES), 10, Rhythm(), seed=3) == plan(list(DEFAULT_FILES), 10, Rhythm(), seed=3)
    assert position("ab\n😀x", 5) == {"line": 1, "character": 3}
