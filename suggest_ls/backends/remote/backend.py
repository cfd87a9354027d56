"""The remote backend: an OpenAI-compatible server behind the same contract as the in-process engine.

A small worker pool runs the jobs (``jobs``), so prompts, post-processing, the typing-through
cache and cancellation are shared with the engine. A prober thread checks the endpoint (``probe``)
before it serves and again after a connection was lost, with exponential backoff; meanwhile the
backend is ``down`` (jobs are answered at once with the reason) and the ``on_health`` hook is told,
so the server shows ``degraded`` until the endpoint answers again. Nothing is sent anywhere unless
this backend is configured.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from suggest_ls.backends.contract import BackendDefaults, GenRequest, GenResult, LoadInfo, ModelInfo
from suggest_ls.backends.remote.client import Client, RemoteConfig, RemoteError, RemoteUnavailable, describe
from suggest_ls.backends.remote.jobs import Cancelled, RemoteJob, completion_body, score_prompt, stream_completion
from suggest_ls.backends.remote.probe import Capabilities, list_models, probe_capabilities, probe_score, score_body

log = logging.getLogger(__name__)


class RemoteBackend(BackendDefaults):
    """Sends completions to an OpenAI-compatible server from a pool of ``parallel`` worker threads.

    ``ready`` resolves with the first successful probe, or fails on an answer no retry can change
    (a 4xx such as a wrong API key); transient failures are retried with backoff meanwhile.
    ``first_probe`` resolves after the first attempt with "" or the reason it failed, so a caller
    need not wait for a server that is down. ``on_health(state, reason)`` is called from the probe
    or a worker thread when ``up``/``down``/``error`` changes.
    """

    def __init__(self, config: RemoteConfig, on_health: Callable[[str, str], None] | None = None) -> None:
        self.config = config
        self._client = Client(config)
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
        self._recent: deque[tuple[float, int, float]] = deque(maxlen=512)
        self.stats: dict[str, int] = {"requests": 0, "errors": 0, "generated": 0, "reconnects": 0}

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
            "endpoint": self._client.url,
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
                "remote %s:%d %s%s", self._client.host, self._client.port, state, f" ({reason})" if reason else ""
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

    def _probe(self) -> LoadInfo:
        t0 = time.perf_counter()
        self.probes += 1
        ids = list_models(self._client)
        if not self.model_id:
            if not ids:
                raise RemoteError(f"{self.config.endpoint} lists no models; set `model`")
            self.model_id = ids[0]
        elif ids and self.model_id not in ids:
            log.warning("remote model %r not in the server's list %s", self.model_id, ids[:5])
        if self.capabilities.probe_ms == 0.0:  # what the endpoint offers is probed once
            self.capabilities = probe_capabilities(self._client, self.model_id)
        name = self.model_id.rsplit("/", 1)[-1]
        client = self._client
        return LoadInfo(
            model=ModelInfo(name=name),
            path=self.model_id,
            size_bytes=0,
            n_layers=0,
            gpu_layers=0,
            device=f"remote ({client.host}:{client.port})",
            offload_reason=f"remote backend {client.url}",
            load_ms=(time.perf_counter() - t0) * 1000,
            n_ctx=0,
            parallel=self.config.parallel,
            threads=0,
            quantization="remote",
        )

    def _probe_score(self) -> None:
        ok, reason = probe_score(self._client, self.model_id, self.capabilities.probe_ms)
        self.capabilities = replace(self.capabilities, score=ok, score_reason=reason)

    # ----- workers -----
    def _run(self, job: RemoteJob) -> None:
        started = time.perf_counter()
        if job.cancel.is_set():
            self._finish(job, GenResult("", "cancelled", queue_ms=(started - job.submitted) * 1000))
            return
        if job.req.max_tokens <= 0 and job.req.score_from >= 0:
            self._run_score(job, started)
            return
        outcome, error = "done", ""
        body = completion_body(self.model_id, self.capabilities, job.req)
        try:
            stream_completion(self._client, job, body, started + self.config.timeout_s)
        except Cancelled:
            outcome = "cancelled"
        except (OSError, http.client.HTTPException, ValueError, RemoteError) as exc:
            if job.cancel.is_set():
                outcome = "cancelled"
            else:
                outcome, error = "error", f"remote: {describe(exc)}"
                self.stats["errors"] += 1
                if isinstance(
                    exc,
                    (RemoteUnavailable, ConnectionError, http.client.RemoteDisconnected, http.client.IncompleteRead),
                ):
                    self._lost(describe(exc))
        end = time.perf_counter()
        if outcome == "done" and job.tokens:
            self._recent.append((end, max(0, job.tokens - 1), max(1e-6, end - (job.first_token or end))))
        self.stats["requests"] += 1
        self.stats["generated"] += job.tokens
        self._finish(job, job.result(outcome, error, started))

    def _run_score(self, job: RemoteJob, started: float) -> None:
        """A scoring job: the summed log-probability of the prompt's tokens from ``score_from`` on."""
        if not self.capabilities.score:
            self._finish(job, GenResult("", "error", "remote: the server cannot score prompts"))
            return
        outcome, error, score, scored = "done", "", 0.0, 0
        try:
            score, scored = score_prompt(self._client, job, score_body(self.model_id, job.req.prompt))
        except (OSError, http.client.HTTPException, ValueError, RemoteError) as exc:
            outcome, error = ("cancelled", "") if job.cancel.is_set() else ("error", f"remote: {describe(exc)}")
        end = time.perf_counter()
        self._finish(
            job,
            GenResult(
                "",
                outcome,
                error,
                queue_ms=(started - job.submitted) * 1000,
                total_ms=(end - job.submitted) * 1000,
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
