"""The generation budget: suggestions while typing stop generating after a time and keep whole lines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future

import pytest

from suggest_ls.backends.contract import BackendDefaults, GenRequest, GenResult, StopRule
from suggest_ls.backends.llama.engine import Engine
from suggest_ls.completion.clean import whole_lines
from suggest_ls.completion.completer import Completer
from suggest_ls.completion.deadline import PENDING, whole_words
from suggest_ls.completion.prompt import FAMILIES
from suggest_ls.completion.request import CompletionRequest
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
    assert whole_lines(GenResult(text, "done", truncated=truncated), block) == kept


class Recording(BackendDefaults):
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


async def eventually(check: Callable[[], object], seconds: float = 120.0) -> None:
    """Wait until ``check()`` holds (a line goes on after its first words are answered); the bound is
    generous: on a shared machine under load a line of ~60 tokens took longer than 10 s."""
    for _ in range(int(seconds / 0.025)):
        if check():
            return
        await asyncio.sleep(0.025)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('print("one two thr', 'print("one two '),  # the last word may go on
        ("x = foo(bar, ", "x = foo(bar, "),  # ends between words: all of it
        ("return value_", "return "),  # an identifier with its underscore
        ("total = 12", "total = "),  # a number may go on too
        ("done\nnext", ""),  # only the first line counts, and its last word may go on
        ("", ""),
    ],
)
def test_whole_words_of_a_line_still_being_written(text, kept):
    assert whole_words(text) == kept


# A line the model completes the same way every time, long enough to outlast a few ms of budget:
# no near-tie anywhere (each token's probability ≥ 0.74), so batched and cached evaluation agree.
# ("third = [" is a near-tie between "1" and "first", 0.16 against 0.12, which flips with the batch.)
LIST = (
    'first = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]\n'
    'second = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]\n'
    'third = ["'
)


class Outcomes(Recording):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.outcomes: list[str] = []

    def submit(self, req, done):  # type: ignore[no-untyped-def]
        def record(result: GenResult) -> None:
            self.outcomes.append(result.outcome)
            done(result)

        return super().submit(req, record)


def budget_completer(
    engine: Engine, budget: int, deadline: int = 0, **options: object
) -> tuple[Completer, Outcomes, list[tuple[str, int]]]:
    """A completer with ``lineBudgetMs`` (and ``lineDeadlineMs``) set, its counting backend and the
    refreshes it asked for."""
    raw = {"temperature": 0, "debounceMs": 0, "lineBudgetMs": budget, "lineDeadlineMs": deadline, **options}
    settings, messages = resolve(raw)
    assert not messages
    backend = Outcomes(engine)
    c = Completer(backend, FAMILIES["plain"], settings)
    refreshed: list[tuple[str, int]] = []
    c.refresh_hook = lambda u, v: refreshed.append((u, v))
    return c, backend, refreshed


async def test_a_line_budget_shows_the_first_words_and_keeps_the_whole_line_for_the_next_request(engine):
    uri = "file:///line-budget.py"
    plain, _, _ = budget_completer(engine, 0)
    full = await plain.complete(CompletionRequest(uri, 1, LIST, len(LIST), "python"))
    assert len(full.text) >= 30 and full.record is not None and not full.record.early

    c, backend, refreshed = budget_completer(engine, 1)
    first = await c.complete(CompletionRequest(uri, 1, LIST, len(LIST), "python"))
    assert first.record is not None and first.record.early
    assert first.text and len(first.text) < len(full.text) and full.text.startswith(first.text)
    await eventually(lambda: refreshed)  # the line goes on after the answer
    assert refreshed == [(uri, 1)] and backend.outcomes == ["done"]
    # the editor asks again at the same place: the whole line, from the cache
    again = await c.complete(CompletionRequest(uri, 2, LIST, len(LIST), "python"))
    assert again.cached and again.text == full.text
    # or it accepts the first words: the rest of the line, from the cache
    accepted = LIST + first.text
    rest = await c.complete(CompletionRequest(uri, 3, accepted, len(accepted), "python"))
    assert rest.cached and first.text + rest.text == full.text
    assert len(backend.jobs) == 1


async def test_typing_through_the_first_words_keeps_the_line_going_to_where_the_user_is(engine):
    uri = "file:///line-budget-typed.py"
    c, backend, refreshed = budget_completer(engine, 1)
    first = await c.complete(CompletionRequest(uri, 1, LIST, len(LIST), "python"))
    assert first.record is not None and first.record.early and len(first.text) >= 2
    typed = LIST + first.text[0]  # one character of the words shown
    through = await c.complete(CompletionRequest(uri, 2, typed, len(typed), "python"))
    assert through.cached and (first.text[0] + through.text).startswith(first.text)
    assert backend.outcomes == []  # the line still goes on
    await eventually(lambda: refreshed)
    assert refreshed == [(uri, 2)] and backend.outcomes == ["done"]  # told where the user is now
    again = await c.complete(CompletionRequest(uri, 3, typed, len(typed), "python"))
    assert again.cached and len(again.text) > len(through.text) and again.text.startswith(through.text)
    assert len(backend.jobs) == 1


async def test_leaving_the_first_words_stops_their_line(engine):
    uri = "file:///line-budget-left.py"
    c, backend, refreshed = budget_completer(engine, 1)
    first = await c.complete(CompletionRequest(uri, 1, LIST, len(LIST), "python"))
    assert first.record is not None and first.record.early
    elsewhere = LIST[:-1] + "0\n"  # the user changed the line instead
    await c.complete(CompletionRequest(uri, 2, elsewhere, len(elsewhere), "python"))
    await eventually(lambda: backend.outcomes)
    assert backend.outcomes[0] == "cancelled" and not refreshed


async def test_a_line_adopted_by_the_next_keystroke_and_answered_early_is_still_stopped_by_leaving(engine):
    uri = "file:///line-budget-adopted.py"
    c, backend, _ = budget_completer(engine, 300)
    first = asyncio.ensure_future(c.complete(CompletionRequest(uri, 1, LIST, len(LIST), "python")))
    job = None
    for _ in range(24000):  # the model has written its first character (generous: a loaded machine)
        await asyncio.sleep(0.005)
        job = c._docs[uri].job
        if job is not None and job.text().strip():
            break
    assert job is not None and job.text().strip(), "the model wrote nothing"
    char = job.text().lstrip()[0]
    typed = LIST + char
    second = await c.complete(CompletionRequest(uri, 2, typed, len(typed), "python"))
    assert (await first).reason == "superseded"  # the first request was answered as soon as the second came
    assert second.cached and second.text and backend.outcomes == []  # first words of the adopted line
    assert len(backend.jobs) == 1
    elsewhere = LIST[:-1] + "0\n"
    await c.complete(CompletionRequest(uri, 3, elsewhere, len(elsewhere), "python"))
    await eventually(lambda: backend.outcomes)
    assert backend.outcomes[0] == "cancelled"  # not left running in the document's slot


@pytest.mark.parametrize(
    ("deadline", "budget", "follows", "in_force"),
    [
        (-1, 200, True, 230),  # the default: a little after the line budget
        (-1, 200, False, 0),  # a client that would never ask again keeps waiting for words
        (-1, 0, True, 0),  # no line budget: whole lines only
        (0, 200, True, 0),  # turned off
        (100, 200, True, 200),  # never before the budget
        (400, 200, True, 400),
    ],
)
def test_the_line_deadline_in_force(engine, deadline, budget, follows, in_force):
    c, _, _ = budget_completer(engine, budget, deadline)
    if not follows:
        c.refresh_hook = None
    assert c.deadline.line_deadline(budget) == in_force


async def test_a_line_past_its_deadline_is_answered_empty_and_its_whole_line_follows_on_refresh(engine):
    uri = "file:///line-deadline.py"
    plain, _, _ = budget_completer(engine, 0)
    full = await plain.complete(CompletionRequest(uri, 1, LIST, len(LIST), "python"))
    assert len(full.text) >= 30

    c, backend, refreshed = budget_completer(engine, 1, 1)  # no first word can be written in 1 ms
    first = await c.complete(CompletionRequest(uri, 1, LIST, len(LIST), "python"))
    assert first.text == "" and first.reason == PENDING and backend.outcomes == []
    # asking again at the same place meanwhile waits for the same line instead of starting another
    again = await c.complete(CompletionRequest(uri, 2, LIST, len(LIST), "python"))
    assert again.text == "" and again.reason == PENDING and len(backend.jobs) == 1
    await eventually(lambda: refreshed)
    assert refreshed == [(uri, 2)] and backend.outcomes == ["done"]
    whole = await c.complete(CompletionRequest(uri, 3, LIST, len(LIST), "python"))
    assert whole.cached and whole.text == full.text and len(backend.jobs) == 1


async def test_a_pending_line_below_the_confidence_floor_is_withdrawn_without_a_refresh(engine):
    uri = "file:///line-deadline-unsure.py"
    c, backend, refreshed = budget_completer(engine, 1, 1, minConfidence=1.0)
    first = await c.complete(CompletionRequest(uri, 1, LIST, len(LIST), "python"))
    assert first.reason == PENDING
    await eventually(lambda: backend.outcomes)
    await eventually(lambda: c._docs[uri].withdrawn is not None)
    state = c._docs[uri]
    assert backend.outcomes == ["done"] and state.shown is None
    assert state.withdrawn_reason.startswith("low confidence") and not refreshed
    # asking there again is answered at once, with why, and runs no model
    again = await c.complete(CompletionRequest(uri, 2, LIST, len(LIST), "python"))
    assert again.text == "" and again.reason == state.withdrawn_reason and len(backend.jobs) == 1
