"""From a cursor to a suggestion, per document: each request supersedes the older ones (or adopts the
generation still running), is answered from the typing-through cache where it can, waits out the
debounce, then runs the plan's engine job and judges its text.

Plain data in and out; the LSP server module is the only caller that knows the protocol.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from suggest_ls.backends.contract import Backend, GenRequest, GenResult, Handle
from suggest_ls.completion.answers import Answers, after_answer, engine_figures
from suggest_ls.completion.clean import Cleaned, clean
from suggest_ls.completion.context import Chunk, ChunkRing, Cursor, should_complete, window
from suggest_ls.completion.deadline import LineDeadline, adoptable
from suggest_ls.completion.plan import Plan, extra_context, plan
from suggest_ls.completion.prompt import Template
from suggest_ls.completion.request import CompletionRequest, DocState, Running, Shown, Suggestion
from suggest_ls.completion.rerank import Run, judge
from suggest_ls.completion.shown import accepted, remainder, type_through, typed_on
from suggest_ls.completion.stats import Recorder
from suggest_ls.settings import Settings

log = logging.getLogger(__name__)
MAX_DOCUMENT_CHARS = 4_000_000
MAX_LINE_CHARS = 20_000
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


def adaptive_debounce(interval_ms: float, last_char: str = "") -> float:
    """Debounce in ms from the typing rhythm: a short wait only inside a word typed fast.

    Waiting costs more than it saves (the latency replays showed it; the README keeps the figures):
    a superseded job's prompt work stays in the document's cache, and a job that finishes mid-burst feeds the typing-through cache. So after a
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
        self.answers = Answers(self.recorder)
        self._docs: dict[str, DocState] = {}
        # Told (uri, version) when a line answered early is complete: the client may ask again.
        self.refresh_hook: Callable[[str, int], None] | None = None
        self.deadline = LineDeadline(self)
        self.ring = ChunkRing()
        # Other open documents as (uri, text); the server sets it.
        self.documents: Callable[[], Iterable[tuple[str, str]]] | None = None
        # Whether the model runs where sampling and scoring candidates is cheap (a GPU or a remote server).
        self.fast_device = False
        self.prefill_tps = 0.0  # prompt tokens/s measured at load (0: unknown); sizes the automatic window
        self.last_prompt = ""  # the latest prompt and raw model text, for ``complete --explain``
        self.last_raw = ""
        self.warmed: deque[tuple[str, int]] = deque(maxlen=256)  # (outcome, tokens evaluated) of warm jobs

    def settings_changed(self, old: Settings, new: Settings) -> None:
        """A settings subscriber: later requests follow ``new``."""
        self.settings = new

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
        state = self._docs.setdefault(req.uri, DocState())
        if state.job is not None or any(not e.job.cancel.is_set() for e in state.running):
            return False  # a live request is evaluating this document's prompt already
        cursor = self.cursor(req)
        if "\x00" in cursor.prefix or "\x00" in cursor.suffix:
            return False
        if state.warm_job is not None:
            state.warm_job.cancel.set()
        gen = plan(cursor, s, self.template, self._extra(state, req, cursor), "warm").gen

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

    def _extra(self, state: DocState, req: CompletionRequest, cursor: Cursor) -> tuple[Chunk, ...]:
        """The document's extra context (see ``plan.extra_context``)."""
        return extra_context(state, cursor, self.extra_tokens(), self.template, self.ring, self.documents)

    async def complete(self, req: CompletionRequest) -> Suggestion:
        """Compute the suggestion for one request; never raises except on task cancellation."""
        started = time.perf_counter()
        s, answers = self.settings, self.answers
        state = self._docs.setdefault(req.uri, DocState())
        adopt, superseded = self._supersede(state, req)
        generation = state.generation
        why = self._unavailable(req)
        if why:
            return answers.empty(req, why, started)
        cursor = self.cursor(req)
        why = _unfit(cursor)
        if why:
            return answers.empty(req, why, started)
        self.ring.add(req.uri, req.text, req.offset)  # a place the user works at: context for other places
        hit = type_through(state, req)
        why = "" if hit is not None or req.manual else (should_complete(cursor) or "")
        if adopt is not None and (why or (hit is not None and not adopt.continued)):
            adopt.job.cancel.set()  # adopted, but this request needs no generation after all
        if hit is not None:
            return answers.cache_hit(req, hit, started)
        if remainder(state.withdrawn, req) is not None or typed_on(state.withdrawn, req) == "":
            # on first words not kept, or exactly where a line was not kept: why, at once
            if adopt is not None:
                adopt.job.cancel.set()
            return answers.empty(req, state.withdrawn_reason, started)
        if why:
            return answers.empty(req, why, started)
        if adopt is not None:
            reused = await self.deadline.reuse(state, req, adopt, superseded, started)
            if reused is not None:
                return (
                    answers.cache_hit(req, reused, started)
                    if reused.text
                    else answers.empty(req, reused.reason, started)
                )
            if state.generation != generation:
                return answers.empty(req, "superseded", started)
        extra = self._extra(state, req, cursor)
        last_char = req.text[req.offset - 1 : req.offset] if req.offset else ""
        debounce = s.debounce_ms if s.debounce_ms >= 0 else adaptive_debounce(state.interval_ms, last_char)
        waited = 0.0
        if debounce > 0 and not req.manual:
            waited = await self._debounce(superseded, debounce, started)
            if state.generation != generation:
                return answers.empty(req, "superseded while debouncing", started, debounce_ms=waited)
        p = plan(cursor, s, self.template, extra, manual=req.manual)
        entry = self._start(state, req, p, generation)
        budget = self.deadline.line_budget() if not p.block and not req.manual else 0
        early: Cleaned | None = None
        try:
            early = await self.deadline.await_line(entry.future, superseded, entry, budget, "", started)
        except asyncio.CancelledError:
            entry.job.cancel.set()
            answers.later(req, entry.future, "cancelled by the client", started, waited)
            raise
        finally:
            if early is None:
                if state.job is entry.job:
                    state.job = None
                state.running.remove(entry)
        if early is not None:
            return self.deadline.answer_early(state, req, entry, early, started, waited)
        if not entry.future.done():  # a newer request for this document: answer now, record the engine's work later
            if not entry.adopted:
                entry.job.cancel.set()
            log.info("no suggestion for %s v%d: superseded", req.uri, req.version)
            answers.later(req, entry.future, "superseded", started, waited)
            return Suggestion(reason="superseded")
        result = entry.future.result()
        self.last_prompt, self.last_raw = p.gen.prompt, result.text
        timing = engine_figures(result, req.version, waited)
        if result.outcome == "cancelled" or state.generation != generation:
            return answers.empty(req, "superseded", started, **timing)
        if result.outcome == "error":
            return answers.empty(req, f"error: {result.error}", started, **timing)
        sample = self._reranks(req) and not self.template.fim
        judged = await judge(self.run_for(state, generation), self.settings, req, p, result, timing, sample)
        if judged is None:
            return answers.empty(req, "superseded", started, **timing)
        cleaned, confidence = judged
        timing["confidence"] = round(confidence, 4)
        floor = self.min_confidence()
        if floor and cleaned.text and confidence < floor:  # else: why there is none
            return answers.empty(req, f"low confidence ({confidence:.2f})", started, **timing)
        if not cleaned.text:
            return answers.empty(req, cleaned.reason, started, **timing)
        return self._show(state, req, p, cleaned, result, timing, started, prefetch=s.prefetch)

    def _supersede(self, state: DocState, req: CompletionRequest) -> tuple[Running | None, asyncio.Future[None]]:
        """Make ``req`` the document's latest request: the older ones answer now and their jobs stop,
        except a generation ``req`` can wait for (adopted: returned). Also the future that tells ``req``
        a newer request has come in turn."""
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
        adopt = adoptable(state, req)
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
        return adopt, superseded

    def _unavailable(self, req: CompletionRequest) -> str:
        """Why no suggestion can be made for ``req`` at all ("" when one can)."""
        if not self.settings.enabled:
            return "disabled"
        if self.backend is None:
            return "model not loaded"
        if len(req.text) > MAX_DOCUMENT_CHARS:
            return f"document too large ({len(req.text)} characters)"
        if not 0 <= req.offset <= len(req.text):
            return "position outside the document"
        return ""

    async def _debounce(self, superseded: asyncio.Future[None], debounce_ms: float, started: float) -> float:
        """Wait ``debounce_ms`` or until a newer request comes in; the ms since the request arrived."""
        assert self.backend is not None
        self.backend.expect(1)
        try:
            await asyncio.wait({superseded}, timeout=debounce_ms / 1000)
        finally:
            self.backend.expect(-1)
        return (time.perf_counter() - started) * 1000

    def _start(self, state: DocState, req: CompletionRequest, p: Plan, generation: int) -> Running:
        """Submit the request's generation: the document's job, running where a newer request may adopt it."""
        assert self.backend is not None
        job, future = submit(self.backend, p.gen)
        state.job = job
        entry = Running(
            req.text[: req.offset], p.cursor.suffix, future, job, p.cursor, p.rule, gen=p.gen, generation=generation
        )
        state.running.append(entry)
        return entry

    def _show(
        self,
        state: DocState,
        req: CompletionRequest,
        p: Plan,
        cleaned: Cleaned,
        result: GenResult,
        timing: dict[str, float | int],
        started: float,
        prefetch: bool,
    ) -> Suggestion:
        """Answer with the suggestion (shown: the type-through cache's), record it, then prefetch the next."""
        state.shown = Shown(req.text[: req.offset], p.cursor.suffix, cleaned.text, cleaned.replace)
        state.prefetched = None
        record = self.answers.shown(req, len(cleaned.text), result, timing, started)
        if prefetch:
            after_answer(self._prefetch, state, req, cleaned)
        return Suggestion(cleaned.text, cleaned.replace, record=record, prompt=p.gen.prompt, raw=result.text)

    def run_for(self, state: DocState, generation: int) -> Run:
        """``run`` for reranking and alternatives: more engine jobs for the request of ``generation``."""
        return lambda gen: self._run(state, gen, generation)

    async def _run(self, state: DocState, req: GenRequest, generation: int) -> GenResult | None:
        """One more engine job for the current request; None when a newer request arrived."""
        assert self.backend is not None
        job, future = submit(self.backend, req)
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

    def _prefetch(self, state: DocState, req: CompletionRequest, shown: Cleaned) -> None:
        """Compute, at low priority, the suggestion that would follow if the shown one were accepted."""
        if self.backend is None:
            return
        ahead = accepted(req, shown)
        cursor = self.cursor(ahead)
        if should_complete(cursor):
            return
        p = plan(cursor, self.settings, self.template, state.extra, "prefetch")
        prefix = ahead.text[: ahead.offset]

        def keep(result: GenResult) -> None:
            if result.outcome != "done":
                return
            cleaned = clean(result.text, cursor, p.rule)
            if cleaned.text and self._docs.get(req.uri) is state:
                state.prefetched = Shown(prefix, cursor.suffix, cleaned.text, cleaned.replace)
                log.info("prefetched the next suggestion for %s (%d chars)", req.uri, len(cleaned.text))

        if state.prefetch_job is not None:
            state.prefetch_job.cancel.set()
        state.prefetch_job = self.backend.submit(p.gen, on_loop(keep))


def _unfit(cursor: Cursor) -> str:
    """Why no suggestion is made at this cursor whatever the model would write ("" when one can be)."""
    if len(cursor.line_prefix) + len(cursor.line_suffix) > MAX_LINE_CHARS:
        return "line too long"
    if "\x00" in cursor.prefix or "\x00" in cursor.suffix:
        return "binary content near the cursor"
    return ""


def on_loop(fn: Callable[[GenResult], None]) -> Callable[[GenResult], None]:
    """A backend's done callback (called on its thread) that runs ``fn`` on the running loop; once that
    loop is closed nobody waits for the result any more, and it is dropped."""
    loop = asyncio.get_running_loop()

    def done(result: GenResult) -> None:
        try:
            loop.call_soon_threadsafe(fn, result)
        except RuntimeError:  # the loop is closed
            pass

    return done


def submit(backend: Backend, gen: GenRequest) -> tuple[Handle, asyncio.Future[GenResult]]:
    """Submit ``gen`` to ``backend``: its job, and a future (on the running loop) of its result."""
    future: asyncio.Future[GenResult] = asyncio.get_running_loop().create_future()
    return backend.submit(gen, on_loop(functools.partial(_resolve, future))), future


def _resolve(future: asyncio.Future[GenResult], result: GenResult) -> None:
    if not future.done():
        future.set_result(result)
