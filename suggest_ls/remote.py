"""A remote backend: any OpenAI-compatible ``/v1/completions`` server, behind the engine's interface.

Standard library only (``http.client``) in a small worker pool: the same ``submit(GenRequest,
done)`` / ``expect`` contract as the in-process engine, so prompts, post-processing, the
typing-through cache and cancellation are shared. Generation is streamed (server-sent events):
stop rules end a stream early, and cancelling a job closes its connection at once, which tells
llama.cpp's and vLLM's servers to stop. Nothing is sent anywhere unless this backend is configured.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from suggest_ls.clean import should_stop
from suggest_ls.engine import GenRequest, GenResult, LoadInfo
from suggest_ls.models import ModelError
from suggest_ls.prompt import ModelInfo

log = logging.getLogger(__name__)
MAX_STOP = 4  # the OpenAI API takes at most four stop strings


class RemoteError(ModelError):
    """The remote server could not be reached or refused."""


@dataclass(frozen=True)
class RemoteConfig:
    """Where the server is and how to talk to it."""

    endpoint: str
    api_key: str = field(default="", repr=False)  # never in logs or reprs
    model: str = ""
    parallel: int = 4
    timeout_s: float = 30.0


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
    """A submitted request; ``cancel`` may be set from any thread."""

    req: GenRequest
    done: Callable[[GenResult], None]
    cancel: _CancelEvent = field(default_factory=_CancelEvent)
    submitted: float = field(default_factory=time.perf_counter)
    finished: bool = False


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


class RemoteBackend:
    """Sends completions to an OpenAI-compatible server from a pool of ``parallel`` worker threads."""

    def __init__(self, config: RemoteConfig) -> None:
        self.config = config
        self.scheme, self.host, self.port, self.prefix = base_url(config.endpoint)
        self.ready: Future[LoadInfo] = Future()
        self.model_id = config.model
        self._pool = ThreadPoolExecutor(max_workers=max(1, config.parallel), thread_name_prefix="suggest-ls-remote")
        self._lock = threading.Lock()
        self._jobs: set[RemoteJob] = set()
        self._closed = False
        self._recent: deque[tuple[float, int, float]] = deque(maxlen=512)
        self.stats = {"requests": 0, "errors": 0, "generated": 0}

    # ----- the Backend interface, any thread -----
    def start(self) -> RemoteBackend:
        """Probe the server (``GET /v1/models``) in the pool; ``ready`` resolves with what it serves."""
        self._pool.submit(self._probe)
        return self

    def submit(self, req: GenRequest, done: Callable[[GenResult], None]) -> RemoteJob:
        """Queue a request; ``done`` is called exactly once from a worker thread."""
        job = RemoteJob(req, done)
        with self._lock:
            if self._closed:
                job.finished = True
                done(GenResult("", "error", "remote backend closed"))
                return job
            self._jobs.add(job)
        try:
            self._pool.submit(self._run, job)
        except RuntimeError:  # closed meanwhile
            self._finish(job, GenResult("", "error", "remote backend closed"))
        return job

    def expect(self, delta: int) -> None:
        """Nothing to prepare: the remote server batches on its own."""

    def tokens_per_second(self, window_s: float = 10.0) -> float:
        """Streamed tokens per second of streaming time over the last ``window_s`` seconds."""
        now = time.perf_counter()
        recent = [(n, dt) for t, n, dt in list(self._recent) if now - t <= window_s]
        busy = sum(dt for _, dt in recent)
        return sum(n for n, _ in recent) / busy if busy > 0 else 0.0

    def close(self, timeout: float = 2.0) -> None:
        """Cancel every job, answer those not started, and stop the pool."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for job in jobs:
            self._finish(job, GenResult("", "cancelled"))

    # ----- workers -----
    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.config.timeout_s)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def _probe(self) -> None:
        t0 = time.perf_counter()
        conn = self._connection()
        try:
            conn.request("GET", f"{self.prefix}/models", headers=self._headers())
            resp = conn.getresponse()
            body = resp.read(1 << 20)
            if resp.status != 200:
                raise RemoteError(f"{self.config.endpoint}: HTTP {resp.status} {_snippet(body)}")
            data = json.loads(body or b"{}").get("data") or []
            ids = [str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id")]
            if not self.model_id:
                if not ids:
                    raise RemoteError(f"{self.config.endpoint} lists no models; set `model`")
                self.model_id = ids[0]
            elif ids and self.model_id not in ids:
                log.warning("remote model %r not in the server's list %s", self.model_id, ids[:5])
        except (OSError, http.client.HTTPException, ValueError, RemoteError) as exc:
            err = exc if isinstance(exc, RemoteError) else RemoteError(f"{self.config.endpoint}: {exc}")
            self.ready.set_exception(err)
            return
        finally:
            conn.close()
        name = self.model_id.rsplit("/", 1)[-1]
        self.ready.set_result(
            LoadInfo(
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
        )

    def _body(self, req: GenRequest) -> bytes:
        body: dict[str, Any] = {
            "model": self.model_id,
            "prompt": req.prompt,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "stream": True,
        }
        stops = [s for s in req.rule.stop if s][:MAX_STOP]
        if stops:
            body["stop"] = stops
        return json.dumps(body).encode()

    def _run(self, job: RemoteJob) -> None:
        started = time.perf_counter()
        if job.cancel.is_set():
            self._finish(job, GenResult("", "cancelled", queue_ms=(started - job.submitted) * 1000))
            return
        conn = self._connection()
        job.cancel.on_set = lambda: _abort(conn)
        text = ""
        chunks = 0
        first = 0.0
        usage: dict[str, Any] = {}
        outcome, error = "done", ""
        try:
            if job.cancel.is_set():
                raise _Cancelled
            conn.request("POST", f"{self.prefix}/completions", body=self._body(job.req), headers=self._headers())
            resp = conn.getresponse()
            if resp.status != 200:
                raise RemoteError(f"HTTP {resp.status} {_snippet(resp.read(4096))}")
            if "text/event-stream" not in (resp.getheader("Content-Type") or ""):
                data = json.loads(resp.read() or b"{}")
                text = str((data.get("choices") or [{}])[0].get("text") or "")
                usage = data.get("usage") or {}
                chunks = int(usage.get("completion_tokens") or 0)
                first = time.perf_counter()
            else:
                for piece, got_usage in _events(resp):
                    if job.cancel.is_set():
                        raise _Cancelled
                    usage = got_usage or usage
                    if piece:
                        chunks += 1
                        first = first or time.perf_counter()
                        text += piece
                        if should_stop(text, job.req.rule) or chunks >= job.req.max_tokens:
                            break
                if job.cancel.is_set():  # the aborted connection ended the stream early
                    raise _Cancelled
        except _Cancelled:
            outcome = "cancelled"
        except (OSError, http.client.HTTPException, ValueError, RemoteError) as exc:
            if job.cancel.is_set():
                outcome = "cancelled"
            else:
                outcome, error = "error", f"remote: {exc}"
                self.stats["errors"] += 1
        finally:
            job.cancel.on_set = None
            conn.close()
        end = time.perf_counter()
        if outcome == "done" and chunks:
            self._recent.append((end, max(0, chunks - 1), max(1e-6, end - first)))
        self.stats["requests"] += 1
        self.stats["generated"] += chunks
        self._finish(
            job,
            GenResult(
                text=text if outcome == "done" else "",
                outcome=outcome,
                error=error,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                evaluated_tokens=int(usage.get("prompt_tokens") or 0),
                generated_tokens=chunks,
                queue_ms=(started - job.submitted) * 1000,
                ttft_ms=((first or end) - job.submitted) * 1000,
                total_ms=(end - job.submitted) * 1000,
            ),
        )

    def _finish(self, job: RemoteJob, result: GenResult) -> None:
        with self._lock:
            if job.finished:
                return
            job.finished = True
            self._jobs.discard(job)
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


def _events(resp: http.client.HTTPResponse) -> Any:
    """Yield (text, usage) from a server-sent-event completion stream until ``[DONE]``."""
    while True:
        line = resp.readline()
        if not line:
            return
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return
        data = json.loads(payload)
        if isinstance(data, dict) and data.get("error"):
            raise RemoteError(str(data["error"])[:200])
        choices = data.get("choices") or [{}]
        yield str(choices[0].get("text") or ""), data.get("usage") or {}


def _snippet(body: bytes) -> str:
    return body[:200].decode("utf-8", errors="replace").strip()
