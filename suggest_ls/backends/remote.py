"""A remote backend: any OpenAI-compatible ``/v1/completions`` server, behind the engine's interface.

Standard library only (``http.client``) in a small worker pool: the same ``submit(GenRequest,
done)`` / ``expect`` / ``close`` contract as the in-process engine, so prompts, post-processing,
the typing-through cache and cancellation are shared. Generation is streamed (server-sent events,
read by ``SSEParser``): stop rules end a stream early, a job's text so far is readable while it
runs (``RemoteJob.text``, for first words), and cancelling a job closes its connection at once,
which tells llama.cpp's and vLLM's servers to stop.

Parity with the in-process engine comes from the servers' ``logprobs``: the probabilities of the
tokens sampled give the same confidence figures (``first_prob``, ``line_prob``, ``min_prob``), the
top log-probabilities of the first step that writes more than whitespace give ``alternatives``,
and ``echo`` with log-probabilities scores a prompt's tail (``score_from``, for reranking). What an
endpoint offers is probed once (``Capabilities``); scoring only when first needed (it costs the
server a prompt evaluation with every position's logits).

A failed probe or a dropped connection is retried with exponential backoff; meanwhile the backend
is ``down`` (jobs are answered at once with the reason) and the ``on_health`` hook is told, so the
server shows ``degraded`` until the endpoint answers again. Nothing is sent anywhere unless this
backend is configured.
"""

from __future__ import annotations

import codecs
import http.client
import json
import logging
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from suggest_ls.backends.contract import GenRequest, GenResult, LoadInfo, ModelInfo, should_stop
from suggest_ls.backends.models import ModelError

log = logging.getLogger(__name__)
MAX_STOP = 4  # the OpenAI API takes at most four stop strings
MAX_TOP_LOGPROBS = 5  # the OpenAI API's limit for ``logprobs`` in /v1/completions
PROBE_PROMPT = "def add(a, b):\n    return "
SCORE_PROBE_PROMPT = "x = 1\ny = x + 1\nprint(x, y)\n"
# A score probe slower than this (plus a few completion probes' time) makes reranking cost more
# than it can gain: llama-cpp-python's server, e.g., sorts the whole vocabulary for every echoed token.
SCORE_PROBE_MAX_MS = 1000.0
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 15.0
CONNECT_TIMEOUT_S = 5.0


class RemoteError(ModelError):
    """The remote server could not be reached or refused."""


class RemoteUnavailable(RemoteError):
    """A failure worth retrying: the server is unreachable, overloaded or dropped the connection."""


@dataclass(frozen=True)
class RemoteConfig:
    """Where the server is and how to talk to it."""

    endpoint: str
    api_key: str = field(default="", repr=False)  # never in logs or reprs
    model: str = ""
    parallel: int = 4
    timeout_s: float = 30.0  # the longest a read may wait; also a whole job's limit
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    backoff_start_s: float = BACKOFF_START_S
    backoff_max_s: float = BACKOFF_MAX_S


@dataclass(frozen=True)
class Capabilities:
    """What an endpoint was seen to offer (``score`` is None until scoring was first needed and probed)."""

    streaming: bool = False
    logprobs: bool = False
    top_logprobs: int = 0  # log-probabilities of other tokens a step returns besides the one sampled
    score: bool | None = None
    score_reason: str = ""
    probe_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """camelCase for ``suggest/status``."""
        d = asdict(self)
        return {
            "streaming": d["streaming"],
            "logprobs": d["logprobs"],
            "topLogprobs": d["top_logprobs"],
            "score": d["score"],
            "scoreReason": d["score_reason"],
            "probeMs": round(d["probe_ms"], 1),
        }


# ----- server-sent events -----
@dataclass(frozen=True)
class SSEEvent:
    """One dispatched server-sent event."""

    data: str
    event: str = "message"
    id: str = ""
    retry_ms: int | None = None


_EOL = re.compile(r"\r\n|\r|\n")


class SSEParser:
    """An incremental ``text/event-stream`` parser (the WHATWG HTML "server-sent events" rules).

    ``feed`` takes text in any pieces and returns the events completed by it: lines end with CRLF,
    LF or CR; ``data:`` lines accumulate (joined with newlines), ``event:``, ``id:`` and ``retry:``
    (digits only) set fields, a line starting with ``:`` is a comment, a field without a colon has
    an empty value, one space after the colon is dropped, unknown fields are ignored; an empty line
    dispatches the event (none when no data was given). ``close`` returns an event left without
    its final empty line when the stream ended (the standard drops it; servers that close right
    after their last ``data:`` line are common enough to keep it).
    """

    def __init__(self) -> None:
        self._buf = ""
        self._after_cr = False
        self._data: list[str] = []
        self._event = ""
        self.last_id = ""
        self.retry_ms: int | None = None

    def feed(self, text: str) -> list[SSEEvent]:
        """Events completed by ``text``."""
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split between two pieces
        self._after_cr = False
        buf = self._buf + text
        out: list[SSEEvent] = []
        start = 0
        for m in _EOL.finditer(buf):
            event = self._line(buf[start : m.start()])
            if event is not None:
                out.append(event)
            start = m.end()
            if m.group() == "\r" and start == len(buf):
                self._after_cr = True
        self._buf = buf[start:]
        return out

    def close(self) -> SSEEvent | None:
        """The stream ended: the event still pending, if any."""
        if self._buf:
            self._line(self._buf)
            self._buf = ""
        return self._dispatch()

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry":
            if value and all("0" <= c <= "9" for c in value):
                self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEEvent("\n".join(data), event or "message", self.last_id, self.retry_ms)


def read_events(resp: http.client.HTTPResponse) -> Iterator[SSEEvent]:
    """The events of a streamed response, as they arrive (UTF-8 split anywhere)."""
    parser = SSEParser()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        line = resp.readline(1 << 16)
        if not line:
            break
        yield from parser.feed(decoder.decode(line))
    yield from parser.feed(decoder.decode(b"", final=True))
    last = parser.close()
    if last is not None:
        yield last


# ----- completion chunks -----
@dataclass(frozen=True)
class TokenLogprob:
    """One sampled token of a completion: its text, log-probability and the likeliest tokens at its step."""

    text: str
    logprob: float | None
    offset: int = -1  # character offset in prompt + completion (-1: not given)
    top: tuple[tuple[str, float], ...] = ()


def token_logprobs(choice: dict[str, Any]) -> list[TokenLogprob]:
    """The tokens of one choice with their log-probabilities, in either format servers use.

    The completions format (``tokens``, ``token_logprobs``, ``top_logprobs`` as dicts,
    ``text_offset``: vLLM, llama-cpp-python, OpenAI) or the chat format (``content``: a list of
    ``{token, logprob, top_logprobs: [{token, logprob}]}``: llama.cpp's server).
    """
    lp = choice.get("logprobs")
    if not isinstance(lp, dict):
        return []
    out: list[TokenLogprob] = []
    content = lp.get("content")
    if isinstance(content, list):
        for item in content:
            if not isinstance(item, dict):
                continue
            tops = item.get("top_logprobs") or []
            top = tuple(
                (str(t.get("token", "")), float(t["logprob"]))
                for t in tops
                if isinstance(t, dict) and isinstance(t.get("logprob"), (int, float))
            )
            value = item.get("logprob")
            out.append(
                TokenLogprob(
                    str(item.get("token", "")), float(value) if isinstance(value, (int, float)) else None, -1, top
                )
            )
        return out
    tokens = lp.get("tokens") or []
    values = lp.get("token_logprobs") or []
    tops = lp.get("top_logprobs") or []
    offsets = lp.get("text_offset") or []
    for i, tok in enumerate(tokens):
        value = values[i] if i < len(values) else None
        top_dict = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        top = tuple(
            sorted(
                ((str(k), float(v)) for k, v in top_dict.items() if isinstance(v, (int, float))), key=lambda kv: -kv[1]
            )
        )
        offset = offsets[i] if i < len(offsets) and isinstance(offsets[i], int) else -1
        out.append(TokenLogprob(str(tok), float(value) if isinstance(value, (int, float)) else None, offset, top))
    return out


def alternatives_at(lead: str, taken: str, top: tuple[tuple[str, float], ...], n: int) -> tuple[tuple[str, float], ...]:
    """Up to ``n`` other first tokens from one step's top log-probabilities, as the in-process engine
    returns them: (text so far + the token, its probability), likeliest first; the token sampled,
    empty tokens and tokens with a newline are left out."""
    out: list[tuple[str, float]] = []
    for piece, logprob in sorted(top, key=lambda kv: -kv[1]):
        if piece == taken or not piece or "\n" in piece:
            continue
        out.append((lead + piece, math.exp(logprob)))
        if len(out) >= n:
            break
    return tuple(out)


# ----- jobs -----
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


def base_url(endpoint: str) -> tuple[str, str, int, str]:
    """Split an endpoint into scheme, host, port and the path prefix ending in ``/v1``."""
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(f"endpoint must be an http(s) URL, got {endpoint!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port, path


def _transient_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


class RemoteBackend:
    """Sends completions to an OpenAI-compatible server from a pool of ``parallel`` worker threads.

    ``ready`` resolves with the first successful probe, or fails on an answer no retry can change
    (a 4xx such as a wrong API key); transient failures are retried with backoff meanwhile.
    ``first_probe`` resolves after the first attempt with "" or the reason it failed, so a caller
    need not wait for a server that is down. ``on_health(state, reason)`` is called from the probe
    or a worker thread when ``up``/``down``/``error`` changes.
    """

    def __init__(self, config: RemoteConfig, on_health: Callable[[str, str], None] | None = None) -> None:
        self.config = config
        self.scheme, self.host, self.port, self.prefix = base_url(config.endpoint)
        self.ready: Future[LoadInfo] = Future()
        self.first_probe: Future[str] = Future()
        self.model_id = config.model
        self.on_health = on_health
        self.health, self.health_reason = "probing", ""
        self.capabilities = Capabilities()
        self.retry_in_s = 0.0
        self.probes = 0
        self._pool = ThreadPoolExecutor(max_workers=max(1, config.parallel), thread_name_prefix="suggest-ls-remote")
        self._prober = threading.Thread(target=self._probe_loop, name="suggest-ls-remote-probe", daemon=True)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._jobs: set[RemoteJob] = set()
        self._closed = False
        self._score_probe: threading.Thread | None = None
        self._warned: set[str] = set()
        self._recent: deque[tuple[float, int, float]] = deque(maxlen=512)
        self.stats = {"requests": 0, "errors": 0, "generated": 0, "reconnects": 0}

    # ----- the Backend interface, any thread -----
    def start(self) -> RemoteBackend:
        """Probe the server (``GET /v1/models``, then one short streamed completion) in the background."""
        self._prober.start()
        return self

    def submit(self, req: GenRequest, done: Callable[[GenResult], None]) -> RemoteJob:
        """Queue a request; ``done`` is called exactly once from a worker thread (or at once)."""
        job = RemoteJob(req, done)
        with self._lock:
            if self._closed:
                job.finished = True
                done(GenResult("", "error", "remote backend closed"))
                return job
            if self.health in ("down", "error"):
                job.finished = True
                done(GenResult("", "error", f"remote unreachable: {self.health_reason}"))
                return job
            self._jobs.add(job)
        try:
            self._pool.submit(self._run, job)
        except RuntimeError:  # closed meanwhile
            self._finish(job, GenResult("", "error", "remote backend closed"))
        return job

    def expect(self, delta: int) -> None:
        """Nothing to prepare: the remote server batches on its own."""

    def scores(self) -> bool:
        """Whether prompts can be scored (for reranking); the first call probes in the background (False meanwhile)."""
        caps = self.capabilities
        if caps.score is not None:
            return caps.score
        with self._lock:
            if self._score_probe is None and not self._closed and self.ready.done() and not self.ready.exception():
                self._score_probe = threading.Thread(
                    target=self._probe_score, name="suggest-ls-remote-score", daemon=True
                )
                self._score_probe.start()
        return False

    def tokens_per_second(self, window_s: float = 10.0) -> float:
        """Streamed tokens per second of streaming time over the last ``window_s`` seconds."""
        now = time.perf_counter()
        recent = [(n, dt) for t, n, dt in list(self._recent) if now - t <= window_s]
        busy = sum(dt for _, dt in recent)
        return sum(n for n, _ in recent) / busy if busy > 0 else 0.0

    def view(self) -> dict[str, Any]:
        """What ``suggest/status`` shows of this endpoint (no secrets)."""
        return {
            "endpoint": f"{self.scheme}://{self.host}:{self.port}{self.prefix}",
            "model": self.model_id,
            "health": self.health,
            "reason": self.health_reason,
            "retryInSeconds": round(self.retry_in_s, 1) if self.health == "down" else 0.0,
            "probes": self.probes,
            "reconnects": self.stats["reconnects"],
            "capabilities": self.capabilities.as_dict(),
        }

    def close(self, timeout: float = 2.0) -> None:
        """Cancel every job, answer those not started, and stop the pool and the prober."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs)
        self._wake.set()
        for job in jobs:
            job.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for job in jobs:
            self._finish(job, GenResult("", "cancelled"))
        if not self.first_probe.done():
            self.first_probe.set_result("remote backend closed")
        if not self.ready.done():
            self.ready.set_exception(RemoteError("remote backend closed"))

    # ----- health -----
    def _set_health(self, state: str, reason: str) -> None:
        with self._lock:
            changed = (state, reason) != (self.health, self.health_reason)
            self.health, self.health_reason = state, reason
            hook = self.on_health if not self._closed else None
        if changed:
            (log.info if state == "up" else log.warning)(
                "remote %s:%d %s%s", self.host, self.port, state, f" ({reason})" if reason else ""
            )
        if changed and hook is not None:
            try:
                hook(state, reason)
            except Exception:
                log.exception("remote health hook failed")

    def _lost(self, reason: str) -> None:
        """A job saw the connection fail: probe again (with backoff) until the server answers."""
        with self._lock:
            if self.health != "up" or self._closed:
                return
        self.stats["reconnects"] += 1
        self._set_health("down", f"{reason}; retrying")
        self._wake.set()

    def _probe_loop(self) -> None:
        delay = self.config.backoff_start_s
        while True:
            with self._lock:
                if self._closed:
                    return
            try:
                info = self._probe()
            except RemoteUnavailable as exc:
                self.retry_in_s = delay
                self._set_health("down", f"{exc}; retrying in {delay:.1f} s")
                if not self.first_probe.done():
                    self.first_probe.set_result(str(exc))
                if self._wake.wait(delay):
                    self._wake.clear()
                delay = min(self.config.backoff_max_s, delay * 2)
                continue
            except RemoteError as exc:
                if self.ready.done():  # it served before: the server may come back as it was
                    self.retry_in_s = delay
                    self._set_health("down", f"{exc}; retrying in {delay:.1f} s")
                    if self._wake.wait(delay):
                        self._wake.clear()
                    delay = min(self.config.backoff_max_s, delay * 2)
                    continue
                self._set_health("error", str(exc))
                if not self.first_probe.done():
                    self.first_probe.set_result(str(exc))
                if not self.ready.done():
                    self.ready.set_exception(exc)
                return
            delay = self.config.backoff_start_s
            self.retry_in_s = 0.0
            if not self.ready.done():
                self.ready.set_result(info)
            self._set_health("up", "")
            if not self.first_probe.done():
                self.first_probe.set_result("")
            self._wake.wait()  # until a job loses the connection, or close
            self._wake.clear()
            if self._wake.wait(self.config.backoff_start_s):  # a short pause before the first retry
                self._wake.clear()

    # ----- HTTP -----
    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        timeout = min(self.config.connect_timeout_s, self.config.timeout_s)
        return cls(self.host, self.port, timeout=timeout)

    def _open(self, conn: http.client.HTTPConnection) -> None:
        """Connect within the connect timeout, then allow reads the longer one."""
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(self.config.timeout_s)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[Any, http.client.HTTPResponse]:
        """One request on a new connection (connect failures and 5xx raise RemoteUnavailable)."""
        conn = self._connection()
        try:
            self._open(conn)
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, f"{self.prefix}{path}", body=data, headers=self._headers())
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise RemoteUnavailable(f"{self.config.endpoint}: {_describe(exc)}") from exc
        if resp.status != 200:
            text = _snippet(resp.read(4096))
            conn.close()
            cls = RemoteUnavailable if _transient_status(resp.status) else RemoteError
            raise cls(f"{self.config.endpoint}: HTTP {resp.status} {text}")
        return conn, resp

    def _probe(self) -> LoadInfo:
        t0 = time.perf_counter()
        self.probes += 1
        conn, resp = self._request("GET", "/models", None)
        try:
            data = json.loads(resp.read(1 << 20) or b"{}").get("data") or []
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise RemoteUnavailable(f"{self.config.endpoint}: {_describe(exc)}") from exc
        finally:
            conn.close()
        ids = [str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id")]
        if not self.model_id:
            if not ids:
                raise RemoteError(f"{self.config.endpoint} lists no models; set `model`")
            self.model_id = ids[0]
        elif ids and self.model_id not in ids:
            log.warning("remote model %r not in the server's list %s", self.model_id, ids[:5])
        if self.capabilities.probe_ms == 0.0:  # what the endpoint offers is probed once
            self.capabilities = self._probe_capabilities()
        name = self.model_id.rsplit("/", 1)[-1]
        return LoadInfo(
            model=ModelInfo(name=name),
            path=self.model_id,
            size_bytes=0,
            n_layers=0,
            gpu_layers=0,
            device=f"remote ({self.host}:{self.port})",
            offload_reason=f"remote backend {self.scheme}://{self.host}:{self.port}{self.prefix}",
            load_ms=(time.perf_counter() - t0) * 1000,
            n_ctx=0,
            parallel=self.config.parallel,
            threads=0,
            quantization="remote",
        )

    def _probe_capabilities(self) -> Capabilities:
        """One short streamed completion asking for log-probabilities; without them if refused."""
        t0 = time.perf_counter()
        body: dict[str, Any] = {
            "model": self.model_id,
            "prompt": PROBE_PROMPT,
            "max_tokens": 2,
            "temperature": 0.0,
            "stream": True,
            "logprobs": MAX_TOP_LOGPROBS,
        }
        try:
            conn, resp = self._request("POST", "/completions", body)
        except RemoteUnavailable:
            raise
        except RemoteError as exc:  # e.g. HTTP 400: logprobs not offered
            log.info("remote endpoint refused logprobs (%s); asking without them", exc)
            body.pop("logprobs")
            conn, resp = self._request("POST", "/completions", body)
        streaming = "text/event-stream" in (resp.getheader("Content-Type") or "")
        entries: list[TokenLogprob] = []
        try:
            if streaming:
                for event in read_events(resp):
                    if event.data.strip() == "[DONE]":
                        break
                    choice = _first_choice(json.loads(event.data))
                    entries += token_logprobs(choice)
            else:
                entries = token_logprobs(_first_choice(json.loads(resp.read() or b"{}")))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise RemoteUnavailable(f"{self.config.endpoint}: {_describe(exc)}") from exc
        finally:
            conn.close()
        logprobs = any(e.logprob is not None for e in entries)
        top = max((len([t for t in e.top if t[0] != e.text]) for e in entries), default=0)
        caps = Capabilities(
            streaming=streaming,
            logprobs=logprobs,
            top_logprobs=top,
            probe_ms=(time.perf_counter() - t0) * 1000,
        )
        log.info("remote capabilities: %s", caps.as_dict())
        if not logprobs:
            log.warning("the remote server returns no token probabilities: minConfidence has no effect on it")
        if not streaming:
            log.warning("the remote server does not stream: no first words before a line is complete")
        return caps

    def _probe_score(self) -> None:
        """Whether ``echo`` with log-probabilities scores a prompt's tokens, and fast enough to rerank with."""
        t0 = time.perf_counter()
        ok, reason = False, ""
        try:
            body = self._score_body(SCORE_PROBE_PROMPT)
            conn, resp = self._request("POST", "/completions", body)
            try:
                choice = _first_choice(json.loads(resp.read() or b"{}"))
            finally:
                conn.close()
            scored = [
                e for e in token_logprobs(choice) if e.logprob is not None and 0 <= e.offset < len(SCORE_PROBE_PROMPT)
            ]
            ms = (time.perf_counter() - t0) * 1000
            limit = SCORE_PROBE_MAX_MS + 3 * self.capabilities.probe_ms
            if len(scored) < 2:
                reason = "the server does not return the prompt's log-probabilities (echo)"
            elif ms > limit:
                reason = f"the server scores prompts too slowly ({ms:.0f} ms for {len(scored) + 1} tokens)"
            else:
                ok, reason = True, f"echo with logprobs ({ms:.0f} ms for {len(scored) + 1} tokens)"
        except (RemoteError, OSError, http.client.HTTPException, ValueError) as exc:
            reason = f"scoring refused: {_describe(exc)}"
        self.capabilities = Capabilities(**{**asdict(self.capabilities), "score": ok, "score_reason": reason})
        (log.info if ok else log.warning)("remote scoring %s: %s", "on" if ok else "off (no reranking)", reason)

    def _score_body(self, prompt: str) -> dict[str, Any]:
        # max_tokens 1, not 0: llama-cpp-python's server reads 0 as "up to the context's end"
        return {
            "model": self.model_id,
            "prompt": prompt,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
        }

    def _body(self, req: GenRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_id,
            "prompt": req.prompt,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "stream": True,
        }
        if req.seed:
            body["seed"] = req.seed
        caps = self.capabilities
        if caps.logprobs:
            body["logprobs"] = (
                min(MAX_TOP_LOGPROBS, req.alternatives + 2) if req.alternatives and caps.top_logprobs else 1
            )
        stops = [s for s in req.rule.stop if s][:MAX_STOP]
        if stops:
            body["stop"] = stops
        return body

    # ----- workers -----
    def _run(self, job: RemoteJob) -> None:
        started = time.perf_counter()
        if job.cancel.is_set():
            self._finish(job, GenResult("", "cancelled", queue_ms=(started - job.submitted) * 1000))
            return
        if job.req.max_tokens <= 0 and job.req.score_from >= 0:
            self._run_score(job, started)
            return
        conn: http.client.HTTPConnection | None = None
        usage: dict[str, Any] = {}
        outcome, error = "done", ""
        capped = False  # stopped by max_tokens (finish_reason "length"), not a stop rule or the end of text
        deadline = started + self.config.timeout_s
        try:
            conn = self._connection()
            job.cancel.on_set = lambda: _abort(conn)
            if job.cancel.is_set():
                raise _Cancelled
            self._open(conn)
            if job.cancel.is_set():
                raise _Cancelled
            body = json.dumps(self._body(job.req)).encode()
            conn.request("POST", f"{self.prefix}/completions", body=body, headers=self._headers())
            resp = conn.getresponse()
            if resp.status != 200:
                text = _snippet(resp.read(4096))
                cls = RemoteUnavailable if _transient_status(resp.status) else RemoteError
                raise cls(f"HTTP {resp.status} {text}")
            if "text/event-stream" not in (resp.getheader("Content-Type") or ""):
                data = json.loads(resp.read() or b"{}")
                choice = _first_choice(data)
                job.add(str(choice.get("text") or ""), token_logprobs(choice), time.perf_counter())
                usage = data.get("usage") or {}
                job.tokens = int(usage.get("completion_tokens") or job.tokens)
                capped = choice.get("finish_reason") == "length" and not should_stop(job.pieces, job.req.rule)
            else:
                complete = False
                for event in read_events(resp):
                    if job.cancel.is_set():
                        raise _Cancelled
                    if event.data.strip() == "[DONE]":
                        complete = True
                        break
                    data = json.loads(event.data)
                    if isinstance(data, dict) and data.get("error"):
                        raise RemoteError(str(data["error"])[:200])
                    choice = _first_choice(data)
                    usage = data.get("usage") or usage
                    text = str(choice.get("text") or "")
                    entries = token_logprobs(choice)
                    if text or entries:
                        job.add(text, entries, time.perf_counter())
                    if choice.get("finish_reason"):
                        complete = True
                        capped = choice.get("finish_reason") == "length" and not should_stop(job.pieces, job.req.rule)
                    if should_stop(job.pieces, job.req.rule):
                        complete = True
                        break
                    if job.tokens >= job.req.max_tokens:
                        complete = capped = True
                        break
                    if time.perf_counter() > deadline:
                        raise RemoteError(f"no end of the stream after {self.config.timeout_s:.0f} s")
                if job.cancel.is_set():  # the aborted connection ended the stream early
                    raise _Cancelled
                if not complete:
                    raise RemoteUnavailable("the stream ended early (connection dropped)")
        except _Cancelled:
            outcome = "cancelled"
        except (OSError, http.client.HTTPException, ValueError, RemoteError) as exc:
            if job.cancel.is_set():
                outcome = "cancelled"
            else:
                outcome, error = "error", f"remote: {_describe(exc)}"
                self.stats["errors"] += 1
                if isinstance(
                    exc,
                    (RemoteUnavailable, ConnectionError, http.client.RemoteDisconnected, http.client.IncompleteRead),
                ):
                    self._lost(_describe(exc))
        finally:
            job.cancel.on_set = None
            if conn is not None:
                conn.close()
        end = time.perf_counter()
        if outcome == "done" and job.tokens:
            self._recent.append((end, max(0, job.tokens - 1), max(1e-6, end - (job.first_token or end))))
        self.stats["requests"] += 1
        self.stats["generated"] += job.tokens
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        self._finish(
            job,
            GenResult(
                text=job.pieces if outcome == "done" else "",
                outcome=outcome,
                error=error,
                prompt_tokens=prompt_tokens,
                evaluated_tokens=prompt_tokens,
                generated_tokens=job.tokens,
                queue_ms=(started - job.submitted) * 1000,
                ttft_ms=((job.first_token or end) - job.submitted) * 1000,
                total_ms=(end - job.submitted) * 1000,
                first_prob=job.first_prob,
                line_prob=math.exp(job.logprob / job.sampled) if job.sampled else 1.0,
                min_prob=job.min_prob,
                capped=capped,
                alternatives=job.alternatives,
            ),
        )

    def _run_score(self, job: RemoteJob, started: float) -> None:
        """A scoring job: the summed log-probability of the prompt's tokens from ``score_from`` on."""
        req = job.req
        if not self.capabilities.score:
            self._finish(job, GenResult("", "error", "remote: the server cannot score prompts"))
            return
        outcome, error, score, scored = "done", "", 0.0, 0
        conn: http.client.HTTPConnection | None = None
        try:
            conn, resp = self._request("POST", "/completions", self._score_body(req.prompt))
            job.cancel.on_set = lambda: _abort(conn) if conn is not None else None
            choice = _first_choice(json.loads(resp.read() or b"{}"))
            entries = token_logprobs(choice)
            for i, e in enumerate(entries):
                end = entries[i + 1].offset if i + 1 < len(entries) else e.offset + len(e.text)
                if e.logprob is not None and 0 <= e.offset < len(req.prompt) and end > req.score_from:
                    score += e.logprob
                    scored += 1
        except (OSError, http.client.HTTPException, ValueError, RemoteError) as exc:
            outcome, error = ("cancelled", "") if job.cancel.is_set() else ("error", f"remote: {_describe(exc)}")
        finally:
            job.cancel.on_set = None
            if conn is not None:
                conn.close()
        end_t = time.perf_counter()
        self._finish(
            job,
            GenResult(
                "",
                outcome,
                error,
                queue_ms=(started - job.submitted) * 1000,
                total_ms=(end_t - job.submitted) * 1000,
                score=score,
                scored_tokens=scored,
            ),
        )

    def _finish(self, job: RemoteJob, result: GenResult) -> None:
        with self._lock:
            if job.finished:
                return
            job.finished = True
            self._jobs.discard(job)
        if result.outcome == "done" and self.health == "down":
            self._set_health("up", "")  # a job got through before the next probe
        try:
            job.done(result)
        except Exception:
            log.exception("job callback failed")


class _Cancelled(Exception):
    """The job was cancelled while streaming."""


def _abort(conn: http.client.HTTPConnection) -> None:
    """Close a connection from another thread so a blocked read returns at once."""
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _first_choice(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    choices = data.get("choices") or [{}]
    choice = choices[0] if isinstance(choices, list) and choices else {}
    return choice if isinstance(choice, dict) else {}


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return (
        f"{type(exc).__name__}: {text}" if text and not isinstance(exc, RemoteError) else (text or type(exc).__name__)
    )


def _snippet(body: bytes) -> str:
    return body[:200].decode("utf-8", errors="replace").strip()
