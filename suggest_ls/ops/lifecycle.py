"""Loading, reloading and unloading the backend: a first load, a blue-green swap beside the serving
model, a remote server that is down at load time, an unload (idle or disabled) and the reload on
the next request. The settings are read from the store at each load."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from suggest_ls.backends.contract import Backend, LoadInfo
from suggest_ls.backends.device import gpu_memory
from suggest_ls.backends.llama.engine import Engine
from suggest_ls.backends.llama.loading import EngineConfig
from suggest_ls.backends.models import ModelError, resolve_model
from suggest_ls.backends.remote.backend import RemoteBackend
from suggest_ls.backends.remote.client import RemoteConfig
from suggest_ls.backends.switchable import SMOKE_PROMPT, SwitchableBackend, smoke, warm_up
from suggest_ls.completion.completer import Completer
from suggest_ls.completion.prompt import detect_template
from suggest_ls.completion.stats import Recorder
from suggest_ls.ops.state import Host, ServerState
from suggest_ls.settings import Settings, SettingsStore

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


def reload_keys(settings: Settings) -> tuple[str, ...]:
    """The settings whose change reloads the backend ``settings`` configure."""
    return REMOTE_RELOAD_KEYS if settings.backend == "openai" else RELOAD_KEYS


def engine_config(settings: Settings, model_path: Path) -> EngineConfig:
    """The in-process engine's configuration for ``model_path`` under ``settings``."""
    return EngineConfig(
        model_path=model_path,
        context_size=settings.context_size,
        parallel=settings.parallel,
        threads=settings.threads,  # 0: the engine tunes between half and all cores
        gpu_layers=settings.gpu_layers,
        batch_window_ms=settings.batch_window_ms,
        draft_tokens=settings.draft_tokens,
    )


class RemoteDown(ModelError):
    """The remote server did not answer the first probe; its backend goes on probing with backoff."""

    def __init__(self, backend: RemoteBackend, why: str) -> None:
        super().__init__(why)
        self.backend = backend


def _cap_threads(backend: Backend | None, threads: int) -> None:
    """Cap an in-process engine's decode threads (0 lifts the cap); remote backends have none."""
    if backend is not None:
        backend.cap_threads(threads)


class Lifecycle:
    """Owns the loaded backend(s) behind one switchable proxy, the completer on it and the last swap."""

    def __init__(
        self, host: Host, state: ServerState, store: SettingsStore, recorder: Recorder, model_override: str = ""
    ) -> None:
        self.host = host
        self.state = state
        self.store = store
        self.recorder = recorder
        self.model_override = model_override
        self.roots: list[str] = []
        self.proxy = SwitchableBackend()
        self.backend: Backend | None = None
        self.completer: Completer | None = None
        self.load_info: LoadInfo | None = None
        self.model_why = ""  # why the default model was chosen ('' for a configured one)
        self.unloaded = False
        self.swap: dict[str, Any] = {}
        self.swaps = 0
        self.last_activity = time.monotonic()
        self._loaded_key: tuple[Any, ...] | None = None
        # A remote backend whose server was down at load time, still probing: (settings key, backend).
        self.waiting: tuple[tuple[Any, ...], RemoteBackend] | None = None
        self._lock: asyncio.Lock | None = None
        self._load_task: asyncio.Future[dict[str, Any]] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    @property
    def started(self) -> bool:
        """A load was started: from now on a settings change may load, swap or unload."""
        return self._load_task is not None

    def loading(self) -> bool:
        """A load is running now."""
        return bool(self._lock and self._lock.locked())

    def _background(self, coro: Any) -> None:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _engine_config(self, s: Settings) -> EngineConfig:
        """The engine configuration from ``s``, the model resolved (raises ModelError)."""
        choice = resolve_model(s.model or self.model_override, roots=self.roots)
        log.info("model: %s (from %s)%s", choice.path, choice.source, f": {choice.why}" if choice.why else "")
        self.model_why = choice.why
        return engine_config(s, choice.path)

    def _wanted_key(self, s: Settings) -> tuple[Any, ...]:
        override = self.model_override if s.backend != "openai" else ""
        return (override, *(getattr(s, k) for k in reload_keys(s)))

    def target_name(self, s: Settings) -> str:
        """What ``s`` asks to load, for messages."""
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
            s = self.store.current
            if not s.enabled:
                self.state.set_base("disabled", "suggestions are turned off (enabled: false)")
                return {"ok": False, "error": "disabled"}
            if not force and self.backend is not None and self._loaded_key == self._wanted_key(s):
                return {"ok": True, "model": self.current_name(), "unchanged": True}
            return await self._load_locked(s, why)

    async def _load_locked(self, s: Settings, why: str) -> dict[str, Any]:
        key = self._wanted_key(s)
        first = self.backend is None
        target = self.target_name(s)
        previous = self.current_name()
        if first:
            self.state.set_base("loading", f"loading {target}")
        self.swap = {"phase": "loading", "from": previous or None, "to": target, "why": why, "at": time.time()}
        token = await self.host.progress_begin(f"loading {target}" if first else f"loading {target} beside {previous}")
        started = time.perf_counter()
        backend: Backend | None = None
        # While two models share the CPU, each decodes on half the cores: llama.cpp's threads spin
        # waiting for each other when oversubscribed, which made the serving model much slower.
        share = 0 if first else max(1, (os.cpu_count() or 1) // 2)
        _cap_threads(self.backend, share)
        try:
            backend, info = await self._open(s, key)
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
            self.store.subscribe(self.completer.settings_changed)
        else:
            self.completer.template = template
        self.completer.fast_device = info.gpu_layers > 0 or info.device.startswith("remote")
        self.completer.prefill_tps = info.prefill_tps
        self.unloaded = False
        elapsed = (time.perf_counter() - started) * 1000
        self.state.gpu = await asyncio.to_thread(gpu_memory)
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
        self.state.set_base("ready", f"{name} on {info.device}")
        self.host.progress_end(token, f"ready ({info.device})")
        return {"ok": True, "model": name, "device": info.device, "ms": round(elapsed, 1), "swapped": old is not None}

    async def _open(self, s: Settings, key: tuple[Any, ...]) -> tuple[Backend, LoadInfo]:
        """Start the backend ``s`` configures and wait until it is loaded (raises ModelError; RemoteDown
        when a remote server does not answer yet: its backend goes on probing and reports when it does)."""
        waiting, self.waiting = self.waiting, None
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
        backend = Engine(await asyncio.to_thread(self._engine_config, s))
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
        self.waiting = (key, exc.backend)
        self.swap = {**self.swap, "phase": "waiting", "error": why}
        log.warning("remote server for %s unreachable: %s", target, why)
        if first or self.backend is None:
            self.state.set_base("degraded", f"remote server unreachable: {why}")
        else:
            self.state.set_base("ready", f"{previous} (switching to {target} waits for the server: {why})")
        return {"ok": False, "error": why, "retrying": True}

    def _remote_health(self, backend: RemoteBackend, state: str, why: str) -> None:
        """A remote backend's probe or a job saw the server come or go (on the loop)."""
        if self.waiting is not None and self.waiting[1] is backend:
            if state == "up":
                self.start_load("the remote server answers")
            elif state == "error":
                self.waiting = None
                self._background(asyncio.to_thread(backend.close))
                target = self.target_name(self.store.current)
                self._load_failed(self.backend is None, target, self.current_name(), why)
            elif self.backend is None:
                self.state.set_base("degraded", f"remote server unreachable: {why}")
            return
        if backend is not self.backend or self.state.base_state in ("loading", "disabled"):
            return
        if state == "up":
            info = self.load_info
            self.state.set_base("ready", f"{self.current_name()} on {info.device if info else 'remote'}")
        elif state == "down":
            self.state.set_base("degraded", f"remote server unreachable: {why}")
        else:
            self.state.set_base("error", why)

    def _load_failed(self, first: bool, target: str, previous: str, why: str) -> dict[str, Any]:
        log.error("model %s not loaded: %s", target, why)
        self.swap = {**self.swap, "phase": "failed", "error": why}
        if first:
            self.state.set_base("error", why)
            self.host.show("error", f"suggest-ls: model not loaded: {why}")
            return {"ok": False, "error": why}
        self.host.show("error", f"suggest-ls: could not switch to {target}: {why}; still using {previous}")
        self.state.set_base("ready", f"{previous} (switching to {target} failed: {why})")
        return {"ok": False, "error": why, "kept": previous}

    def unload(self, why: str) -> None:
        """Stop serving from the loaded backend (it finishes its jobs, then closes); the next use reloads."""
        old = self.proxy.switch(None)
        self.backend = None
        self._loaded_key = None
        self.unloaded = True
        if self.waiting is not None:  # a remote still probing for a server that was down
            self._background(asyncio.to_thread(self.waiting[1].close))
            self.waiting = None
        if old is not None:
            log.info("model unloaded: %s", why)
            self._background(self.proxy.retire(old))

    async def completer_for_request(self) -> Completer | None:
        """The completer for a request; while no model serves, this waits for the load (starting it after an unload)."""
        self.last_activity = time.monotonic()
        if self.backend is None and self.store.current.enabled:
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
        if self.waiting is not None:
            self.waiting[1].close(timeout)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop`` from another thread (nothing once the loop is closed)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass
