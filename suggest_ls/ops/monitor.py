"""The once-a-second monitor: GPU memory readings, the alerts judged on the figures of the alert window
(degraded while one fires, one message per episode) and the unload after idleUnloadSeconds."""

from __future__ import annotations

import asyncio
import logging
import time

from suggest_ls.backends.device import gpu_memory
from suggest_ls.completion.stats import Recorder
from suggest_ls.ops.alerts import Reading, Thresholds
from suggest_ls.ops.lifecycle import Lifecycle
from suggest_ls.ops.state import Host, ServerState
from suggest_ls.settings import Settings, SettingsStore

log = logging.getLogger(__name__)
TICK_S = 1.0
GPU_EVERY_TICKS = 5


def thresholds(s: Settings) -> Thresholds:
    """The alert thresholds from the settings."""
    return Thresholds(
        mode=s.alerts,
        min_tokens_per_second=s.alert_min_tokens_per_second,
        max_gpu_memory=s.alert_max_gpu_memory,
        max_p99_ms=s.alert_max_p99_ms,
        window_s=float(s.alert_window_s),
        min_samples=s.alert_min_samples,
    )


class Monitor:
    """Takes the readings, judges the alerts and unloads an idle model, once a second on the loop."""

    def __init__(
        self, host: Host, state: ServerState, life: Lifecycle, store: SettingsStore, recorder: Recorder
    ) -> None:
        self.host = host
        self.state = state
        self.life = life
        self.store = store
        self.recorder = recorder
        self._task: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Start the once-a-second task (once)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(TICK_S)
            try:
                if tick % GPU_EVERY_TICKS == 0:
                    self.state.gpu = await asyncio.to_thread(gpu_memory)
                tick += 1
                self.check_alerts()
                self.idle_check()
            except Exception:
                log.exception("monitor step failed")

    def idle_check(self) -> None:
        """Unload the model once nothing used it for idleUnloadSeconds (never during a load or a job)."""
        life = self.life
        limit = self.store.current.idle_unload_s
        if not limit or life.backend is None or life.loading():
            return
        idle = time.monotonic() - max(life.last_activity, life.proxy.last_used)
        if idle >= limit and not life.proxy.inflight(life.backend):
            life.unload(f"idle for {idle:.0f} s")
            self.state.set_base("ready", f"model unloaded after {limit} s idle; it loads again on the next request")

    def reading(self) -> Reading:
        """The figures the alerts judge, over the alert window."""
        s = self.store.current
        window = float(s.alert_window_s)
        latency = self.recorder.latency(window)
        tps, generating = self.recorder.decode_rate(window)
        info = self.life.load_info
        accelerated = bool(info and (info.gpu_layers > 0 or s.backend == "openai"))
        gpu = self.state.gpu
        return Reading(
            tokens_per_second=tps,
            generating_requests=generating,
            p99_ms=float(latency["p99_ms"]),
            latency_samples=int(latency["count"]),
            gpu_used=gpu.used if gpu else 0,
            gpu_total=gpu.total if gpu else 0,
            accelerated=accelerated,
        )

    def check_alerts(self) -> None:
        """Judge the alerts; entering degraded shows one message, recovering clears the state."""
        state = self.state
        if state.base_state != "ready" or self.life.backend is None:
            state.publish()
            return
        alerts = state.alerts
        was_degraded = bool(alerts.active)
        raised, cleared = alerts.update(self.reading(), thresholds(self.store.current))
        state.alert_view = tuple({"check": a.check, "message": a.message} for a in alerts.active.values())
        for alert in raised:
            log.warning("alert: %s", alert.message)
        for check in cleared:
            log.info("alert cleared: %s", check)
        if raised and not was_degraded:
            self.host.show("warning", f"suggest-ls is degraded: {alerts.reason()}")
        state.publish()
