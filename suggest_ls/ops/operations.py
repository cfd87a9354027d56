"""Operations: model lifecycle (load, blue-green swap, idle unload, disable), state, alerts and status.

No LSP types here: the server hands in a ``Host`` that sends the status notification, shows
messages and reports progress. Everything runs on the server's asyncio loop except
``snapshot_threadsafe``, which the health endpoint calls from its own thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Protocol

from suggest_ls import __version__
from suggest_ls.backends.contract import Backend, LoadInfo, ModelInfo
from suggest_ls.backends.device import GpuMemory, gpu_memory
from suggest_ls.backends.llama.engine import Engine
from suggest_ls.backends.llama.loading import EngineConfig
from suggest_ls.backends.models import ModelError, resolve_model
from suggest_ls.backends.remote.backend import RemoteBackend
from suggest_ls.backends.remote.client import RemoteConfig
from suggest_ls.backends.switchable import SMOKE_PROMPT, SwitchableBackend, smoke, warm_up
from suggest_ls.completion.completer import Completer
from suggest_ls.completion.prompt import detect_template
from suggest_ls.completion.stats import Acceptance, Recorder
from suggest_ls.ops.alerts import AlertState, Reading, Thresholds
from suggest_ls.ops.metrics import Metrics
from suggest_ls.settings import Settings

log = logging.getLogger(__name__)
RELOAD_KEYS = (
    "model",
    "backend",
    "endpoint",
    "api_key_env",
    "context_size",
    "parallel",
    "threads",
    "gpu_layers",
    "batch_window_ms",
    "draft_tokens",
)
# A remote backend is only a client: the in-process engine's sizing and scheduling do not touch it.
REMOTE_RELOAD_KEYS = ("model", "backend", "endpoint", "api_key_env", "parallel")
TICK_S = 1.0
GPU_EVERY_TICKS = 5


class Host(Protocol):
    """What operations need from the LSP side."""

    def publish_status(self, state: str, reason: str) -> None: ...

    def show(self, level: str, message: str) -> None: ...

    async def progress_begin(self, message: str) -> Any: ...

    def progress_end(self, token: Any, message: str) -> None: ...


def format_gb(n: int) -> str:
    """Bytes as ``18.2GB`` (decimal gigabytes, like the reference health endpoint)."""
    return f"{n / 1e9:.1f}GB"


def reload_keys(settings: Settings) -> tuple[str, ...]:
    """The settings whose change reloads the backend ``settings`` configure."""
    return REMOTE_RELOAD_KEYS if settings.backend == "openai" else RELOAD_KEYS


class RemoteDown(ModelError):
    """The remote server did not answer the first probe; its backend goes on probing with backoff."""

    def __init__(self, backend: RemoteBackend, why: str) -> None:
        super().__init__(why)
        self.backend = backend


def _cap_threads(backend: Backend | None, threads: int) -> None:
    """Cap an in-process engine's decode threads (0 lifts the cap); remote backends have none."""
    if backend is not None:
        backend.cap_threads(threads)


class Operations:
    """Owns the loaded backend(s), the completer, the server state and the figures behind ``suggest/status``."""

    def __init__(self, host: Host, recorder: Recorder, model_override: str = "") -> None:
        self.host = host
        self.recorder = recorder
        self.acceptance = Acceptance()
        self.metrics = Metrics(recorder)
        self.model_override = model_override
        self.settings = Settings()
        self.roots: list[str] = []
        self.proxy = SwitchableBackend()
        self.backend: Backend | None = None
        self.completer: Completer | None = None
        self.load_info: LoadInfo | None = None
        self.model_why = ""  # why the default model was chosen ('' for a configured one)
        self.base_state, self.base_reason = "loading", ""
        self.state, self.reason = "loading", ""
        self.alerts = AlertState()
        self.alert_view: tuple[dict[str, str], ...] = ()
        self.gpu: GpuMemory | None = None
        self.unloaded = False
        self.swap: dict[str, Any] = {}
        self.swaps = 0
        self.started = time.time()
        self.last_activity = time.monotonic()
        self._loaded_key: tuple[Any, ...] | None = None
        # A remote backend whose server was down at load time, still probing: (settings key, backend).
        self._waiting: tuple[tuple[Any, ...], RemoteBackend] | None = None
        self._lock: asyncio.Lock | None = None
        self._load_task: asyncio.Future[dict[str, Any]] | None = None
        self._monitor: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    def _background(self, coro: Any) -> None:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----- state -----
    def set_base(self, state: str, reason: str = "") -> None:
        """Set the underlying state (loading/ready/error/disabled); alerts may show it as degraded."""
        self.base_state, self.base_reason = state, reason
        self.publish()

    def publish(self) -> None:
        """Recompute the visible state and notify the client when it changed."""
        state, reason = self.base_state, self.base_reason
        if state == "ready" and self.alerts.active:
            state, reason = "degraded", self.alerts.reason()
        if (state, reason) != (self.state, self.reason):
            self.state, self.reason = state, reason
            log.info("state: %s%s", state, f" ({reason})" if reason else "")
            self.host.publish_status(state, reason)

    # ----- model lifecycle -----
    def engine_config(self) -> EngineConfig:
        """The engine configuration from the current settings (raises ModelError)."""
        s = self.settings
        choice = resolve_model(s.model or self.model_override, roots=self.roots)
        log.info("model: %s (from %s)%s", choice.path, choice.source, f": {choice.why}" if choice.why else "")
        self.model_why = choice.why
        return EngineConfig(
            model_path=choice.path,
            context_size=s.context_size,
            parallel=s.parallel,
            threads=s.threads,  # 0: the engine tunes between half and all cores
            gpu_layers=s.gpu_layers,
            batch_window_ms=s.batch_window_ms,
            draft_tokens=s.draft_tokens,
        )

    def _wanted_key(self) -> tuple[Any, ...]:
        s = self.settings
        override = self.model_override if s.backend != "openai" else ""
        return (override, *(getattr(s, k) for k in reload_keys(s)))

    def _target_name(self) -> str:
        s = self.settings
        if s.backend == "openai":
            return f"{s.model or 'the first model'} at {s.endpoint or '(no endpoint)'}"
        return Path(s.model or self.model_override).name or "the default model"

    def current_name(self) -> str:
        """The name of the model serving now ('' when none)."""
        return Path(self.load_info.path).name if self.load_info and self.backend is not None else ""

    def start_load(self, why: str, force: bool = False) -> asyncio.Future[dict[str, Any]]:
        """Start a load in the background; loads run one at a time, each with the settings of its turn."""
        task = asyncio.ensure_future(self.load(why, force))
        self._load_task = task
        return task

    async def load(self, why: str = "", force: bool = False) -> dict[str, Any]:
        """Load the configured model; beside the current one (blue-green) when one serves, then switch."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self.settings.enabled:
                self.set_base("disabled", "suggestions are turned off (enabled: false)")
                return {"ok": False, "error": "disabled"}
            if not force and self.backend is not None and self._loaded_key == self._wanted_key():
                return {"ok": True, "model": self.current_name(), "unchanged": True}
            return await self._load_locked(why)

    async def _load_locked(self, why: str) -> dict[str, Any]:
        s = self.settings
        key = self._wanted_key()
        first = self.backend is None
        target = self._target_name()
        previous = self.current_name()
        if first:
            self.set_base("loading", f"loading {target}")
        self.swap = {"phase": "loading", "from": previous or None, "to": target, "why": why, "at": time.time()}
        token = await self.host.progress_begin(f"loading {target}" if first else f"loading {target} beside {previous}")
        started = time.perf_counter()
        backend: Backend | None = None
        # While two models share the CPU, each decodes on half the cores: llama.cpp's threads spin
        # waiting for each other when oversubscribed, which made the serving model ~10x slower.
        share = 0 if first else max(1, (os.cpu_count() or 1) // 2)
        _cap_threads(self.backend, share)
        try:
            backend, info = await self._open(key)
            _cap_threads(backend, share)
            template = detect_template(info.model, s.template)
            result = await smoke(backend, SMOKE_PROMPT)
            if result.outcome != "done" or not result.generated_tokens:
                raise ModelError(f"smoke completion failed: {result.error or 'no tokens generated'}")
            # The documents in use get their prompts cached on the new model before it serves (one per
            # slot); not on a first load (requests are waiting for it) nor for a remote backend.
            warmed = await warm_up(backend, self.proxy, s.parallel) if not first and s.backend != "openai" else 0
        except RemoteDown as exc:
            _cap_threads(self.backend, 0)
            self.host.progress_end(token, "remote server unreachable; retrying")
            return self._remote_down(first, target, previous, key, exc)
        except (ModelError, OSError, TimeoutError) as exc:
            _cap_threads(self.backend, 0)
            if backend is not None:
                await asyncio.to_thread(backend.close)
            self.host.progress_end(token, "model not loaded")
            return self._load_failed(first, target, previous, str(exc) or type(exc).__name__)
        _cap_threads(backend, 0)
        old = self.proxy.switch(backend)
        self.backend, self.load_info, self._loaded_key = backend, info, key
        if self.completer is None:
            self.completer = Completer(self.proxy, template, s, self.recorder)
        else:
            self.completer.template = template
        self.completer.fast_device = info.gpu_layers > 0 or info.device.startswith("remote")
        self.completer.prefill_tps = info.prefill_tps
        self.unloaded = False
        elapsed = (time.perf_counter() - started) * 1000
        self.gpu = await asyncio.to_thread(gpu_memory)
        name = Path(info.path).name
        if old is not None:
            self.swaps += 1
            self._background(self.proxy.retire(old))
        self.swap = {
            "phase": "done",
            "from": previous or None,
            "to": name,
            "why": why,
            "at": time.time(),
            "ms": round(elapsed, 1),
            "smoke": result.text,
            "warmed": warmed,
        }
        log.info("ready: %s on %s, template %s, %.0f ms%s", name, info.device, template.name, elapsed, f" ({why})")
        self.set_base("ready", f"{name} on {info.device}")
        self.host.progress_end(token, f"ready ({info.device})")
        return {"ok": True, "model": name, "device": info.device, "ms": round(elapsed, 1), "swapped": old is not None}

    async def _open(self, key: tuple[Any, ...]) -> tuple[Backend, LoadInfo]:
        """Start the configured backend and wait until it is loaded (raises ModelError; RemoteDown when
        a remote server does not answer yet: its backend goes on probing and reports when it does)."""
        s = self.settings
        waiting, self._waiting = self._waiting, None
        if waiting is not None and (waiting[0] != key or s.backend != "openai"):
            await asyncio.to_thread(waiting[1].close)
            waiting = None
        if s.backend == "openai":
            if waiting is not None:
                remote = waiting[1]
            else:
                if not s.endpoint:
                    raise ModelError("backend 'openai' needs the `endpoint` setting")
                api_key = os.environ.get(s.api_key_env, "") if s.api_key_env else ""
                remote = RemoteBackend(RemoteConfig(s.endpoint, api_key, s.model, s.parallel))
                loop = asyncio.get_running_loop()
                remote.on_health = lambda state, why, b=remote: _call_soon(loop, self._remote_health, b, state, why)
                remote.start()
            try:
                why = await asyncio.wrap_future(remote.first_probe)
                if not remote.ready.done():
                    raise RemoteDown(remote, why)
                info = await asyncio.wrap_future(remote.ready)
            except RemoteDown:
                raise
            except BaseException:
                await asyncio.to_thread(remote.close)
                raise
            return remote, info
        backend = Engine(await asyncio.to_thread(self.engine_config))
        backend.start()
        try:
            info = await asyncio.wrap_future(backend.ready)
        except BaseException:
            await asyncio.to_thread(backend.close)
            raise
        return backend, info

    def _remote_down(
        self, first: bool, target: str, previous: str, key: tuple[Any, ...], exc: RemoteDown
    ) -> dict[str, Any]:
        """The remote server is down at load time: degraded (or still on the previous model) until it answers."""
        why = exc.backend.health_reason or str(exc)  # with when it retries
        self._waiting = (key, exc.backend)
        self.swap = {**self.swap, "phase": "waiting", "error": why}
        log.warning("remote server for %s unreachable: %s", target, why)
        if first or self.backend is None:
            self.set_base("degraded", f"remote server unreachable: {why}")
        else:
            self.set_base("ready", f"{previous} (switching to {target} waits for the server: {why})")
        return {"ok": False, "error": why, "retrying": True}

    def _remote_health(self, backend: RemoteBackend, state: str, why: str) -> None:
        """A remote backend's probe or a job saw the server come or go (on the loop)."""
        if self._waiting is not None and self._waiting[1] is backend:
            if state == "up":
                self.start_load("the remote server answers")
            elif state == "error":
                self._waiting = None
                self._background(asyncio.to_thread(backend.close))
                self._load_failed(self.backend is None, self._target_name(), self.current_name(), why)
            elif self.backend is None:
                self.set_base("degraded", f"remote server unreachable: {why}")
            return
        if backend is not self.backend or self.base_state in ("loading", "disabled"):
            return
        if state == "up":
            info = self.load_info
            self.set_base("ready", f"{self.current_name()} on {info.device if info else 'remote'}")
        elif state == "down":
            self.set_base("degraded", f"remote server unreachable: {why}")
        else:
            self.set_base("error", why)

    def _load_failed(self, first: bool, target: str, previous: str, why: str) -> dict[str, Any]:
        log.error("model %s not loaded: %s", target, why)
        self.swap = {**self.swap, "phase": "failed", "error": why}
        if first:
            self.set_base("error", why)
            self.host.show("error", f"suggest-ls: model not loaded: {why}")
            return {"ok": False, "error": why}
        self.host.show("error", f"suggest-ls: could not switch to {target}: {why}; still using {previous}")
        self.set_base("ready", f"{previous} (switching to {target} failed: {why})")
        return {"ok": False, "error": why, "kept": previous}

    def unload(self, why: str) -> None:
        """Stop serving from the loaded backend (it finishes its jobs, then closes); the next use reloads."""
        old = self.proxy.switch(None)
        self.backend = None
        self._loaded_key = None
        self.unloaded = True
        if self._waiting is not None:  # a remote still probing for a server that was down
            self._background(asyncio.to_thread(self._waiting[1].close))
            self._waiting = None
        if old is not None:
            log.info("model unloaded: %s", why)
            self._background(self.proxy.retire(old))

    def apply(self, old: Settings, new: Settings, started: bool) -> None:
        """Take new settings: update the completer; swap, disable or re-enable the model as needed."""
        self.settings = new
        if self.completer is not None:
            self.completer.settings = new
            self.completer.template = detect_template(
                self.load_info.model if self.load_info else ModelInfo(), new.template
            )
        if not started:
            return
        if not new.enabled:
            if self.backend is not None:
                self.unload("suggestions turned off")
            if self.base_state != "loading":
                self.set_base("disabled", "suggestions are turned off (enabled: false)")
            return
        if not old.enabled or any(getattr(old, k) != getattr(new, k) for k in reload_keys(new)):
            self.start_load("settings changed")
        else:
            self.check_alerts()

    async def completer_for_request(self) -> Completer | None:
        """The completer for a request; while no model serves, this waits for the load (starting it after an unload)."""
        self.last_activity = time.monotonic()
        if self.backend is None and self.settings.enabled:
            task = self._load_task
            if (task is None or task.done()) and self.unloaded:
                task = self.start_load("used again after an unload")
            if task is not None and not task.done():
                await asyncio.shield(task)
        return self.completer

    def shutdown(self, timeout: float = 0.5) -> None:
        """Close the serving backend (process exit)."""
        if self.backend is not None:
            self.backend.close(timeout)
        if self._waiting is not None:
            self._waiting[1].close(timeout)

    # ----- monitoring -----
    def start_monitor(self) -> None:
        """Start the once-a-second task: alerts, GPU memory, idle unload."""
        self.loop = asyncio.get_running_loop()
        if self._monitor is None:
            self._monitor = asyncio.ensure_future(self._run_monitor())

    async def _run_monitor(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(TICK_S)
            try:
                if tick % GPU_EVERY_TICKS == 0:
                    self.gpu = await asyncio.to_thread(gpu_memory)
                tick += 1
                self.check_alerts()
                self._idle_check()
            except Exception:
                log.exception("monitor step failed")

    def _idle_check(self) -> None:
        limit = self.settings.idle_unload_s
        if not limit or self.backend is None or (self._lock and self._lock.locked()):
            return
        idle = time.monotonic() - max(self.last_activity, self.proxy.last_used)
        if idle >= limit and not self.proxy.inflight(self.backend):
            self.unload(f"idle for {idle:.0f} s")
            self.set_base("ready", f"model unloaded after {limit} s idle; it loads again on the next request")

    def reading(self) -> Reading:
        """The figures the alerts judge, over the alert window."""
        s = self.settings
        window = float(s.alert_window_s)
        latency = self.recorder.latency(window)
        tps, generating = self.recorder.decode_rate(window)
        info = self.load_info
        accelerated = bool(info and (info.gpu_layers > 0 or s.backend == "openai"))
        gpu = self.gpu
        return Reading(
            tokens_per_second=tps,
            generating_requests=generating,
            p99_ms=float(latency["p99_ms"]),
            latency_samples=int(latency["count"]),
            gpu_used=gpu.used if gpu else 0,
            gpu_total=gpu.total if gpu else 0,
            accelerated=accelerated,
        )

    def thresholds(self) -> Thresholds:
        """The alert thresholds from the settings."""
        s = self.settings
        return Thresholds(
            mode=s.alerts,
            min_tokens_per_second=s.alert_min_tokens_per_second,
            max_gpu_memory=s.alert_max_gpu_memory,
            max_p99_ms=s.alert_max_p99_ms,
            window_s=float(s.alert_window_s),
            min_samples=s.alert_min_samples,
        )

    def check_alerts(self) -> None:
        """Judge the alerts; entering degraded shows one message, recovering clears the state."""
        if self.base_state != "ready" or self.backend is None:
            self.publish()
            return
        was_degraded = bool(self.alerts.active)
        raised, cleared = self.alerts.update(self.reading(), self.thresholds())
        self.alert_view = tuple({"check": a.check, "message": a.message} for a in self.alerts.active.values())
        for alert in raised:
            log.warning("alert: %s", alert.message)
        for check in cleared:
            log.info("alert cleared: %s", check)
        if raised and not was_degraded:
            self.host.show("warning", f"suggest-ls is degraded: {self.alerts.reason()}")
        self.publish()

    # ----- status -----
    def status(self) -> dict[str, Any]:
        """Everything ``suggest/status`` reports."""
        s = self.settings
        info = self.load_info
        gpu = self.gpu
        latency = self.recorder.latency(float(s.alert_window_s))
        decode_tps, _ = self.recorder.decode_rate(float(s.alert_window_s))
        acceptance = self.acceptance.summary()
        gpu_view: dict[str, Any] | str = "no GPU"
        if gpu is not None:
            gpu_view = {
                "name": gpu.name,
                "usedBytes": gpu.used,
                "totalBytes": gpu.total,
                "used": format_gb(gpu.used),
                "total": format_gb(gpu.total),
                "fraction": round(gpu.used / gpu.total, 3) if gpu.total else 0.0,
            }
        return {
            "state": self.state,
            "reason": self.reason,
            "version": __version__,
            "enabled": s.enabled,
            "loaded": self.backend is not None,
            "backend": s.backend,
            "model": Path(info.path).name if info else None,
            "modelPath": info.path if info else None,
            "modelWhy": self.model_why,
            "quantization": info.quantization if info else None,
            "device": info.device if info else None,
            "gpuLayers": info.gpu_layers if info else 0,
            "layers": info.n_layers + 1 if info and info.n_layers else 0,
            "offload": info.offload_reason if info else None,
            "threads": info.threads if info else 0,
            "threadsNow": int((self.backend.stats if self.backend else {}).get("threads", info.threads if info else 0)),
            "parallel": info.parallel if info else s.parallel,
            "contextPerSlot": info.n_ctx if info else 0,
            "prefillTokensPerSecond": round(info.prefill_tps, 1) if info else 0.0,
            "promptTokens": self.completer.prompt_tokens() if self.completer else 0,
            "template": self.completer.template.name if self.completer else None,
            "warm": self.completer.warm_summary() if self.completer else {},
            "gpu": gpu_view,
            "gpuMemUsed": format_gb(gpu.used) if gpu else "no GPU",
            "tokensPerSecond": round(self.proxy.tokens_per_second(10.0), 1),
            "decodeTokensPerSecond": round(decode_tps, 1),
            "latency": latency,
            "requests": self.recorder.requests,
            "cacheHits": self.recorder.cache_hits,
            "outcomes": dict(self.recorder.outcomes),
            "recentReasons": self.recorder.reasons(),
            "acceptance": acceptance,
            "acceptanceRate": acceptance["rate"],
            "alerts": list(self.alert_view),
            "swap": dict(self.swap),
            "swaps": self.swaps,
            "remote": self._remote_view(),
            "idleUnloadSeconds": s.idle_unload_s,
            "uptimeSeconds": round(time.time() - self.started, 1),
        }

    def _remote_view(self) -> dict[str, Any] | None:
        """The remote endpoint's health and capabilities (None for the in-process engine)."""
        for backend in (self.backend, self._waiting[1] if self._waiting else None):
            view = backend.view() if backend is not None else None
            if view is not None:
                return dict(view)
        return None

    def snapshot_threadsafe(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """``status()`` computed on the server's loop, for other threads; None if the loop does not answer."""
        loop = self.loop
        if loop is None or not loop.is_running():
            return self.status()
        future: Future[dict[str, Any]] = Future()

        def compute() -> None:
            try:
                future.set_result(self.status())
            except Exception as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(compute)
        try:
            return future.result(timeout)
        except FutureTimeout:
            return None


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop`` from another thread (nothing once the loop is closed)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass
