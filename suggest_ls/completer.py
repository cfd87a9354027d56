"""From a cursor to a suggestion: debounce, supersede, typing-through cache, engine, clean.

Plain data in and out; the LSP server module is the only caller that knows the protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from suggest_ls.clean import StopRule, clean
from suggest_ls.context import Cursor, should_complete, wants_block, window
from suggest_ls.engine import GenRequest, GenResult
from suggest_ls.prompt import Template, build_prompt
from suggest_ls.settings import Settings
from suggest_ls.stats import Record, Recorder

log = logging.getLogger(__name__)
MAX_DOCUMENT_CHARS = 4_000_000
MAX_LINE_CHARS = 20_000
TYPE_THROUGH_CHARS = 128


class Handle(Protocol):
    """A submitted job: setting ``cancel`` stops it at the next decode step."""

    cancel: threading.Event


class Backend(Protocol):
    """What the completer needs from an engine (in-process or remote)."""

    def submit(self, req: GenRequest, done: Callable[[GenResult], None]) -> Handle: ...

    def expect(self, delta: int) -> None: ...


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


@dataclass
class _Shown:
    prefix: str
    suffix: str
    text: str
    replace: int


@dataclass
class _DocState:
    generation: int = 0
    last_request: float = 0.0
    interval_ms: float = 150.0
    job: Handle | None = None
    superseded: asyncio.Future[None] | None = None  # resolved when a newer request arrives
    shown: _Shown | None = None
    running: list[tuple[str, str, asyncio.Future[GenResult]]] = field(default_factory=list)


def adaptive_debounce(interval_ms: float) -> float:
    """Debounce in ms from the typist's recent inter-keystroke interval (fast typists wait a bit)."""
    if interval_ms >= 400:
        return 0.0
    return max(0.0, min(60.0, 0.5 * interval_ms))


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
        self.reason_hook: Callable[[str, str], None] | None = None
        self._trace = os.environ.get("SUGGEST_LS_TRACE", "")

    def _add(self, record: Record) -> None:
        """Keep a request's record; also append it to the ``SUGGEST_LS_TRACE`` JSONL file when set."""
        self.recorder.add(record)
        if self._trace:
            try:
                with open(self._trace, "a", encoding="utf-8") as out:
                    out.write(json.dumps(record.as_dict()) + "\n")
            except OSError as exc:
                log.warning("request trace not written: %s", exc)
                self._trace = ""

    def forget(self, uri: str) -> None:
        """Drop per-document state (the document was closed)."""
        state = self._docs.pop(uri, None)
        if state and state.job is not None:
            state.job.cancel.set()
        if state and state.superseded is not None and not state.superseded.done():
            state.superseded.set_result(None)

    def cursor(self, req: CompletionRequest) -> Cursor:
        """The prompt window around the request's cursor."""
        s = self.settings
        prefix, suffix = window(req.text, req.offset, s.prompt_tokens, s.suffix_share)
        return Cursor(prefix, suffix, req.language, req.uri)

    def _empty(self, req: CompletionRequest, reason: str, started: float, **extra: object) -> Suggestion:
        extra.setdefault("version", req.version)
        record = Record(uri=req.uri, outcome=reason, total_ms=(time.perf_counter() - started) * 1000, **extra)  # type: ignore[arg-type]
        self._add(record)
        log.info("no suggestion for %s v%d: %s", req.uri, req.version, reason)
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
        state.generation += 1
        generation = state.generation
        if state.job is not None:
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
        if not req.manual:
            why = should_complete(cursor)
            if why:
                return self._empty(req, why, started)
        hit = self._type_through(state, req)
        if hit is not None:
            record = Record(
                uri=req.uri,
                outcome="cache",
                total_ms=(time.perf_counter() - started) * 1000,
                cache_hit=True,
                version=req.version,
            )
            self._add(record)
            return replace(hit, record=record)
        debounce = s.debounce_ms if s.debounce_ms >= 0 else adaptive_debounce(state.interval_ms)
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
            stop=self.template.stop,
        )
        gen = GenRequest(
            key=req.uri,
            prompt=build_prompt(cursor, self.template),
            max_tokens=s.max_tokens_multiline if block else s.max_tokens,
            temperature=s.temperature,
            rule=rule,
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
        entry = (prefix_full, cursor.suffix, future)
        state.running.append(entry)
        try:
            await asyncio.wait([future, superseded], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        except asyncio.CancelledError:
            job.cancel.set()
            self._record_later(req, future, "cancelled by the client", started, waited)
            raise
        finally:
            if state.job is job:
                state.job = None
            state.running.remove(entry)
        if not future.done():  # a newer request for this document: answer now, record the engine's work later
            job.cancel.set()
            log.info("no suggestion for %s v%d: superseded", req.uri, req.version)
            self._record_later(req, future, "superseded", started, waited)
            return Suggestion(reason="superseded")
        result = future.result()
        timing = _timing(result, req.version, waited)
        if result.outcome == "cancelled" or state.generation != generation:
            return self._empty(req, "superseded", started, **timing)
        if result.outcome == "error":
            return self._empty(req, f"error: {result.error}", started, **timing)
        if s.min_confidence and result.first_prob < s.min_confidence:
            return self._empty(req, f"low confidence ({result.first_prob:.2f})", started, **timing)
        cleaned = clean(result.text, cursor, rule)
        if not cleaned.text:
            return self._empty(req, cleaned.reason, started, **timing)
        state.shown = _Shown(prefix_full, cursor.suffix, cleaned.text, cleaned.replace)
        record = Record(uri=req.uri, outcome="shown", total_ms=(time.perf_counter() - started) * 1000, **timing)  # type: ignore[arg-type]
        self._add(record)
        log.info(
            "suggestion for %s v%d: %d chars in %.0f ms (prompt %d tokens, %d cached, %d evaluated, %d generated)",
            req.uri,
            req.version,
            len(cleaned.text),
            record.total_ms,
            result.prompt_tokens,
            result.cached_tokens,
            result.evaluated_tokens,
            result.generated_tokens,
        )
        return Suggestion(cleaned.text, cleaned.replace, record=record)

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
        """The rest of the shown suggestion when the user typed its start, without a model run."""
        shown = state.shown
        if shown is None:
            return None
        prefix = req.text[: req.offset]
        if not prefix.startswith(shown.prefix):
            return None
        typed = prefix[len(shown.prefix) :]
        if len(typed) > TYPE_THROUGH_CHARS or not shown.text.startswith(typed):
            return None
        rest = shown.text[len(typed) :]
        if not rest.strip():
            return None
        suffix = req.text[req.offset : req.offset + len(shown.suffix)]
        if suffix != shown.suffix:
            return None
        return Suggestion(rest, shown.replace, cached=True)


def _indent_width(cursor: Cursor, block: bool) -> int:
    if not block:
        return len(cursor.indent)
    lines = cursor.prefix.split("\n")[:-1]
    opener = next((ln for ln in reversed(lines) if ln.strip()), "")
    return len(opener) - len(opener.lstrip(" \t"))


def _timing(result: GenResult, version: int, waited: float) -> dict[str, float | int]:
    """The engine's figures for a request's record."""
    return dict(
        queue_ms=result.queue_ms,
        ttft_ms=result.ttft_ms,
        engine_ms=result.total_ms,
        prompt_tokens=result.prompt_tokens,
        cached_tokens=result.cached_tokens,
        evaluated_tokens=result.evaluated_tokens,
        generated_tokens=result.generated_tokens,
        drafted_tokens=result.drafted_tokens,
        accepted_tokens=result.accepted_tokens,
        version=version,
        debounce_ms=waited,
    )


def _resolve(future: asyncio.Future[GenResult], result: GenResult) -> None:
    if not future.done():
        future.set_result(result)
