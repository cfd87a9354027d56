"""One job on the endpoint: its request, its streamed answer read into it, or a prompt's score.

Generation is streamed (server-sent events): stop rules end a stream early, a job's text so far is
readable while it runs (``RemoteJob.text``, for first words), and cancelling a job closes its
connection at once, which tells llama.cpp's and vLLM's servers to stop. The probabilities of the
tokens sampled give the same confidence figures as the in-process engine's (``first_prob``,
``line_prob``, ``min_prob``); the top log-probabilities of the first step that writes more than
whitespace give ``alternatives``.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from suggest_ls.backends.contract import GenRequest, GenResult, should_stop
from suggest_ls.backends.remote.client import (
    Client,
    RemoteError,
    RemoteUnavailable,
    abort,
    first_choice,
    snippet,
    transient_status,
)
from suggest_ls.backends.remote.logprobs import MAX_TOP_LOGPROBS, TokenLogprob, alternatives_at, token_logprobs
from suggest_ls.backends.remote.probe import Capabilities
from suggest_ls.backends.remote.sse import read_events

MAX_STOP = 4  # the OpenAI API takes at most four stop strings


class _CancelEvent(threading.Event):
    """A cancel flag that also aborts the job's connection the moment it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.on_set: Callable[[], None] | None = None

    def set(self) -> None:
        """Set the flag and close the connection, if one is open."""
        super().set()
        hook = self.on_set
        if hook is not None:
            try:
                hook()
            except OSError:
                pass


class Cancelled(Exception):
    """The job was cancelled while streaming."""


@dataclass(eq=False)
class RemoteJob:
    """A submitted request; ``cancel`` may be set from any thread, ``text``/``min_prob`` read from any."""

    req: GenRequest
    done: Callable[[GenResult], None]
    cancel: _CancelEvent = field(default_factory=_CancelEvent)
    submitted: float = field(default_factory=time.perf_counter)
    finished: bool = False
    pieces: str = ""
    tokens: int = 0  # tokens streamed (chunks when the server gives no log-probabilities)
    first_token: float = 0.0
    first_prob: float = 1.0
    logprob: float = 0.0  # summed over the tokens with a log-probability
    min_prob: float = 1.0
    sampled: int = 0
    alternatives: tuple[tuple[str, float], ...] = ()
    usage: dict[str, Any] = field(default_factory=dict)  # the server's token counts, once it sent them
    timings: dict[str, Any] = field(
        default_factory=dict
    )  # llama.cpp's: prompt tokens evaluated (prompt_n) and cached (cache_n)
    capped: bool = False  # stopped by max_tokens (finish_reason "length"), not a stop rule or the end of text

    def text(self) -> str:
        """Generated text so far."""
        return self.pieces

    def add(self, text: str, entries: list[TokenLogprob], now: float) -> None:
        """Take one streamed chunk: its text and the log-probabilities of its tokens (may be none)."""
        lead = self.pieces
        for entry in entries:
            if entry.logprob is not None:
                prob = math.exp(entry.logprob)
                if not self.sampled:
                    self.first_prob = prob
                self.sampled += 1
                self.logprob += entry.logprob
                self.min_prob = min(self.min_prob, prob)
            if self.req.alternatives and not lead.strip() and entry.top:
                self.alternatives = alternatives_at(lead, entry.text, entry.top, self.req.alternatives)
            lead += entry.text
        self.tokens += len(entries) if entries else 1
        self.first_token = self.first_token or now
        self.pieces += text

    def result(self, outcome: str, error: str, started: float) -> GenResult:
        """A generation's result, ending now with ``outcome`` (``started``: when a worker took it)."""
        end = time.perf_counter()
        prompt_tokens = int(self.usage.get("prompt_tokens") or 0)
        evaluated, cached = prompt_tokens, 0
        if self.timings:
            evaluated = _count(self.timings.get("prompt_n"))
            cached = _count(self.timings.get("cache_n"))
            prompt_tokens = prompt_tokens or evaluated + cached
        return GenResult(
            text=self.pieces if outcome == "done" else "",
            outcome=outcome,
            error=error,
            prompt_tokens=prompt_tokens,
            cached_tokens=cached,
            evaluated_tokens=evaluated,
            generated_tokens=self.tokens,
            queue_ms=(started - self.submitted) * 1000,
            ttft_ms=((self.first_token or end) - self.submitted) * 1000,
            total_ms=(end - self.submitted) * 1000,
            first_prob=self.first_prob,
            line_prob=math.exp(self.logprob / self.sampled) if self.sampled else 1.0,
            min_prob=self.min_prob,
            capped=self.capped,
            alternatives=self.alternatives,
        )


def _count(value: Any) -> int:
    """A token count from the server: a non-negative int, else 0."""
    return value if isinstance(value, int) and value > 0 else 0


def completion_body(model_id: str, caps: Capabilities, req: GenRequest) -> dict[str, Any]:
    """The ``/v1/completions`` request for ``req``: streamed, with log-probabilities where offered."""
    body: dict[str, Any] = {
        "model": model_id,
        "prompt": req.prompt,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "stream": True,
    }
    if req.seed:
        body["seed"] = req.seed
    if caps.timings:
        body["timings_per_token"] = True
    if caps.logprobs:
        body["logprobs"] = min(MAX_TOP_LOGPROBS, req.alternatives + 2) if req.alternatives and caps.top_logprobs else 1
    stops = [s for s in req.rule.stop if s][:MAX_STOP]
    if stops:
        body["stop"] = stops
    return body


def stream_completion(client: Client, job: RemoteJob, body: dict[str, Any], deadline: float) -> None:
    """Send ``body`` on a new connection and read the answer into ``job`` until a stop rule, the budget
    or the end of the stream; raises ``Cancelled`` when the job is cancelled meanwhile, and
    ``RemoteError`` (``RemoteUnavailable`` when worth retrying), ``OSError`` or ``ValueError`` on failures."""
    conn: http.client.HTTPConnection | None = None
    try:
        conn = client.connection()
        job.cancel.on_set = lambda: abort(conn)
        if job.cancel.is_set():
            raise Cancelled
        client.open(conn)
        if job.cancel.is_set():
            raise Cancelled
        conn.request("POST", f"{client.prefix}/completions", body=json.dumps(body).encode(), headers=client.headers())
        resp = conn.getresponse()
        if resp.status != 200:
            text = snippet(resp.read(4096))
            cls = RemoteUnavailable if transient_status(resp.status) else RemoteError
            raise cls(f"HTTP {resp.status} {text}")
        if "text/event-stream" not in (resp.getheader("Content-Type") or ""):
            _read_whole(job, resp)
        else:
            _read_stream(job, resp, deadline, client.config.timeout_s)
    finally:
        job.cancel.on_set = None
        if conn is not None:
            conn.close()


def _read_whole(job: RemoteJob, resp: http.client.HTTPResponse) -> None:
    """An answer the server did not stream."""
    data = json.loads(resp.read() or b"{}")
    choice = first_choice(data)
    job.add(str(choice.get("text") or ""), token_logprobs(choice), time.perf_counter())
    job.usage = data.get("usage") or {}
    if isinstance(data.get("timings"), dict):
        job.timings = data["timings"]
    job.tokens = int(job.usage.get("completion_tokens") or job.tokens)
    job.capped = choice.get("finish_reason") == "length" and not should_stop(job.pieces, job.req.rule)


def _read_stream(job: RemoteJob, resp: http.client.HTTPResponse, deadline: float, timeout_s: float) -> None:
    """A streamed answer, chunk by chunk, until it is complete or the job has what it needs."""
    complete = False
    for event in read_events(resp):
        if job.cancel.is_set():
            raise Cancelled
        if event.data.strip() == "[DONE]":
            complete = True
            break
        data = json.loads(event.data)
        if isinstance(data, dict) and data.get("error"):
            raise RemoteError(str(data["error"])[:200])
        choice = first_choice(data)
        job.usage = data.get("usage") or job.usage
        if isinstance(data.get("timings"), dict):
            job.timings = data["timings"]
        text = str(choice.get("text") or "")
        entries = token_logprobs(choice)
        if text or entries:
            job.add(text, entries, time.perf_counter())
        if choice.get("finish_reason"):
            complete = True
            job.capped = choice.get("finish_reason") == "length" and not should_stop(job.pieces, job.req.rule)
        if should_stop(job.pieces, job.req.rule):
            complete = True
            break
        if job.tokens >= job.req.max_tokens:
            complete = job.capped = True
            break
        if time.perf_counter() > deadline:
            raise RemoteError(f"no end of the stream after {timeout_s:.0f} s")
    if job.cancel.is_set():  # the aborted connection ended the stream early
        raise Cancelled
    if not complete:
        raise RemoteUnavailable("the stream ended early (connection dropped)")


def score_prompt(client: Client, job: RemoteJob, body: dict[str, Any]) -> tuple[float, int]:
    """The summed log-probability of the prompt's tokens from ``score_from`` on, and how many there were."""
    req = job.req
    score, scored = 0.0, 0
    conn: http.client.HTTPConnection | None = None
    try:
        conn, resp = client.request("POST", "/completions", body)
        job.cancel.on_set = lambda: abort(conn) if conn is not None else None
        choice = first_choice(json.loads(resp.read() or b"{}"))
        entries = token_logprobs(choice)
        for i, e in enumerate(entries):
            end = entries[i + 1].offset if i + 1 < len(entries) else e.offset + len(e.text)
            if e.logprob is not None and 0 <= e.offset < len(req.prompt) and end > req.score_from:
                score += e.logprob
                scored += 1
    finally:
        job.cancel.on_set = None
        if conn is not None:
            conn.close()
    return score, scored
