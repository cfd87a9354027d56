"""Alerts: tokens/s, GPU memory and p99 latency against thresholds; degraded while any one holds.

Each check is judged only on enough evidence: tokens/s only over time spent generating and only
after ``min_samples`` requests generated more than one token in the window; p99 only over
``min_samples`` requests that reached the model or the cache; GPU memory only when NVML reads a
GPU. With ``mode='auto'`` (the default) the throughput and latency checks apply only when a GPU
or a remote server does the work: the default figures (50 tok/s, 300 ms) are a GPU deployment's,
and a CPU that cannot reach them would be flagged from its first requests with nothing to fix.
"""

from __future__ import annotations

from dataclasses import dataclass

CHECKS = ("tokens_per_second", "gpu_memory", "p99_latency")


@dataclass(frozen=True)
class Thresholds:
    """When each check fires, over which window, and on how much evidence."""

    mode: str = "auto"  # auto | always | off
    min_tokens_per_second: float = 50.0
    max_gpu_memory: float = 0.85
    max_p99_ms: float = 300.0
    window_s: float = 300.0
    min_samples: int = 20


@dataclass(frozen=True)
class Reading:
    """The figures the checks look at, taken over the window."""

    tokens_per_second: float = 0.0
    generating_requests: int = 0
    p99_ms: float = 0.0
    latency_samples: int = 0
    gpu_used: int = 0
    gpu_total: int = 0
    accelerated: bool = False  # a GPU or a remote server runs the model


@dataclass(frozen=True)
class Alert:
    """One firing check with the message shown to the user."""

    check: str
    message: str


def evaluate(reading: Reading, limits: Thresholds) -> dict[str, Alert | None]:
    """Judge each check: an Alert when it fires, None when it passes; absent when there is too little evidence."""
    out: dict[str, Alert | None] = {}
    if limits.mode == "off":
        return {check: None for check in CHECKS}
    speed = limits.mode == "always" or reading.accelerated
    if speed and limits.min_tokens_per_second > 0 and reading.generating_requests >= limits.min_samples:
        tps = reading.tokens_per_second
        out["tokens_per_second"] = (
            Alert(
                "tokens_per_second",
                f"generation at {tps:.1f} tokens/s, below {limits.min_tokens_per_second:g}",
            )
            if tps < limits.min_tokens_per_second
            else None
        )
    elif not speed or limits.min_tokens_per_second <= 0:
        out["tokens_per_second"] = None
    if reading.gpu_total > 0 and limits.max_gpu_memory > 0:
        share = reading.gpu_used / reading.gpu_total
        out["gpu_memory"] = (
            Alert(
                "gpu_memory",
                f"GPU memory {share:.0%} used ({reading.gpu_used / 1e9:.1f} of {reading.gpu_total / 1e9:.1f} GB), "
                f"above {limits.max_gpu_memory:.0%}",
            )
            if share > limits.max_gpu_memory
            else None
        )
    else:
        out["gpu_memory"] = None
    if speed and limits.max_p99_ms > 0 and reading.latency_samples >= limits.min_samples:
        out["p99_latency"] = (
            Alert(
                "p99_latency",
                f"p99 latency {reading.p99_ms:.0f} ms over the last {limits.window_s:g} s, above {limits.max_p99_ms:g} ms",
            )
            if reading.p99_ms > limits.max_p99_ms
            else None
        )
    elif not speed or limits.max_p99_ms <= 0:
        out["p99_latency"] = None
    return out


class AlertState:
    """The active alerts; ``update`` says which were raised and which cleared."""

    def __init__(self) -> None:
        self.active: dict[str, Alert] = {}

    def update(self, reading: Reading, limits: Thresholds) -> tuple[list[Alert], list[str]]:
        """Apply one evaluation; a check without enough evidence keeps its state unless the window is empty."""
        judged = evaluate(reading, limits)
        idle = reading.latency_samples == 0 and reading.generating_requests == 0
        raised: list[Alert] = []
        cleared: list[str] = []
        for check in CHECKS:
            if check in judged:
                alert = judged[check]
            elif idle and check != "gpu_memory":
                alert = None  # no recent traffic: nothing left to show the problem
            else:
                continue
            had = check in self.active
            if alert is not None:
                if not had:
                    raised.append(alert)
                self.active[check] = alert
            elif had:
                del self.active[check]
                cleared.append(check)
        return raised, cleared

    def reason(self) -> str:
        """The active alerts as one line."""
        return "; ".join(a.message for a in self.active.values())
