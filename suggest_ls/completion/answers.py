"""What each request leaves behind once it is answered: its record (kept in the recorder, and
appended to the ``SUGGEST_LS_TRACE`` file when set) and its log line, both after the answer is out."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TextIO

from suggest_ls.backends.contract import GenResult
from suggest_ls.completion.request import CompletionRequest, Suggestion
from suggest_ls.completion.stats import Record, Recorder

log = logging.getLogger(__name__)


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


def engine_figures(result: GenResult, version: int, waited: float, confidence: bool = False) -> dict[str, float | int]:
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


class Answers:
    """Records requests' outcomes into ``recorder`` (and the trace file), after their answers."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._trace = os.environ.get("SUGGEST_LS_TRACE", "")
        self._trace_file: TextIO | None = None

    def add(self, record: Record) -> None:
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

    def empty(self, req: CompletionRequest, reason: str, started: float, **extra: object) -> Suggestion:
        """Record and return the answer that shows nothing, and why."""
        extra.setdefault("version", req.version)
        record = Record(uri=req.uri, outcome=reason, total_ms=(time.perf_counter() - started) * 1000, **extra)  # type: ignore[arg-type]
        self.add(record)
        after_answer(log.info, "no suggestion for %s v%d: %s", req.uri, req.version, reason)
        return Suggestion(reason=reason, record=record)

    def shown(
        self, req: CompletionRequest, chars: int, result: GenResult, timing: dict[str, float | int], started: float
    ) -> Record:
        """Record a suggestion of ``chars`` characters shown, and log what it cost."""
        record = Record(uri=req.uri, outcome="shown", total_ms=(time.perf_counter() - started) * 1000, **timing)  # type: ignore[arg-type]
        self.add(record)
        after_answer(
            log.info,
            "suggestion for %s v%d: %d chars in %.0f ms (prompt %d tokens, %d cached, %d evaluated, %d generated; "
            "reranking %d jobs, %d tokens)",
            req.uri,
            req.version,
            chars,
            record.total_ms,
            result.prompt_tokens,
            result.cached_tokens,
            result.evaluated_tokens,
            result.generated_tokens,
            timing.get("rerank_jobs", 0),
            timing.get("rerank_tokens", 0),
        )
        return record

    def cache_hit(self, req: CompletionRequest, hit: Suggestion, started: float) -> Suggestion:
        """Record and return an answer that needed no model run of its own."""
        record = Record(
            uri=req.uri,
            outcome="cache",
            total_ms=(time.perf_counter() - started) * 1000,
            cache_hit=True,
            version=req.version,
        )
        self.add(record)
        after_answer(log.info, "suggestion for %s v%d from the cache: %d chars", req.uri, req.version, len(hit.text))
        return replace(hit, record=record)

    def later(
        self, req: CompletionRequest, future: asyncio.Future[GenResult], outcome: str, started: float, waited: float
    ) -> None:
        """Add the record of an answered-early request once its engine job reports what it cost."""
        total_ms = (time.perf_counter() - started) * 1000

        def add(f: asyncio.Future[GenResult]) -> None:
            if f.cancelled():
                return
            figures = engine_figures(f.result(), req.version, waited)
            self.add(Record(uri=req.uri, outcome=outcome, total_ms=total_ms, **figures))  # type: ignore[arg-type]

        future.add_done_callback(add)
