"""The latency replay's bookkeeping: stale answers, answers crossing a keystroke, records by version."""

from __future__ import annotations

import asyncio

from suggest_ls.bench.latency import Sent, analyse
from suggest_ls.bench.lspclient import Call
from suggest_ls.bench.typist import Keystroke, Source

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
