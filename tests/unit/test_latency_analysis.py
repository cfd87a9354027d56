"""The latency replay's bookkeeping: stale answers, answers crossing a keystroke, records by version."""

from __future__ import annotations

import asyncio

from suggest_ls.bench.latency_analysis import Refresh, Sent, analyse
from suggest_ls.harness.client import Call
from suggest_ls.harness.typist import Keystroke, Source

SOURCE = Source("file:///t.py", "/t.py", "x = ", 4, "1")
ITEM = {"items": [{"insertText": "1"}]}


def sent(version: int, typed_at: float, answered: float, result: object) -> Sent:
    done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    call = Call(version, "textDocument/inlineCompletion", typed_at + 0.0001, answered, result, None, done)
    return Sent(Keystroke(typed_at, 0, 4, "1", False), version, typed_at, call)


async def test_stale_answers_and_those_that_crossed_a_keystroke_in_flight():
    calls = [
        sent(2, 0.000, 0.0500, ITEM),  # answered 50 ms before the next keystroke: shown
        sent(3, 0.100, 0.2995, ITEM),  # the next keystroke (0.2990) came 0.5 ms before it arrived: crossed
        sent(4, 0.299, 0.3500, {"items": []}),  # empty: neither shown nor stale
        sent(5, 0.400, 0.6000, ITEM),  # the next keystroke (0.5) came 100 ms before it: stale
        sent(6, 0.500, 0.5500, {"items": []}),
    ]
    records = [
        {"uri": SOURCE.uri, "version": 3, "outcome": "shown", "early": True},
        {"uri": SOURCE.uri, "version": 3, "outcome": "line finished", "prompt_tokens": 9},  # after it
        {"uri": SOURCE.uri, "version": 5, "outcome": "shown", "prompt_tokens": 9, "engine_ms": 1.0},
    ]
    counts = analyse("suggest-ls", calls, records, [SOURCE], None)["counts"]
    assert (counts["shown"], counts["stale"], counts["stale_crossed_in_flight"]) == (1, 2, 1)
    examples = analyse("suggest-ls", calls, records, [SOURCE], None)["stale_examples"]
    assert [(e["version"], e["outcome"], e["early"]) for e in examples] == [(3, "shown", True), (5, "shown", False)]
    assert examples[0]["typed_before_answer_ms"] < 1.0 < examples[1]["typed_before_answer_ms"]
    assert counts["first_words"] == 1 and counts["model_runs"] == 2


async def test_lines_that_came_by_refresh_count_from_their_burst_end():
    def burst_end(version: int, typed_at: float, answered: float, result: object) -> Sent:
        s = sent(version, typed_at, answered, result)
        return Sent(Keystroke(typed_at, 0, 4, "1", True), version, typed_at, s.call)

    loop = asyncio.get_running_loop()

    def again(version: int, at: float, answered: float, result: object) -> Refresh:
        call = Call(100 + version, "textDocument/inlineCompletion", at, answered, result, None, loop.create_future())
        return Refresh(0, version, call)

    calls = [
        burst_end(2, 0.000, 0.230, {"items": []}),  # pending; the whole line came by refresh at 0.400
        burst_end(3, 1.000, 1.100, ITEM),  # answered with a line at once
        burst_end(4, 2.000, 2.230, {"items": []}),  # pending; its refresh crossed the next keystroke
        burst_end(5, 2.450, 2.500, {"items": []}),  # nothing at all
    ]
    refreshes = [again(2, 0.390, 0.400, ITEM), again(4, 2.440, 2.460, ITEM)]
    records = [{"uri": SOURCE.uri, "version": v, "outcome": "line still being written"} for v in (2, 4)]
    raw = analyse("suggest-ls", calls, records, [SOURCE], None, refreshes)
    counts, lists = raw["counts"], raw["lists"]
    assert counts["pending"] == 2 and counts["refresh_whole_lines"] == 2 and counts["refresh_stale"] == 1
    assert counts["burst_ends_with_suggestion"] == 1 and counts["burst_ends_with_suggestion_after_refresh"] == 2
    assert [round(x) for x in lists["to_whole_line"]] == [400]
    assert sorted(round(x) for x in lists["to_any"]) == [100, 400]
