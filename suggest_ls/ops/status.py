"""The server's status as plain facts (``collect`` → ``Status``) and its one wire form (``to_wire``), the
camelCase JSON of ``suggest/status`` and of the HTTP ``/health`` endpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suggest_ls import __version__
from suggest_ls.backends.device import GpuMemory
from suggest_ls.completion.stats import Acceptance, Recorder
from suggest_ls.ops.lifecycle import Lifecycle
from suggest_ls.ops.state import ServerState
from suggest_ls.settings import Settings


@dataclass(frozen=True)
class Status:
    """One snapshot of the server (the nested views of other layers are copies, as they give them)."""

    state: str
    reason: str
    version: str
    enabled: bool
    loaded: bool
    backend: str
    model: str | None  # the file name
    model_path: str | None
    model_why: str
    quantization: str | None
    device: str | None
    gpu_layers: int
    layers: int
    offload: str | None
    threads: int
    threads_now: int
    parallel: int
    context_per_slot: int
    prefill_tokens_per_second: float
    prompt_tokens: int
    template: str | None
    warm: dict[str, int]
    gpu: GpuMemory | None
    tokens_per_second: float
    decode_tokens_per_second: float
    latency: dict[str, float]
    requests: int
    cache_hits: int
    outcomes: dict[str, int]
    recent_reasons: list[dict[str, object]]
    acceptance: dict[str, float | int]
    alerts: tuple[dict[str, str], ...]
    swap: dict[str, Any]
    swaps: int
    remote: dict[str, Any] | None
    idle_unload_seconds: int
    uptime_seconds: float


def format_gb(n: int) -> str:
    """Bytes as ``18.2GB`` (decimal gigabytes, like the reference health endpoint)."""
    return f"{n / 1e9:.1f}GB"


def remote_view(life: Lifecycle) -> dict[str, Any] | None:
    """The remote endpoint's health and capabilities (None for the in-process engine)."""
    for backend in (life.backend, life.waiting[1] if life.waiting else None):
        view = backend.view() if backend is not None else None
        if view is not None:
            return dict(view)
    return None


def collect(
    s: Settings, state: ServerState, life: Lifecycle, recorder: Recorder, acceptance: Acceptance, started: float
) -> Status:
    """The status now (on the server's loop: the figures are read from the live objects)."""
    info = life.load_info
    completer = life.completer
    window = float(s.alert_window_s)
    decode_tps, _ = recorder.decode_rate(window)
    return Status(
        state=state.state,
        reason=state.reason,
        version=__version__,
        enabled=s.enabled,
        loaded=life.backend is not None,
        backend=s.backend,
        model=Path(info.path).name if info else None,
        model_path=info.path if info else None,
        model_why=life.model_why,
        quantization=info.quantization if info else None,
        device=info.device if info else None,
        gpu_layers=info.gpu_layers if info else 0,
        layers=info.n_layers + 1 if info and info.n_layers else 0,
        offload=info.offload_reason if info else None,
        threads=info.threads if info else 0,
        threads_now=int((life.backend.stats if life.backend else {}).get("threads", info.threads if info else 0)),
        parallel=info.parallel if info else s.parallel,
        context_per_slot=info.n_ctx if info else 0,
        prefill_tokens_per_second=round(info.prefill_tps, 1) if info else 0.0,
        prompt_tokens=completer.prompt_tokens() if completer else 0,
        template=completer.template.name if completer else None,
        warm=completer.warm_summary() if completer else {},
        gpu=state.gpu,
        tokens_per_second=round(life.proxy.tokens_per_second(10.0), 1),
        decode_tokens_per_second=round(decode_tps, 1),
        latency=recorder.latency(window),
        requests=recorder.requests,
        cache_hits=recorder.cache_hits,
        outcomes=dict(recorder.outcomes),
        recent_reasons=recorder.reasons(),
        acceptance=acceptance.summary(),
        alerts=state.alert_view,
        swap=dict(life.swap),
        swaps=life.swaps,
        remote=remote_view(life),
        idle_unload_seconds=s.idle_unload_s,
        uptime_seconds=round(time.time() - started, 1),
    )


def _gpu_wire(gpu: GpuMemory | None) -> dict[str, Any] | str:
    if gpu is None:
        return "no GPU"
    return {
        "name": gpu.name,
        "usedBytes": gpu.used,
        "totalBytes": gpu.total,
        "used": format_gb(gpu.used),
        "total": format_gb(gpu.total),
        "fraction": round(gpu.used / gpu.total, 3) if gpu.total else 0.0,
    }


def to_wire(status: Status) -> dict[str, Any]:
    """The camelCase JSON object of ``suggest/status`` (and ``/health``); the keys editors read."""
    st = status
    return {
        "state": st.state,
        "reason": st.reason,
        "version": st.version,
        "enabled": st.enabled,
        "loaded": st.loaded,
        "backend": st.backend,
        "model": st.model,
        "modelPath": st.model_path,
        "modelWhy": st.model_why,
        "quantization": st.quantization,
        "device": st.device,
        "gpuLayers": st.gpu_layers,
        "layers": st.layers,
        "offload": st.offload,
        "threads": st.threads,
        "threadsNow": st.threads_now,
        "parallel": st.parallel,
        "contextPerSlot": st.context_per_slot,
        "prefillTokensPerSecond": st.prefill_tokens_per_second,
        "promptTokens": st.prompt_tokens,
        "template": st.template,
        "warm": st.warm,
        "gpu": _gpu_wire(st.gpu),
        "gpuMemUsed": format_gb(st.gpu.used) if st.gpu else "no GPU",
        "tokensPerSecond": st.tokens_per_second,
        "decodeTokensPerSecond": st.decode_tokens_per_second,
        "latency": st.latency,
        "requests": st.requests,
        "cacheHits": st.cache_hits,
        "outcomes": st.outcomes,
        "recentReasons": st.recent_reasons,
        "acceptance": st.acceptance,
        "acceptanceRate": st.acceptance["rate"],
        "alerts": list(st.alerts),
        "swap": st.swap,
        "swaps": st.swaps,
        "remote": st.remote,
        "idleUnloadSeconds": st.idle_unload_seconds,
        "uptimeSeconds": st.uptime_seconds,
    }
