"""From a cursor to a suggestion: debounce, supersede, typing-through cache, engine, clean.

Plain data in and out; the LSP server module is the only caller that knows the protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TextIO

from suggest_ls.backends.contract import IDLE, Backend, GenRequest, GenResult, Handle, StopRule
from suggest_ls.completion import syntax
from suggest_ls.completion.clean import Cleaned, clean, language_stops
from suggest_ls.completion.context import (
    CHARS_PER_TOKEN,
    Chunk,
    ChunkRing,
    Cursor,
    pick_extra,
    should_complete,
    wants_block,
    window,
)
from suggest_ls.completion.prompt import Template, build_prompt
from suggest_ls.completion.stats import LINE_FINISHED, Record, Recorder
from suggest_ls.settings import Settings

log = logging.getLogger(__name__)
MAX_DOCUMENT_CHARS = 4_000_000
MAX_LINE_CHARS = 20_000
TYPE_THROUGH_CHARS = 128
SAMPLE_TEMPERATURE = 0.8  # candidates for reranking
FOLLOW_LINES = 2  # non-blank lines after the cursor that rank the candidates
FOLLOW_CHARS = 240
DUPLICATES = "duplicates "  # the start of clean's reasons for a line that repeats the code after it
AUTO_LINE_BUDGET_MS = 200  # ``lineBudgetMs: -1`` for clients that follow suggest/refresh
LINE_DEADLINE_GRACE_MS = 30  # ``lineDeadlineMs: -1``: how long after the line budget first words may come
PENDING = "line still being written"  # answered empty at the line deadline; suggest/refresh follows
EARLY_POLL_S = 0.01  # after the line budget, how often to look for a first whole word
EXTRA_REFRESH_S = 120.0  # extra context is chosen again at most this often when the window moves


@dataclass(frozen=True)
class CompletionRequest:
    """A request for a suggestion at ``offset`` in ``text``."""

    uri: str
    version: int
    text: str
    offset: int
    language: str = ""
    manual: bool = False


@dataclass(frozen=True)
class Suggestion:
    """What to show (``text`` replacing ``replace`` characters after the cursor), or why not."""

    text: str = ""
    replace: int = 0
    reason: str = ""
    cached: bool = False
    record: Record | None = None
    prompt: str = ""  # what the model saw (for --explain)
    raw: str = ""  # what the model wrote, before cleaning


@dataclass
class _Shown:
    prefix: str
    suffix: str
    text: str
    replace: int


@dataclass
class _Running:
    """A generation in flight: where it was asked for and how to clean its text."""

    prefix: str
    suffix: str
    future: asyncio.Future[GenResult]
    job: Handle
    cursor: Cursor
    rule: StopRule
    adopted: bool = False  # a newer request waits for it instead of cancelling it
    continued: bool = False  # answered early with its first words (``lineBudgetMs``); its line goes on
    early: _Shown | None = None  # those first words, while they are the document's shown suggestion
    gen: GenRequest | None = None  # what was asked of the engine
    generation: int = 0  # the request generation it was asked for
    adopter: int = 0  # the request generation that adopted it last


@dataclass
class _DocState:
    generation: int = 0
    last_request: float = 0.0
    interval_ms: float = 150.0
    job: Handle | None = None
    superseded: asyncio.Future[None] | None = None  # resolved when a newer request arrives
    shown: _Shown | None = None
    running: list[_Running] = field(default_factory=list)
    prefetched: _Shown | None = None
    prefetch_job: Handle | None = None
    extra: tuple[Chunk, ...] = ()
    extra_key: str = ""
    extra_at: float = 0.0
    latest: CompletionRequest | None = None  # the document's latest request
    # first words whose whole line was not kept: a request on them is answered empty at once
    withdrawn: _Shown | None = None
    withdrawn_reason: str = ""
    warm_job: Handle | None = None  # evaluating the prompt at the cursor before it is asked for


MIN_CONFIDENCE_FIM, MIN_CONFIDENCE_PLAIN = 0.25, 0.1  # tuned on HumanEval slices (README)
PROMPT_COLD_S = 3.0
PROMPT_TOKENS_MIN, PROMPT_TOKENS_MAX = 384, 1024


def auto_prompt_tokens(prefill_tps: float) -> int:
    """A window a cold prompt evaluates in about ``PROMPT_COLD_S`` at ``prefill_tps`` (a multiple of 64,
    within the bounds; the largest when the speed is unknown)."""
    if prefill_tps <= 0:
        return PROMPT_TOKENS_MAX
    tokens = int(prefill_tps * PROMPT_COLD_S) // 64 * 64
    return max(PROMPT_TOKENS_MIN, min(PROMPT_TOKENS_MAX, tokens))


def after_answer(fn: Callable[..., object], *args: object) -> None:
    """Run bookkeeping (records, log lines, prefetch) once the current request's answer is out.

    The request handler's task returns within the current loop step and its answer is written by
    the task's done callback, scheduled then; two hops of ``call_soon`` run ``fn`` after it. Without
    a running loop ``fn`` runs at once.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)
        return
    loop.call_soon(loop.call_soon, fn, *args)


def adaptive_debounce(interval_ms: float, last_char: str = "") -> float:
    """Debounce in ms from the typing rhythm: a short wait only inside a word typed fast.

    Waiting costs more than it saves here (replays: half the wait of a typist's interval, up to
    60 ms, gave a 4x slower median than no wait): a superseded job's prompt work stays in the
    document's cache, and a job that finishes mid-burst feeds the typing-through cache. So after a
    space, punctuation or a newline (where people pause) and for typists slower than 250 ms a key
    there is no wait; inside a word, a quarter of the recent interval, at most 30 ms.
    """
    if interval_ms >= 250 or not (last_char.isalnum() or last_char == "_"):
        return 0.0
    return min(30.0, 0.25 * interval_ms)


class Completer:
    """Turns completion requests into suggestions using one backend and the pure pipeline."""

    def __init__(
        self, backend: Backend | None, template: Template, settings: Settings, recorder: Recorder | None = None
    ):
        self.backend = backend
        self.template = template
        self.settings = settings
        self.recorder = recorder or Recorder()
        self._docs: dict[str, _DocState] = {}
        # Told (uri, version) when a line answered early is complete: the client may ask again.
        self.refresh_hook: Callable[[str, int], None] | None = None
        self.ring = ChunkRing()
        # Other open documents as (uri, text); the server sets it.
        self.documents: Callable[[], Iterable[tuple[str, str]]] | None = None
        # Whether the model runs where sampling and scoring candidates is cheap (a GPU or a remote server).
        self.fast_device = False
        self.prefill_tps = 0.0  # prompt tokens/s measured at load (0: unknown); sizes the automatic window
        self.last_prompt = ""  # the latest prompt and raw model text, for ``complete --explain``
        self.last_raw = ""
        self._trace = os.environ.get("SUGGEST_LS_TRACE", "")
        self._tasks: set[asyncio.Future[None]] = set()  # lines answered early, being finished
        self.warmed: deque[tuple[str, int]] = deque(maxlen=256)  # (outcome, tokens evaluated) of warm jobs
        self._trace_file: TextIO | None = None

    def _add(self, record: Record) -> None:
        """Keep a request's record, after its answer has gone out (see ``after_answer``)."""
        after_answer(self._keep, record)

    def _keep(self, record: Record) -> None:
        """Store a record; also append it to the ``SUGGEST_LS_TRACE`` JSONL file when set."""
        self.recorder.add(record)
        if not self._trace:
            return
        try:
            if self._trace_file is None:  # opened once: a line per request, written through
                self._trace_file = open(self._trace, "a", encoding="utf-8", buffering=1)
            self._trace_file.write(json.dumps(record.as_dict()) + "\n")
        except OSError as exc:
            log.warning("request trace not written: %s", exc)
            self._trace = ""

    def forget(self, uri: str) -> None:
        """Drop per-document state (the document was closed)."""
        state = self._docs.pop(uri, None)
        if state and state.job is not None:
            state.job.cancel.set()
        if state and state.prefetch_job is not None:
            state.prefetch_job.cancel.set()
        if state and state.warm_job is not None:
            state.warm_job.cancel.set()
        if state and state.superseded is not None and not state.superseded.done():
            state.superseded.set_result(None)

    def warm(self, req: CompletionRequest) -> bool:
        """Evaluate the prompt at ``req``'s cursor at idle priority, so that a request there (or a
        keystroke later) finds it cached: after didOpen, a cursor move, or an edit no request
        followed. A live request stops it and keeps what it evaluated; a newer warm replaces it.
        False when there is nothing to do (disabled, a request running, an impossible place)."""
        s = self.settings
        if not (s.enabled and s.warm) or self.backend is None:
            return False
        if len(req.text) > MAX_DOCUMENT_CHARS or not 0 <= req.offset <= len(req.text):
            return False
        state = self._docs.setdefault(req.uri, _DocState())
        if state.job is not None or any(not e.job.cancel.is_set() for e in state.running):
            return False  # a live request is evaluating this document's prompt already
        cursor = self.cursor(req)
        if "\x00" in cursor.prefix or "\x00" in cursor.suffix:
            return False
        if state.warm_job is not None:
            state.warm_job.cancel.set()
        prompt = build_prompt(cursor, self.template, self._extra(state, req, cursor))
        gen = GenRequest(key=req.uri, prompt=prompt, max_tokens=0, priority=IDLE)

        def done(result: GenResult) -> None:
            self.warmed.append((result.outcome, result.evaluated_tokens))
            log.debug(
                "warm %s v%d: %s, %d tokens evaluated", req.uri, req.version, result.outcome, result.evaluated_tokens
            )

        state.warm_job = self.backend.submit(gen, done)
        return True

    def min_confidence(self) -> float:
        """``minConfidence``, or (-1) the floor measured for the kind of model: FIM code models are
        surer where they are right (see the README's quality figures)."""
        floor = self.settings.min_confidence
        if floor >= 0:
            return floor
        return MIN_CONFIDENCE_FIM if self.template.fim else MIN_CONFIDENCE_PLAIN

    def warm_summary(self) -> dict[str, int]:
        """The latest warm jobs: finished, stopped by a live request or a newer warm, tokens evaluated."""
        done = sum(1 for outcome, _ in self.warmed if outcome == "done")
        return {"done": done, "stopped": len(self.warmed) - done, "tokens": sum(n for _, n in self.warmed)}

    def prompt_tokens(self) -> int:
        """The prompt window's token budget: ``promptTokens``, or (-1) sized from the measured prompt
        evaluation speed so that a cold prompt takes about ``PROMPT_COLD_S``."""
        if self.settings.prompt_tokens > 0:
            return self.settings.prompt_tokens
        return auto_prompt_tokens(self.prefill_tps)

    def extra_tokens(self) -> int:
        """The extra context's token budget: ``extraContextTokens``, at most a quarter of an automatic window."""
        s = self.settings
        return s.extra_context_tokens if s.prompt_tokens > 0 else min(s.extra_context_tokens, self.prompt_tokens() // 4)

    def cursor(self, req: CompletionRequest) -> Cursor:
        """The prompt window around the request's cursor."""
        s = self.settings
        prefix, suffix = window(req.text, req.offset, self.prompt_tokens(), s.suffix_share)
        return Cursor(prefix, suffix, req.language, req.uri)

    def _empty(self, req: CompletionRequest, reason: str, started: float, **extra: object) -> Suggestion:
        extra.setdefault("version", req.version)
        record = Record(uri=req.uri, outcome=reason, total_ms=(time.perf_counter() - started) * 1000, **extra)  # type: ignore[arg-type]
        self._add(record)
        after_answer(log.info, "no suggestion for %s v%d: %s", req.uri, req.version, reason)
        return Suggestion(reason=reason, record=record)

    async def complete(self, req: CompletionRequest) -> Suggestion:
        """Compute the suggestion for one request; never raises except on task cancellation."""
        started = time.perf_counter()
        s = self.settings
        state = self._docs.setdefault(req.uri, _DocState())
        now = time.monotonic()
        if state.last_request:
            gap = (now - state.last_request) * 1000
            state.interval_ms = 0.7 * state.interval_ms + 0.3 * min(gap, 1000.0)
        state.last_request = now
        state.latest = req
        if state.warm_job is not None:  # the engine would stop it for the live job anyway
            state.warm_job.cancel.set()
            state.warm_job = None
        state.generation += 1
        generation = state.generation
        adopt = self._adoptable(state, req)
        for entry in state.running:
            if entry.continued and entry is not adopt:  # a line answered early that the user left
                entry.job.cancel.set()
        if state.job is not None:
            if adopt is None or adopt.job is not state.job:
                state.job.cancel.set()
            state.job = None
        if state.superseded is not None and not state.superseded.done():
            state.superseded.set_result(None)  # the older request answers now, not after its job stops
        superseded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.superseded = superseded
        if not s.enabled:
            return self._empty(req, "disabled", started)
        if self.backend is None:
            return self._empty(req, "model not loaded", started)
        if len(req.text) > MAX_DOCUMENT_CHARS:
            return self._empty(req, f"document too large ({len(req.text)} characters)", started)
        if not 0 <= req.offset <= len(req.text):
            return self._empty(req, "position outside the document", started)
        cursor = self.cursor(req)
        if len(cursor.line_prefix) + len(cursor.line_suffix) > MAX_LINE_CHARS:
            return self._empty(req, "line too long", started)
        if "\x00" in cursor.prefix or "\x00" in cursor.suffix:
            return self._empty(req, "binary content near the cursor", started)
        self.ring.add(req.uri, req.text, req.offset)  # a place the user works at: context for other places
        hit = self._type_through(state, req)
        why = "" if hit is not None or req.manual else should_complete(cursor)
        if adopt is not None and (why or (hit is not None and not adopt.continued)):
            adopt.job.cancel.set()  # adopted, but this request needs no generation after all
        if hit is not None:
            return self._cache_hit(req, hit, started)
        if _remainder(state.withdrawn, req) is not None or _typed_on(state.withdrawn, req) == "":
            # on first words not kept, or exactly where a line was not kept: why, at once
            if adopt is not None:
                adopt.job.cancel.set()
            return self._empty(req, state.withdrawn_reason, started)
        if why:
            return self._empty(req, why, started)
        if adopt is not None:
            reused = await self._reuse(state, req, adopt, superseded, started)
            if reused is not None:
                return (
                    self._cache_hit(req, reused, started) if reused.text else self._empty(req, reused.reason, started)
                )
            if state.generation != generation:
                return self._empty(req, "superseded", started)
        extra = self._extra(state, req, cursor)
        last_char = req.text[req.offset - 1 : req.offset] if req.offset else ""
        debounce = s.debounce_ms if s.debounce_ms >= 0 else adaptive_debounce(state.interval_ms, last_char)
        waited = 0.0
        if debounce > 0 and not req.manual:
            self.backend.expect(1)
            try:
                await asyncio.wait({superseded}, timeout=debounce / 1000)
            finally:
                self.backend.expect(-1)
            waited = (time.perf_counter() - started) * 1000
            if state.generation != generation:
                return self._empty(req, "superseded while debouncing", started, debounce_ms=waited)
        block = wants_block(cursor, s.multiline)
        rule = StopRule(
            multiline=block,
            base_indent=_indent_width(cursor, block),
            line_started=bool(cursor.line_prefix.strip()),
            stop=self.template.stop + language_stops(cursor.language),
        )
        checking = s.syntax_check and syntax.checks(req.language, req.uri)
        gen = GenRequest(
            key=req.uri,
            prompt=build_prompt(cursor, self.template, extra),
            max_tokens=s.max_tokens_multiline if block else s.max_tokens,
            temperature=s.temperature,
            rule=rule,
            budget_ms=s.generation_budget_ms if block and not req.manual else 0,
            alternatives=s.alternatives if checking and s.alternatives else 0,
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[GenResult] = loop.create_future()

        def done(result: GenResult) -> None:
            try:
                loop.call_soon_threadsafe(_resolve, future, result)
            except RuntimeError:  # the loop is closed: nobody waits for this answer any more
                pass

        job = self.backend.submit(gen, done)
        state.job = job
        prefix_full = req.text[: req.offset]
        entry = _Running(prefix_full, cursor.suffix, future, job, cursor, rule, gen=gen, generation=generation)
        state.running.append(entry)
        budget = self._line_budget() if not block and not req.manual else 0
        early: Cleaned | None = None
        try:
            early = await self._await_line(future, superseded, entry, budget, "", started)
        except asyncio.CancelledError:
            job.cancel.set()
            self._record_later(req, future, "cancelled by the client", started, waited)
            raise
        finally:
            if early is None:
                if state.job is job:
                    state.job = None
                state.running.remove(entry)
        if early is not None:
            return self._answer_early(state, req, entry, early, started, waited)
        if not future.done():  # a newer request for this document: answer now, record the engine's work later
            if not entry.adopted:
                job.cancel.set()
            log.info("no suggestion for %s v%d: superseded", req.uri, req.version)
            self._record_later(req, future, "superseded", started, waited)
            return Suggestion(reason="superseded")
        result = future.result()
        self.last_prompt, self.last_raw = gen.prompt, result.text
        timing = _timing(result, req.version, waited)
        if result.outcome == "cancelled" or state.generation != generation:
            return self._empty(req, "superseded", started, **timing)
        if result.outcome == "error":
            return self._empty(req, f"error: {result.error}", started, **timing)
        cleaned = _clean_result(result, block, cursor, rule)
        confidence = result.min_prob
        fits = False  # known to keep the code well-formed (reranking checks its candidates)
        if self._reranks(req) and not block and not self.template.fim and _follow(cursor, 0):
            ranked = await self._rerank(state, req, cursor, rule, gen, cleaned, generation, timing)
            if ranked is None:
                return self._empty(req, "superseded", started, **timing)
            cleaned, confidence, fits = ranked
        # a line that breaks the code, or that repeats the code after the cursor: another start may fit
        repeats = checking and not cleaned.text and cleaned.reason.startswith(DUPLICATES)
        if repeats or (
            checking
            and cleaned.text
            and not fits
            and syntax.breaks(req.text, req.offset, cleaned.text, cleaned.replace)
        ):
            why = cleaned.reason if repeats else syntax.BREAKS
            fitted = await self._alternative(state, req, cursor, rule, gen, result, generation, timing, why)
            if fitted is None:
                return self._empty(req, "superseded", started, **timing)
            cleaned, confidence = fitted
        timing["confidence"] = round(confidence, 4)
        floor = self.min_confidence()
        if floor and cleaned.text and confidence < floor:  # else: why there is none
            return self._empty(req, f"low confidence ({confidence:.2f})", started, **timing)
        if not cleaned.text:
            return self._empty(req, cleaned.reason, started, **timing)
        state.shown = _Shown(prefix_full, cursor.suffix, cleaned.text, cleaned.replace)
        state.prefetched = None
        record = Record(uri=req.uri, outcome="shown", total_ms=(time.perf_counter() - started) * 1000, **timing)  # type: ignore[arg-type]
        self._add(record)
        after_answer(
            log.info,
            "suggestion for %s v%d: %d chars in %.0f ms (prompt %d tokens, %d cached, %d evaluated, %d generated; "
            "reranking %d jobs, %d tokens)",
            req.uri,
            req.version,
            len(cleaned.text),
            record.total_ms,
            result.prompt_tokens,
            result.cached_tokens,
            result.evaluated_tokens,
            result.generated_tokens,
            timing.get("rerank_jobs", 0),
            timing.get("rerank_tokens", 0),
        )
        if s.prefetch:
            after_answer(self._prefetch, state, req, cleaned)
        return Suggestion(cleaned.text, cleaned.replace, record=record, prompt=gen.prompt, raw=result.text)

    async def _await_line(
        self,
        future: asyncio.Future[GenResult],
        superseded: asyncio.Future[None],
        entry: _Running,
        budget_ms: int,
        typed: str = "",
        started: float = 0.0,
    ) -> Cleaned | None:
        """Wait for the generation or a newer request; None then. With a budget, once it has passed
        since ``started`` (the request's arrival, so a debounce counts), the whole words generated so
        far (cleaned) as soon as they go beyond ``typed``; past the line deadline without them, no
        text and the reason ``PENDING``."""
        timeout = None
        deadline = self._line_deadline(budget_ms)
        if budget_ms > 0:
            spent = time.perf_counter() - started if started else 0.0
            timeout = max(EARLY_POLL_S, budget_ms / 1000 - spent)
        while True:
            finished, _ = await asyncio.wait([future, superseded], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
            if finished:
                return None
            words = whole_words(_text_so_far(entry.job))
            if words.strip():
                cleaned = clean(words, entry.cursor, entry.rule)
                if cleaned.text.startswith(typed) and cleaned.text[len(typed) :].strip():
                    return Cleaned(cleaned.text, 0, cleaned.reason)
            left = deadline / 1000 - (time.perf_counter() - started) if deadline else 1.0
            if left <= 0:
                return Cleaned(reason=PENDING)
            timeout = min(EARLY_POLL_S, left)

    def _line_budget(self) -> int:
        """The ``lineBudgetMs`` in force: -1 gives first words only to clients that ask again."""
        budget = self.settings.line_budget_ms
        if budget >= 0:
            return budget
        return AUTO_LINE_BUDGET_MS if self.refresh_hook is not None else 0

    def _line_deadline(self, budget_ms: int) -> int:
        """The ``lineDeadlineMs`` in force for a line budget (0: none); only for clients that ask again."""
        if budget_ms <= 0 or self.refresh_hook is None:
            return 0
        deadline = self.settings.line_deadline_ms
        if deadline < 0:
            return budget_ms + LINE_DEADLINE_GRACE_MS
        return max(deadline, budget_ms) if deadline else 0

    def _answer_early(
        self, state: _DocState, req: CompletionRequest, entry: _Running, early: Cleaned, started: float, waited: float
    ) -> Suggestion:
        """Show the first words of a line still being generated, or nothing yet (``PENDING``); the
        whole line replaces them in the type-through cache when it is done (and the client is told to
        ask again)."""
        if not early.text:
            self._continue(state, req, entry, early)
            return self._empty(
                req, PENDING, started, engine_ms=(time.perf_counter() - started) * 1000 - waited, debounce_ms=waited
            )
        # the least probability of its tokens so far: the whole line's can only be lower
        confidence = entry.job.min_prob
        elapsed = (time.perf_counter() - started) * 1000
        floor = self.min_confidence()
        if floor and confidence < floor:
            entry.job.cancel.set()  # the whole line would be refused for the same reason
            if entry in state.running:
                state.running.remove(entry)
            return self._empty(req, f"low confidence ({confidence:.2f})", started, version=req.version)
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
        self._add(record)
        after_answer(
            log.info, "first words for %s v%d: %d chars in %.0f ms", req.uri, req.version, len(early.text), elapsed
        )
        return Suggestion(early.text, 0, record=record)

    def _continue(self, state: _DocState, req: CompletionRequest, entry: _Running, early: Cleaned) -> None:
        """Let a generation answered early go on; its whole line will replace ``early`` as the shown text."""
        shown = _Shown(entry.prefix, entry.suffix, early.text, 0)
        state.shown = shown
        state.prefetched = None
        if not entry.continued:
            entry.continued = True
            entry.future.add_done_callback(lambda f: self._line_done(state, entry, req, f))
        entry.early = shown
        if entry not in state.running:  # adopted after its own request was answered: a request
            state.running.append(entry)  # elsewhere must find it to stop it
        state.job = entry.job

    def _continue_early(
        self, state: _DocState, req: CompletionRequest, entry: _Running, early: Cleaned, typed: str
    ) -> Suggestion:
        """The rest of an adopted generation's first words, typed through or accepted so far."""
        self._continue(state, req, entry, early)
        if not early.text:
            return Suggestion(reason=PENDING)
        log.info("first words for %s v%d from the generation still running", req.uri, req.version)
        return Suggestion(early.text[len(typed) :], 0, cached=True)

    def _line_done(
        self, state: _DocState, entry: _Running, req: CompletionRequest, f: asyncio.Future[GenResult]
    ) -> None:
        """A line answered early is complete: finish it as any line is finished (``_finish_line``)."""
        if entry in state.running:
            state.running.remove(entry)
        if state.job is entry.job:
            state.job = None
        result = f.result()
        if result.outcome != "done" or entry.early is None or state.shown is not entry.early:
            self._add(Record(uri=req.uri, outcome=LINE_FINISHED, **_timing(result, req.version, 0.0, True)))  # type: ignore[arg-type]
            return
        task = asyncio.ensure_future(self._finish_line(state, entry, req, result))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_line(self, state: _DocState, entry: _Running, req: CompletionRequest, result: GenResult) -> None:
        """The whole line replaces its first words as the shown suggestion after the checks any line
        gets (syntax, then the alternatives), or the first words are withdrawn (the next request there
        is answered empty at once); then the client is told it may ask again."""
        early = entry.early
        assert early is not None
        timing = _timing(result, req.version, 0.0, True)
        try:
            await self._finish_line_checks(state, entry, req, result, early, timing)
        finally:
            self._add(Record(uri=req.uri, outcome=LINE_FINISHED, **timing))  # type: ignore[arg-type]

    async def _finish_line_checks(
        self,
        state: _DocState,
        entry: _Running,
        req: CompletionRequest,
        result: GenResult,
        early: _Shown,
        timing: dict[str, float | int],
    ) -> None:
        cleaned = _clean_result(result, False, entry.cursor, entry.rule)
        checking = self.settings.syntax_check and syntax.checks(req.language, req.uri)
        repeats = checking and not cleaned.text and cleaned.reason.startswith(DUPLICATES)
        breaks = (
            checking and bool(cleaned.text) and bool(syntax.breaks(req.text, req.offset, cleaned.text, cleaned.replace))
        )
        if repeats or breaks:
            why = cleaned.reason if repeats else syntax.BREAKS
            cleaned = Cleaned(reason=why)
            if self.settings.alternatives and state.generation == entry.generation and entry.gen is not None:
                fitted = await self._alternative(
                    state, req, entry.cursor, entry.rule, entry.gen, result, entry.generation, timing, why
                )
                if fitted is not None:
                    cleaned, timing["confidence"] = fitted[0], round(fitted[1], 4)
        low, confidence = self.min_confidence(), float(timing["confidence"])
        if cleaned.text and low and confidence < low:
            cleaned = Cleaned(reason=f"low confidence ({confidence:.2f})")
        if state.shown is not early:
            return  # another suggestion is shown by now
        if cleaned.text:
            state.shown = _Shown(entry.prefix, entry.suffix, cleaned.text, cleaned.replace)
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
        if self.refresh_hook is not None and _remainder(here, latest) is not None:
            self.refresh_hook(latest.uri, latest.version)

    async def _run(self, state: _DocState, req: GenRequest, generation: int) -> GenResult | None:
        """One more engine job for the current request; None when a newer request arrived."""
        assert self.backend is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[GenResult] = loop.create_future()

        def done(result: GenResult) -> None:
            try:
                loop.call_soon_threadsafe(_resolve, future, result)
            except RuntimeError:
                pass

        job = self.backend.submit(req, done)
        state.job = job
        waiters: list[asyncio.Future[object]] = [future]  # type: ignore[list-item]
        if state.superseded is not None:
            waiters.append(state.superseded)  # type: ignore[arg-type]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            job.cancel.set()
            raise
        finally:
            if state.job is job:
                state.job = None
        if not future.done() or state.generation != generation:
            job.cancel.set()
            return None
        result = future.result()
        return None if result.outcome == "cancelled" else result

    async def _rerank(
        self,
        state: _DocState,
        req: CompletionRequest,
        cursor: Cursor,
        rule: StopRule,
        gen: GenRequest,
        greedy: Cleaned,
        generation: int,
        timing: dict[str, float | int],
    ) -> tuple[Cleaned, float, bool] | None:
        """Sample more lines and keep the one under which the code after the cursor is likeliest.

        The score is log p(line + the next lines | prompt): InCoder's left-to-right reranking. The
        confidence is the share of samples (greedy included) that wrote the chosen line; the flag says
        the line was checked and keeps the code well-formed (Python).
        """
        votes: dict[str, int] = {}
        found: dict[str, Cleaned] = {}
        checking = self.settings.syntax_check and syntax.checks(req.language, req.uri)

        def fits(c: Cleaned) -> bool:
            return not (checking and syntax.breaks(req.text, req.offset, c.text, c.replace))

        if greedy.text and fits(greedy):
            votes[greedy.text], found[greedy.text] = 1, greedy
        for i in range(self.settings.candidates):
            sample = replace(gen, temperature=SAMPLE_TEMPERATURE, seed=i + 1)
            result = await self._run(state, sample, generation)
            if result is None:
                return None
            _add_timing(timing, result)
            cleaned = clean(result.text, cursor, rule)
            if cleaned.text and fits(cleaned):
                votes[cleaned.text] = votes.get(cleaned.text, 0) + 1
                found.setdefault(cleaned.text, cleaned)
        total = self.settings.candidates + 1
        if len(found) <= 1:
            best = next(iter(found.values()), greedy)
            return best, votes.get(best.text, 0) / total, bool(found) and checking
        scores: dict[str, float] = {}
        for text, cleaned in found.items():
            follow = _follow(cursor, cleaned.replace)
            score_req = GenRequest(
                key=gen.key, prompt=gen.prompt + text + follow, max_tokens=0, score_from=len(gen.prompt)
            )
            result = await self._run(state, score_req, generation)
            if result is None:
                return None
            _add_timing(timing, result)
            scores[text] = result.score
        best_text = max(scores, key=lambda t: scores[t])
        log.debug("reranked %d candidates: %s", len(scores), sorted(scores.values(), reverse=True))
        return found[best_text], votes[best_text] / total, checking

    async def _alternative(
        self,
        state: _DocState,
        req: CompletionRequest,
        cursor: Cursor,
        rule: StopRule,
        gen: GenRequest,
        first: GenResult,
        generation: int,
        timing: dict[str, float | int],
        why: str = syntax.BREAKS,
    ) -> tuple[Cleaned, float] | None:
        """A suggestion that does not break the code, from the likeliest other first tokens; None when superseded.

        Each try continues the cached prompt with one of the first generation's alternatives (greedy);
        when none fits, the answer is empty for ``why`` (the first line's fault).
        """
        for start, prob in first.alternatives[: self.settings.alternatives]:
            started = bool(start.strip())
            forced = replace(
                gen,
                prompt=gen.prompt + start,
                max_tokens=max(1, gen.max_tokens - 1),
                rule=replace(rule, line_started=rule.line_started or started),
                alternatives=0,
            )
            result = await self._run(state, forced, generation)
            if result is None:
                return None
            _add_timing(timing, result, "alternative")
            cleaned = _clean_result(replace(result, text=start + result.text), rule.multiline, cursor, rule)
            if cleaned.text and not syntax.breaks(req.text, req.offset, cleaned.text, cleaned.replace):
                log.debug("alternative start %r fits (p=%.3f)", start, prob)
                return cleaned, min(prob, result.min_prob)
        return Cleaned(reason=why), 0.0

    def _reranks(self, req: CompletionRequest) -> bool:
        """Whether this request samples and reranks candidates (see the ``rerank`` setting)."""
        s = self.settings
        if not s.candidates or s.rerank == "never":
            return False
        if self.backend is not None and not self.backend.scores():
            return False  # a remote server that cannot score the code after the cursor (its backend logs why)
        if s.rerank == "always" or req.manual:
            return True
        return s.rerank == "auto" and self.fast_device

    def _prefetch(self, state: _DocState, req: CompletionRequest, shown: Cleaned) -> None:
        """Compute, at low priority, the suggestion that would follow if the shown one were accepted."""
        if self.backend is None:
            return
        after = req.text[req.offset + shown.replace :]
        insert = shown.text
        if not after.split("\n", 1)[0].strip():  # it completes its line: the next key is Enter
            insert += "\n" + _next_indent(req.text[: req.offset] + shown.text)
        text = req.text[: req.offset] + insert + after
        ahead = replace(req, text=text, offset=req.offset + len(insert), manual=False)
        cursor = self.cursor(ahead)
        if should_complete(cursor):
            return
        block = wants_block(cursor, self.settings.multiline)
        rule = StopRule(
            multiline=block,
            base_indent=_indent_width(cursor, block),
            line_started=bool(cursor.line_prefix.strip()),
            stop=self.template.stop + language_stops(cursor.language),
        )
        gen = GenRequest(
            key=req.uri,
            prompt=build_prompt(cursor, self.template, state.extra),
            max_tokens=self.settings.max_tokens_multiline if block else self.settings.max_tokens,
            temperature=self.settings.temperature,
            rule=rule,
            priority=-1,
        )
        loop = asyncio.get_running_loop()
        prefix = text[: ahead.offset]

        def keep(result: GenResult) -> None:
            if result.outcome != "done":
                return
            cleaned = clean(result.text, cursor, rule)
            if cleaned.text and self._docs.get(req.uri) is state:
                state.prefetched = _Shown(prefix, cursor.suffix, cleaned.text, cleaned.replace)
                log.info("prefetched the next suggestion for %s (%d chars)", req.uri, len(cleaned.text))

        def done(result: GenResult) -> None:
            try:
                loop.call_soon_threadsafe(keep, result)
            except RuntimeError:
                pass

        if state.prefetch_job is not None:
            state.prefetch_job.cancel.set()
        state.prefetch_job = self.backend.submit(gen, done)

    def _adoptable(self, state: _DocState, req: CompletionRequest) -> _Running | None:
        """A generation still running for this document that the new request can wait for.

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
        partial = _text_so_far(entry.job)
        partial = partial.lstrip() if not entry.cursor.line_prefix.strip() else partial
        if partial and not (partial.startswith(typed) or typed.startswith(partial)):
            return None
        entry.adopted = True
        entry.adopter = state.generation
        return entry

    async def _reuse(
        self,
        state: _DocState,
        req: CompletionRequest,
        entry: _Running,
        superseded: asyncio.Future[None],
        started: float = 0.0,
    ) -> Suggestion | None:
        """Wait for an adopted generation; the rest of its line if it starts with what was typed (with a
        line budget, the rest of its whole words so far once the budget has passed)."""
        adopter = entry.adopter
        typed = req.text[len(entry.prefix) : req.offset]
        budget = self._line_budget() if not entry.rule.multiline and not req.manual else 0
        try:
            early = await self._await_line(entry.future, superseded, entry, budget, typed, started)
        except asyncio.CancelledError:  # the client cancelled: nobody else waits for this job any more
            if entry.adopter == adopter and not entry.continued:
                entry.job.cancel.set()
            raise
        if early is not None:
            return self._continue_early(state, req, entry, early, typed)
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
        state.shown = _Shown(entry.prefix, entry.suffix, cleaned.text, cleaned.replace)
        log.info("suggestion for %s v%d: reused the generation still running", req.uri, req.version)
        return Suggestion(cleaned.text[len(typed) :], cleaned.replace, cached=True)

    def _cache_hit(self, req: CompletionRequest, hit: Suggestion, started: float) -> Suggestion:
        """Record and return an answer that needed no model run of its own."""
        record = Record(
            uri=req.uri,
            outcome="cache",
            total_ms=(time.perf_counter() - started) * 1000,
            cache_hit=True,
            version=req.version,
        )
        self._add(record)
        after_answer(log.info, "suggestion for %s v%d from the cache: %d chars", req.uri, req.version, len(hit.text))
        return replace(hit, record=record)

    def _extra(self, state: _DocState, req: CompletionRequest, cursor: Cursor) -> tuple[Chunk, ...]:
        """Extra context for this document, chosen again only when the window's head has moved and
        the block is older than ``EXTRA_REFRESH_S``.

        The extra block sits at the head of the prompt, so changing it costs a re-evaluation of the
        whole prompt; it stays frozen while the user types below it, also across visits to other
        documents (rebuilding it on return cost ~750 tokens, seconds on a CPU, in the typing replay).
        """
        budget = int(self.extra_tokens() * CHARS_PER_TOKEN)
        if budget <= 0 or not self.template.extra:
            return ()
        key = cursor.prefix[:256]
        now = time.monotonic()
        if state.extra_key and (key == state.extra_key or now - state.extra_at < EXTRA_REFRESH_S):
            # A moved window keeps the block too (for a while): the engine then moves the cached
            # code down instead of evaluating the whole prompt again.
            return state.extra
        state.extra_at = now
        chunks = self.ring.chunks()
        seen = {c.path for c in chunks}
        if self.documents is not None:
            for uri, text in self.documents():
                if uri != req.uri and uri not in seen:
                    chunks.append(Chunk(uri, "".join(text.splitlines(keepends=True)[: self.ring.lines])))
        state.extra = pick_extra(chunks, cursor.prefix + cursor.suffix, budget)
        state.extra_key = key
        return state.extra

    def _record_later(
        self, req: CompletionRequest, future: asyncio.Future[GenResult], outcome: str, started: float, waited: float
    ) -> None:
        """Add the record of an answered-early request once its engine job reports what it cost."""
        total_ms = (time.perf_counter() - started) * 1000

        def add(f: asyncio.Future[GenResult]) -> None:
            if f.cancelled():
                return
            record = Record(uri=req.uri, outcome=outcome, total_ms=total_ms, **_timing(f.result(), req.version, waited))  # type: ignore[arg-type]
            self._add(record)

        future.add_done_callback(add)

    def _type_through(self, state: _DocState, req: CompletionRequest) -> Suggestion | None:
        """The rest of the shown (or prefetched) suggestion when the user typed its start, without a model run."""
        hit = _remainder(state.shown, req)
        if hit is not None:
            return hit
        hit = _remainder(state.prefetched, req)
        if hit is not None:
            state.shown, state.prefetched = state.prefetched, None
            return hit
        shown = state.shown
        if state.prefetch_job is not None and (shown is None or not req.text.startswith(shown.prefix)):
            state.prefetch_job.cancel.set()  # the user went elsewhere: the prefetch is of no use
            state.prefetch_job = None
        return None


def whole_words(text: str) -> str:
    """The first line of ``text`` cut back to its last whole word: what a generation still running
    can show (the last identifier or number may go on)."""
    line = text.split("\n", 1)[0]
    end = len(line)
    while end > 0 and (line[end - 1].isalnum() or line[end - 1] == "_"):
        end -= 1
    return line[:end]


def _text_so_far(job: Handle) -> str:
    """What a running job has generated so far."""
    return job.text()


def _typed_on(shown: _Shown | None, req: CompletionRequest) -> str | None:
    """What was typed since ``shown`` was asked for, while ``req`` is still on it (a start of its text,
    the same text after the cursor); None when it is not."""
    if shown is None or not req.text.startswith(shown.prefix) or req.offset < len(shown.prefix):
        return None
    typed = req.text[len(shown.prefix) : req.offset]
    if len(typed) > TYPE_THROUGH_CHARS or not shown.text.startswith(typed):
        return None
    if req.text[req.offset : req.offset + len(shown.suffix)] != shown.suffix:
        return None
    return typed


def _remainder(shown: _Shown | None, req: CompletionRequest) -> Suggestion | None:
    """What is left of ``shown`` after the characters typed since it was shown (same text after the cursor)."""
    typed = _typed_on(shown, req)
    if shown is None or typed is None or not shown.text[len(typed) :].strip():
        return None
    return Suggestion(shown.text[len(typed) :], shown.replace, cached=True)


CAPPED = "line cut by the token cap"


def _clean_result(result: GenResult, block: bool, cursor: Cursor, rule: StopRule) -> Cleaned:
    """``clean`` of a generation's whole lines; a single line cut by the token cap is never shown."""
    if not block and result.capped and "\n" not in result.text.lstrip("\n"):
        return Cleaned(reason=CAPPED)
    return clean(_whole_lines(result, block), cursor, rule)


def _whole_lines(result: GenResult, block: bool) -> str:
    """The generated text, without the unfinished last line of a block stopped by its budget or
    its token cap (a single line cut by the cap is no line: see ``CAPPED``)."""
    text = result.text
    if not block:
        return text
    if not (result.truncated or result.capped) or text.endswith("\n"):
        return text
    cut = text.rfind("\n")
    return text[: cut + 1] if cut > 0 and text[:cut].strip() else text


def _next_indent(before: str) -> str:
    """The indentation an editor gives the line after ``before`` (one step deeper after a block opener)."""
    line = before[before.rfind("\n") + 1 :]
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    if line.rstrip().endswith((":", "{", "(", "[")):
        indent += "\t" if indent.startswith("\t") else "    "
    return indent


def _follow(cursor: Cursor, replace: int) -> str:
    """The code after a suggestion that replaces ``replace`` characters: the rest of the line and the
    next few non-blank lines (what a good suggestion should make likely)."""
    rest = cursor.suffix[replace:]
    out: list[str] = []
    count = 0
    for i, line in enumerate(rest.split("\n")):
        out.append(line)
        if i and line.strip():
            count += 1
        if count >= FOLLOW_LINES:
            break
    text = "\n".join(out)[:FOLLOW_CHARS]
    return text if text.strip() else ""


def _add_timing(timing: dict[str, float | int], result: GenResult, kind: str = "rerank") -> None:
    """Add a reranking or alternative job's work to a request's figures (apart from the first generation's)."""
    timing[f"{kind}_jobs"] = timing.get(f"{kind}_jobs", 0) + 1
    timing[f"{kind}_tokens"] = timing.get(f"{kind}_tokens", 0) + result.evaluated_tokens + result.generated_tokens
    timing["engine_ms"] = timing.get("engine_ms", 0) + result.total_ms


def _indent_width(cursor: Cursor, block: bool) -> int:
    if not block:
        return len(cursor.indent)
    lines = cursor.prefix.split("\n")[:-1]
    opener = next((ln for ln in reversed(lines) if ln.strip()), "")
    return len(opener) - len(opener.lstrip(" \t"))


def _timing(result: GenResult, version: int, waited: float, confidence: bool = False) -> dict[str, float | int]:
    """The engine's figures for a request's record (with ``confidence``: the line's, as a finished
    line's record carries it)."""
    figures: dict[str, float | int] = dict(
        queue_ms=result.queue_ms,
        ttft_ms=result.ttft_ms,
        engine_ms=result.total_ms,
        prompt_tokens=result.prompt_tokens,
        cached_tokens=result.cached_tokens,
        shifted_tokens=result.shifted_tokens,
        evaluated_tokens=result.evaluated_tokens,
        generated_tokens=result.generated_tokens,
        drafted_tokens=result.drafted_tokens,
        accepted_tokens=result.accepted_tokens,
        line_prob=round(result.line_prob, 4) if result.generated_tokens else -1.0,
        min_prob=round(result.min_prob, 4) if result.generated_tokens else -1.0,
        version=version,
        debounce_ms=waited,
    )
    if confidence:
        figures["confidence"] = round(result.min_prob, 4) if result.generated_tokens else -1.0
    return figures


def _resolve(future: asyncio.Future[GenResult], result: GenResult) -> None:
    if not future.done():
        future.set_result(result)
