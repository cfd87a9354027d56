"""The generation budget: suggestions while typing stop generating after a time and keep whole lines."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from suggest_ls.clean import StopRule
from suggest_ls.completer import Completer, CompletionRequest, _whole_lines
from suggest_ls.engine import Engine, GenRequest, GenResult
from suggest_ls.prompt import FAMILIES
from suggest_ls.settings import resolve

LONG = StopRule(multiline=True, max_lines=50)


def run(engine: Engine, req: GenRequest) -> GenResult:
    done: Future[GenResult] = Future()
    engine.submit(req, done.set_result)
    return done.result(timeout=120)


BLOCK = "def table():\n    rows = []\n    rows.append(1)\n    rows.append(2)\n    rows.append(3)\n"


def test_a_budget_stops_generation_after_the_first_line_and_says_so(engine):
    free = run(engine, GenRequest("budget-a", BLOCK, max_tokens=40, rule=LONG))
    assert free.outcome == "done" and not free.truncated and free.generated_tokens >= 12
    first_line = free.text.lstrip().split("\n", 1)[0]
    assert first_line and "\n" in free.text.lstrip()
    # 1 ms after the first token: past the budget at once, but not before the first line ends
    cut = run(engine, GenRequest("budget-b", BLOCK, max_tokens=40, rule=LONG, budget_ms=1))
    assert cut.outcome == "done" and cut.truncated and cut.generated_tokens < free.generated_tokens
    assert free.text.startswith(cut.text)  # greedy: the same start, only shorter
    assert cut.text.lstrip().startswith(first_line + "\n")  # the whole first line
    assert cut.text.lstrip().count("\n") == 1  # and the token that ended it, no more


@pytest.mark.parametrize(
    ("text", "truncated", "block", "kept"),
    [
        ("a = 1\nb = 2\nc = fo", True, True, "a = 1\nb = 2\n"),  # the unfinished line goes
        ("a = 1\nb = 2\n", True, True, "a = 1\nb = 2\n"),  # stopped right after a whole line
        ("a = fo", True, True, "a = fo"),  # one unfinished line: better than nothing
        ("\n    x = fo", True, True, "\n    x = fo"),  # nothing complete before it
        ("a = 1\nb = fo", False, True, "a = 1\nb = fo"),  # not stopped by the budget
        ("return fo", True, False, "return fo"),  # a single line keeps its start
    ],
)
def test_whole_lines_of_a_block_stopped_by_its_budget(text, truncated, block, kept):
    assert _whole_lines(GenResult(text, "done", truncated=truncated), block) == kept


class Recording:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.jobs: list[GenRequest] = []

    def submit(self, req, done):  # type: ignore[no-untyped-def]
        self.jobs.append(req)
        return self.engine.submit(req, done)

    def expect(self, delta: int) -> None:
        self.engine.expect(delta)


@pytest.mark.parametrize(
    ("text", "manual", "budget"),
    [
        ("def add(first, second):\n    ", False, 200.0),  # a block while typing
        ("def add(first, second):\n    ", True, 0.0),  # asked for: no limit
        ("def add(first, second):\n    return ", False, 0.0),  # a single line runs to its end
    ],
)
async def test_only_blocks_while_typing_get_the_budget(engine, text, manual, budget):
    settings, messages = resolve({"temperature": 0, "debounceMs": 0, "candidates": 0})
    assert not messages and settings.generation_budget_ms == 200
    backend = Recording(engine)
    c = Completer(backend, FAMILIES["plain"], settings)
    got = await c.complete(CompletionRequest("file:///b.py", 1, text, len(text), "python", manual))
    assert got.record is not None and backend.jobs
    assert backend.jobs[0].budget_ms == budget
