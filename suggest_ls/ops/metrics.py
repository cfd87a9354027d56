"""Prometheus metrics (prometheus-client, in the server's own registry) for ``GET /metrics``.

Counters and the latency histogram are fed by the recorder as requests finish; gauges (state,
tokens/s, percentiles, GPU memory, acceptance, alerts) are read from a status snapshot at
scrape time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from suggest_ls.completion.stats import LINE_FINISHED, MODEL_OUTCOMES, Record, Recorder, outcome_class

STATES = ("loading", "ready", "degraded", "error", "disabled")
CHECKS = ("tokens_per_second", "gpu_memory", "p99_latency")
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StatusCollector(Collector):
    """Gauges and counters read from the latest status snapshot."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families for the current snapshot."""
        s = self.snapshot
        if not s:
            return
        yield StateSetMetricFamily(
            "suggest_ls_state", "Server state.", {name: s.get("state") == name for name in STATES}
        )
        yield GaugeMetricFamily(
            "suggest_ls_model_loaded", "1 while a model is loaded.", value=int(bool(s.get("loaded")))
        )
        yield InfoMetricFamily(
            "suggest_ls_model",
            "The model serving now.",
            value={
                "model": str(s.get("model") or ""),
                "quantization": str(s.get("quantization") or ""),
                "device": str(s.get("device") or ""),
                "backend": str(s.get("backend") or ""),
                "version": str(s.get("version") or ""),
            },
        )
        yield GaugeMetricFamily(
            "suggest_ls_tokens_per_second", "Generation speed over the last 10 s of decoding.", s["tokensPerSecond"]
        )
        yield GaugeMetricFamily(
            "suggest_ls_decode_tokens_per_second",
            "Generation speed per request over the alert window (time spent generating only).",
            s["decodeTokensPerSecond"],
        )
        latency = s["latency"]
        for q in ("p50", "p90", "p99"):
            yield GaugeMetricFamily(
                f"suggest_ls_latency_{q}_seconds",
                f"{q} suggestion latency over the alert window.",
                latency[f"{q}_ms"] / 1000,
            )
        gpu = s.get("gpu")
        if isinstance(gpu, dict):
            yield GaugeMetricFamily("suggest_ls_gpu_memory_used_bytes", "GPU memory used (NVML).", gpu["usedBytes"])
            yield GaugeMetricFamily(
                "suggest_ls_gpu_memory_total_bytes", "GPU memory in total (NVML).", gpu["totalBytes"]
            )
        acc = s["acceptance"]
        yield CounterMetricFamily(
            "suggest_ls_suggestions_offered", "Suggestions offered to the editor.", acc["offered"]
        )
        yield CounterMetricFamily("suggest_ls_suggestions_accepted", "Suggestions accepted in full.", acc["accepted"])
        yield CounterMetricFamily(
            "suggest_ls_suggestions_partially_accepted", "Suggestions accepted in part only.", acc["partiallyAccepted"]
        )
        yield GaugeMetricFamily(
            "suggest_ls_acceptance_rate", "Share of offered suggestions accepted in full or in part.", acc["rate"]
        )
        active = {a["check"] for a in s.get("alerts", [])}
        alerts = GaugeMetricFamily("suggest_ls_alert_active", "1 while the alert fires.", labels=["check"])
        for check in CHECKS:
            alerts.add_metric([check], int(check in active))
        yield alerts
        yield CounterMetricFamily("suggest_ls_model_swaps", "Models switched without downtime.", s.get("swaps", 0))
        swap_ms = (s.get("swap") or {}).get("ms")
        if swap_ms is not None:
            yield GaugeMetricFamily(
                "suggest_ls_last_load_seconds", "Load + smoke time of the last model load.", swap_ms / 1000
            )


class Metrics:
    """The server's metrics registry; ``render(snapshot)`` gives the Prometheus text exposition."""

    def __init__(self, recorder: Recorder) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self.requests = Counter(
            "suggest_ls_requests", "Completion requests by result.", ["result"], registry=self.registry
        )
        self.latency = Histogram(
            "suggest_ls_request_latency_seconds",
            "Latency of requests answered with a suggestion (model run or cache).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter("suggest_ls_tokens", "Tokens by kind.", ["kind"], registry=self.registry)
        self._status = _StatusCollector()
        self.registry.register(self._status)
        recorder.listeners.append(self.observe)

    def observe(self, record: Record) -> None:
        """Count one finished request."""
        if record.outcome != LINE_FINISHED:  # the engine's work after first words: not a request
            self.requests.labels(outcome_class(record.outcome)).inc()
        if record.outcome in MODEL_OUTCOMES:
            self.latency.observe(record.total_ms / 1000)
        for kind, n in (
            ("prompt", record.prompt_tokens),
            ("cached", record.cached_tokens),
            ("shifted", record.shifted_tokens),
            ("evaluated", record.evaluated_tokens),
            ("generated", record.generated_tokens),
        ):
            if n:
                self.tokens.labels(kind).inc(n)

    def render(self, snapshot: dict[str, Any]) -> bytes:
        """The exposition text for one scrape."""
        with self._lock:
            self._status.snapshot = snapshot
            return generate_latest(self.registry)
