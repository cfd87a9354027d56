"""Per-request records and the rolling figures built from them (latency percentiles, reasons)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Record:
    """The timings and outcome of one completion request."""

    uri: str
    outcome: str
    total_ms: float = 0.0
    queue_ms: float = 0.0
    ttft_ms: float = 0.0
    engine_ms: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    evaluated_tokens: int = 0
    generated_tokens: int = 0
    cache_hit: bool = False
    at: float = field(default_factory=time.time)
    version: int = -1
    debounce_ms: float = 0.0
    drafted_tokens: int = 0
    accepted_tokens: int = 0

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON."""
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class Recorder:
    """Keeps recent records (thread-safe) and counts outcomes since start."""

    def __init__(self, keep: int = 5000) -> None:
        self._lock = threading.Lock()
        self._records: deque[Record] = deque(maxlen=keep)
        self.outcomes: Counter[str] = Counter()
        self.requests = 0
        self.cache_hits = 0
        self.accepted = 0
        self.shown = 0

    def add(self, record: Record) -> None:
        """Store one record."""
        with self._lock:
            self._records.append(record)
            self.requests += 1
            self.outcomes[record.outcome] += 1
            if record.cache_hit:
                self.cache_hits += 1
            if record.outcome in ("shown", "cache"):
                self.shown += 1

    def recent(self, seconds: float = 300.0) -> list[Record]:
        """Records of the last ``seconds``."""
        cutoff = time.time() - seconds
        with self._lock:
            return [r for r in self._records if r.at >= cutoff]

    def latency(self, seconds: float = 300.0) -> dict[str, float]:
        """p50/p90/p99 of total latency over requests that reached the model or the cache."""
        values = [r.total_ms for r in self.recent(seconds) if r.outcome in ("shown", "cache") or r.generated_tokens]
        return {
            "p50_ms": round(percentile(values, 50), 1),
            "p90_ms": round(percentile(values, 90), 1),
            "p99_ms": round(percentile(values, 99), 1),
            "count": len(values),
        }

    def reasons(self, n: int = 10) -> list[dict[str, object]]:
        """The latest reasons a suggestion was not shown."""
        with self._lock:
            out = [r for r in reversed(self._records) if r.outcome not in ("shown", "cache")][:n]
        return [{"uri": r.uri, "reason": r.outcome, "at": r.at} for r in out]
