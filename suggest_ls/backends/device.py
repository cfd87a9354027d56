"""GPU memory (pynvml) and the plan for how many layers to offload."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

log = logging.getLogger(__name__)
HEADROOM = 0.10


@dataclass(frozen=True)
class GpuMemory:
    """Memory of the first GPU in bytes."""

    name: str
    used: int
    free: int
    total: int


def gpu_memory() -> GpuMemory | None:
    """Read GPU 0's memory through NVML; None when there is no GPU or no NVML."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            info = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode()
            return GpuMemory(str(name), int(info.used), int(info.free), int(info.total))
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # no library, no driver, no device
        log.debug("no GPU memory reading: %s", exc)
        return None


@dataclass(frozen=True)
class OffloadPlan:
    """How many layers go to the GPU and why."""

    layers: int
    reason: str


def plan_offload(
    requested: int, n_layers: int, model_bytes: int, kv_bytes: int, supports_gpu: bool, mem: GpuMemory | None
) -> OffloadPlan:
    """Decide the offloaded layer count, keeping ``HEADROOM`` of device memory free."""
    if requested == 0:
        return OffloadPlan(0, "CPU: gpuLayers is 0")
    if not supports_gpu:
        return OffloadPlan(0, "CPU: this llama.cpp build has no GPU offload")
    if mem is None:
        layers = n_layers + 1 if requested < 0 else requested
        return OffloadPlan(layers, "GPU memory unknown (no NVML); offloading as asked")
    budget = mem.free - HEADROOM * mem.total
    need = model_bytes + kv_bytes
    wanted = n_layers + 1 if requested < 0 else min(requested, n_layers + 1)
    if budget <= 0:
        return OffloadPlan(0, f"CPU: only {mem.free / 2**30:.1f} GiB free of {mem.total / 2**30:.1f} GiB")
    per_layer = need / (n_layers + 1)
    fit = int(budget // per_layer) if per_layer > 0 else wanted
    if fit >= wanted:
        return OffloadPlan(wanted, f"GPU {mem.name}: {wanted} layers offloaded")
    return OffloadPlan(
        fit,
        f"partial offload: {fit} of {n_layers + 1} layers fit in {budget / 2**30:.1f} GiB "
        f"(model + cache need {need / 2**30:.1f} GiB, {HEADROOM:.0%} of memory kept free)",
    )
