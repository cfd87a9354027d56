"""Acceptance counting and the per-request figures alerts and metrics read."""

from __future__ import annotations

from suggest_ls.completion.stats import Acceptance, Record, Recorder, outcome_class


def test_full_and_partial_acceptance_rates():
    acc = Acceptance()
    a = acc.offer("file:///a.py", 10)
    b = acc.offer("file:///a.py", 20)
    acc.offer("file:///b.py", 5)
    assert acc.accept(a)
    assert not acc.accept(a)  # once per suggestion
    assert acc.accept_partially(b, 4)
    assert acc.accept_partially(b, 9)
    assert not acc.accept_partially(b, 3)  # not further than before
    summary = acc.summary()
    assert (summary["offered"], summary["accepted"], summary["partiallyAccepted"]) == (3, 1, 1)
    assert summary["rate"] == round(2 / 3, 3)
    assert summary["acceptedChars"] == 19
    assert not acc.accept("s999") and not acc.accept_partially("nope", 3)


def test_partial_then_full_counts_once_as_accepted():
    acc = Acceptance()
    a = acc.offer("u", 12)
    acc.accept_partially(a, 5)
    acc.accept(a)
    s = acc.summary()
    assert (s["accepted"], s["partiallyAccepted"], s["acceptedChars"], s["rate"]) == (1, 0, 12, 1.0)


def test_inserting_the_start_of_the_shown_suggestion_is_partial_acceptance():
    acc = Acceptance()
    a = acc.offer("u", 20, offset=100, text="total += value * 2\n")
    assert not acc.edit("u", 100, 0, "t")  # typed by hand: moves along, not counted
    assert acc.edit("u", 101, 0, "otal ")  # a word accepted (Ctrl+Right)
    assert acc.edit("u", 106, 0, "+= ")
    assert not acc.edit("u", 109, 0, "x")  # something else: the suggestion is gone
    assert not acc.edit("u", 110, 0, "value")
    s = acc.summary()
    assert (s["partiallyAccepted"], s["acceptedChars"]) == (1, 9)
    assert acc.accept(a)  # accepting the rest later counts once, as accepted
    assert acc.summary()["partiallyAccepted"] == 0


def test_edits_that_are_not_the_suggestions_start_count_nothing():
    acc = Acceptance()
    acc.offer("u", 6, offset=10, text="return")
    assert not acc.edit("other", 10, 0, "return")  # another document
    assert not acc.edit("u", 11, 0, "re")  # not at the suggestion
    acc.offer("u", 6, offset=10, text="return")
    assert not acc.edit("u", 10, 2, "re")  # replaces text
    acc.offer("u", 6, offset=10, text="return")
    assert not acc.edit("u", 10, 0, "return")  # all of it at once: the acceptance command counts it
    acc.offer("u", 6, offset=10, text="return")
    acc.forget("u")
    assert not acc.edit("u", 10, 0, "ret")
    assert acc.summary()["partiallyAccepted"] == 0


def test_decode_rate_counts_only_time_spent_generating():
    rec = Recorder()
    # 11 tokens in 300 ms of engine time, the first after 100 ms: 10 tokens in 0.2 s of generation
    rec.add(Record("u", "shown", total_ms=320, ttft_ms=100, engine_ms=300, generated_tokens=11))
    rec.add(Record("u", "low confidence", total_ms=50, ttft_ms=40, engine_ms=40, generated_tokens=1))
    rec.add(Record("u", "cache", total_ms=1, cache_hit=True))
    rate, requests = rec.decode_rate()
    assert requests == 1 and abs(rate - 50.0) < 1e-6


def test_listeners_see_every_record_and_a_broken_one_is_contained():
    rec = Recorder()
    seen: list[str] = []
    rec.listeners.append(lambda r: seen.append(r.outcome))
    rec.listeners.append(lambda r: 1 / 0)
    rec.add(Record("u", "shown"))
    rec.add(Record("u", "error: boom"))
    assert seen == ["shown", "error: boom"] and rec.requests == 2


def test_outcome_classes_are_bounded():
    assert [
        outcome_class(o) for o in ("shown", "cache", "superseded while debouncing", "error: x", "inside a word")
    ] == [
        "shown",
        "cache",
        "superseded",
        "error",
        "empty",
    ]
