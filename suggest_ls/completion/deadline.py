"""A line still being written: a request waits for its own generation, or for one a keystroke
earlier asked for (adopted); past the line budget (``lineBudgetMs``) it is answered with the whole
words generated so far, or past the line deadline (``lineDeadlineMs``) with nothing yet. The
generation goes on, and its whole line, checked as any line is, replaces those first words (or
withdraws them), after which the client is told it may ask again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from suggest_ls.backends.contract import GenResult, Handle
from suggest_ls.completion import syntax
from suggest_ls.completion.answers import Answers, after_answer, engine_figures
from suggest_ls.completion.clean import DUPLICATES, Cleaned, clean, clean_result
from suggest_ls.completion.request import CompletionRequest, DocState, Running, Shown, Suggestion
from suggest_ls.completion.rerank import Run, alternative
from suggest_ls.completion.shown import TYPE_THROUGH_CHARS, remainder
from suggest_ls.completion.stats import LINE_FINISHED, Record
from suggest_ls.settings import Settings

log = logging.getLogger(__name__)
AUTO_LINE_BUDGET_MS = 200  # ``lineBudgetMs: -1`` for clients that follow suggest/refresh
LINE_DEADLINE_GRACE_MS = 30  # ``lineDeadlineMs: -1``: how long after the line budget first words may come
PENDING = "line still being written"  # answered empty at the line deadline; suggest/refresh follows
EARLY_POLL_S = 0.01  # after the line budget, how often to look for a first whole word


class Host(Protocol):
    """What the line deadline reads from the completer it serves, at each use (the settings and the
    refresh hook are set and replaced while it runs)."""

    settings: Settings
    refresh_hook: Callable[[str, int], None] | None
    answers: Answers

    def min_confidence(self) -> float: ...

    def run_for(self, state: DocState, generation: int) -> Run: ...


class LineDeadline:
    """Lines still being written, for one completer: waiting for them (a request's own or adopted),
    their first words and the line deadline, and finishing them."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._tasks: set[asyncio.Future[None]] = set()  # lines answered early, being finished

    def line_budget(self) -> int:
        """The ``lineBudgetMs`` in force: -1 gives first words only to clients that ask again."""
        budget = self.host.settings.line_budget_ms
        if budget >= 0:
            return budget
        return AUTO_LINE_BUDGET_MS if self.host.refresh_hook is not None else 0

    def line_deadline(self, budget_ms: int) -> int:
        """The ``lineDeadlineMs`` in force for a line budget (0: none); only for clients that ask again."""
        if budget_ms <= 0 or self.host.refresh_hook is None:
            return 0
        deadline = self.host.settings.line_deadline_ms
        if deadline < 0:
            return budget_ms + LINE_DEADLINE_GRACE_MS
        return max(deadline, budget_ms) if deadline else 0

    async def await_line(
        self,
        future: asyncio.Future[GenResult],
        superseded: asyncio.Future[None],
        entry: Running,
        budget_ms: int,
        typed: str = "",
        started: float = 0.0,
    ) -> Cleaned | None:
        """Wait for the generation or a newer request; None then. With a budget, once it has passed
        since ``started`` (the request's arrival, so a debounce counts), the whole words generated so
        far (cleaned) as soon as they go beyond ``typed``; past the line deadline without them, no
        text and the reason ``PENDING``."""
        timeout = None
        deadline = self.line_deadline(budget_ms)
        if budget_ms > 0:
            spent = time.perf_counter() - started if started else 0.0
            timeout = max(EARLY_POLL_S, budget_ms / 1000 - spent)
        while True:
            finished, _ = await asyncio.wait([future, superseded], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
            if finished:
                return None
            words = whole_words(text_so_far(entry.job))
            if words.strip():
                cleaned = clean(words, entry.cursor, entry.rule)
                if cleaned.text.startswith(typed) and cleaned.text[len(typed) :].strip():
                    return Cleaned(cleaned.text, 0, cleaned.reason)
            left = deadline / 1000 - (time.perf_counter() - started) if deadline else 1.0
            if left <= 0:
                return Cleaned(reason=PENDING)
            timeout = min(EARLY_POLL_S, left)

    async def reuse(
        self,
        state: DocState,
        req: CompletionRequest,
        entry: Running,
        superseded: asyncio.Future[None],
        started: float = 0.0,
    ) -> Suggestion | None:
        """Wait for an adopted generation (see ``adoptable``); the rest of its line if it starts with
        what was typed (with a line budget, the rest of its whole words so far once the budget has passed)."""
        adopter = entry.adopter
        typed = req.text[len(entry.prefix) : req.offset]
        budget = self.line_budget() if not entry.rule.multiline and not req.manual else 0
        try:
            early = await self.await_line(entry.future, superseded, entry, budget, typed, started)
        except asyncio.CancelledError:  # the client cancelled: nobody else waits for this job any more
            if entry.adopter == adopter and not entry.continued:
                entry.job.cancel.set()
            raise
        if early is not None:
            return self.continue_early(state, req, entry, early, typed)
        if not entry.future.done():
            if entry.adopter == adopter and not entry.continued:  # no newer request waits for it
                entry.job.cancel.set()
            return None
        result = entry.future.result()
        if result.outcome != "done":
            return None
        cleaned = clean(result.text, entry.cursor, entry.rule)
        if not cleaned.text.startswith(typed) or not cleaned.text[len(typed) :].strip():
            return None
        state.shown = Shown(entry.prefix, entry.suffix, cleaned.text, cleaned.replace)
        log.info("suggestion for %s v%d: reused the generation still running", req.uri, req.version)
        return Suggestion(cleaned.text[len(typed) :], cleaned.replace, cached=True)

    def answer_early(
        self, state: DocState, req: CompletionRequest, entry: Running, early: Cleaned, started: float, waited: float
    ) -> Suggestion:
        """Show the first words of a line still being generated, or nothing yet (``PENDING``); the
        whole line replaces them in the type-through cache when it is done (and the client is told to
        ask again)."""
        answers = self.host.answers
        if not early.text:
            self._continue(state, req, entry, early)
            return answers.empty(
                req, PENDING, started, engine_ms=(time.perf_counter() - started) * 1000 - waited, debounce_ms=waited
            )
        # the least probability of its tokens so far: the whole line's can only be lower
        confidence = entry.job.min_prob
        elapsed = (time.perf_counter() - started) * 1000
        floor = self.host.min_confidence()
        if floor and confidence < floor:
            entry.job.cancel.set()  # the whole line would be refused for the same reason
            if entry in state.running:
                state.running.remove(entry)
            return answers.empty(req, f"low confidence ({confidence:.2f})", started, version=req.version)
        self._continue(state, req, entry, early)
        record = Record(
            uri=req.uri,
            outcome="shown",
            total_ms=elapsed,
            engine_ms=elapsed - waited,
            version=req.version,
            debounce_ms=waited,
            early=True,
            confidence=round(confidence, 4),
        )
        answers.add(record)
        after_answer(
            log.info, "first words for %s v%d: %d chars in %.0f ms", req.uri, req.version, len(early.text), elapsed
        )
        return Suggestion(early.text, 0, record=record)

    def continue_early(
        self, state: DocState, req: CompletionRequest, entry: Running, early: Cleaned, typed: str
    ) -> Suggestion:
        """The rest of an adopted generation's first words, typed through or accepted so far."""
        self._continue(state, req, entry, early)
        if not early.text:
            return Suggestion(reason=PENDING)
        log.info("first words for %s v%d from the generation still running", req.uri, req.version)
        return Suggestion(early.text[len(typed) :], 0, cached=True)

    def _continue(self, state: DocState, req: CompletionRequest, entry: Running, early: Cleaned) -> None:
        """Let a generation answered early go on; its whole line will replace ``early`` as the shown text."""
        shown = Shown(entry.prefix, entry.suffix, early.text, 0)
        state.shown = shown
        state.prefetched = None
        if not entry.continued:
            entry.continued = True
            entry.future.add_done_callback(lambda f: self._line_done(state, entry, req, f))
        entry.early = shown
        if entry not in state.running:  # adopted after its own request was answered: a request
            state.running.append(entry)  # elsewhere must find it to stop it
        state.job = entry.job

    def _line_done(self, state: DocState, entry: Running, req: CompletionRequest, f: asyncio.Future[GenResult]) -> None:
        """A line answered early is complete: finish it as any line is finished (``_finish_line``)."""
        if entry in state.running:
            state.running.remove(entry)
        if state.job is entry.job:
            state.job = None
        result = f.result()
        if result.outcome != "done" or entry.early is None or state.shown is not entry.early:
            figures = engine_figures(result, req.version, 0.0, True)
            self.host.answers.add(Record(uri=req.uri, outcome=LINE_FINISHED, **figures))  # type: ignore[arg-type]
            return
        task = asyncio.ensure_future(self._finish_line(state, entry, req, result))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_line(self, state: DocState, entry: Running, req: CompletionRequest, result: GenResult) -> None:
        """The whole line replaces its first words as the shown suggestion after the checks any line
        gets (syntax, then the alternatives), or the first words are withdrawn (the next request there
        is answered empty at once); then the client is told it may ask again."""
        early = entry.early
        assert early is not None
        figures = engine_figures(result, req.version, 0.0, True)
        try:
            await self._finish_line_checks(state, entry, req, result, early, figures)
        finally:
            self.host.answers.add(Record(uri=req.uri, outcome=LINE_FINISHED, **figures))  # type: ignore[arg-type]

    async def _finish_line_checks(
        self,
        state: DocState,
        entry: Running,
        req: CompletionRequest,
        result: GenResult,
        early: Shown,
        timing: dict[str, float | int],
    ) -> None:
        s = self.host.settings
        cleaned = clean_result(result, False, entry.cursor, entry.rule)
        checking = s.syntax_check and syntax.checks(req.language, req.uri)
        repeats = checking and not cleaned.text and cleaned.reason.startswith(DUPLICATES)
        breaks = (
            checking and bool(cleaned.text) and bool(syntax.breaks(req.text, req.offset, cleaned.text, cleaned.replace))
        )
        if repeats or breaks:
            why = cleaned.reason if repeats else syntax.BREAKS
            cleaned = Cleaned(reason=why)
            if s.alternatives and state.generation == entry.generation and entry.gen is not None:
                run = self.host.run_for(state, entry.generation)
                fitted = await alternative(run, s, req, entry.cursor, entry.rule, entry.gen, result, timing, why)
                if fitted is not None:
                    cleaned, timing["confidence"] = fitted[0], round(fitted[1], 4)
        low, confidence = self.host.min_confidence(), float(timing["confidence"])
        if cleaned.text and low and confidence < low:
            cleaned = Cleaned(reason=f"low confidence ({confidence:.2f})")
        if state.shown is not early:
            return  # another suggestion is shown by now
        if cleaned.text:
            state.shown = Shown(entry.prefix, entry.suffix, cleaned.text, cleaned.replace)
            log.info(
                "whole line for %s v%d: %d chars, in the type-through cache", req.uri, req.version, len(cleaned.text)
            )
        else:
            state.shown, state.withdrawn = None, early
            state.withdrawn_reason = cleaned.reason or "empty after cleaning"
            log.info(
                "whole line for %s v%d not shown: %s; first words withdrawn",
                req.uri,
                req.version,
                state.withdrawn_reason,
            )
        # the editor may ask again where the user is now, if that is still on the suggestion
        latest = state.latest or req
        here = state.shown if state.shown is not None else state.withdrawn
        if self.host.refresh_hook is not None and remainder(here, latest) is not None:
            self.host.refresh_hook(latest.uri, latest.version)


def adoptable(state: DocState, req: CompletionRequest) -> Running | None:
    """A generation still running for this document that the new request can wait for (adopt).

    It must have been asked at an earlier point of the same line the user is now typing, with the
    same text after the cursor, and what it generated so far must agree with what was typed.
    """
    if not state.running:
        return None
    entry = state.running[-1]
    prefix = req.text[: req.offset]
    if entry.future.done() or not prefix.startswith(entry.prefix):
        return None
    typed = prefix[len(entry.prefix) :]
    if (not typed and not entry.continued) or len(typed) > TYPE_THROUGH_CHARS or "\n" in typed:
        return None  # (asking again where a line answered early goes on waits for that line)
    if req.text[req.offset : req.offset + len(entry.suffix)] != entry.suffix:
        return None
    partial = text_so_far(entry.job)
    line_prefix = entry.cursor.line_prefix
    if not line_prefix.strip():
        partial = partial.lstrip()
    elif line_prefix.endswith((" ", "\t")):  # the model writes the space before its first word (prompt.py)
        partial = partial.lstrip(" \t")
    if partial and not (partial.startswith(typed) or typed.startswith(partial)):
        return None
    entry.adopted = True
    entry.adopter = state.generation
    return entry


def whole_words(text: str) -> str:
    """The first line of ``text`` cut back to its last whole word: what a generation still running
    can show (the last identifier or number may go on)."""
    line = text.split("\n", 1)[0]
    end = len(line)
    while end > 0 and (line[end - 1].isalnum() or line[end - 1] == "_"):
        end -= 1
    return line[:end]


def text_so_far(job: Handle) -> str:
    """What a running job has generated so far."""
    return job.text()
