"""What every benchmark shares: progress display, percentiles, a plain table, the machine, JSON out."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from suggest_ls.completion.stats import percentile


class Progress:
    """A progress bar on a terminal; plain lines (every ``every`` seconds) elsewhere, such as CI."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, every: float = 5.0) -> None:
        self.label = label
        self.total = max(1, total)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.done = 0
        self.started = time.perf_counter()
        self._last = 0.0

    def update(self, done: int, note: str = "") -> None:
        """Show that ``done`` of ``total`` steps are finished."""
        self.done = done
        now = time.perf_counter()
        if self.tty:
            width = 30
            filled = int(width * min(done, self.total) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {note[:40]:<40}")
            self.stream.flush()
        elif now - self._last >= self.every or done >= self.total:
            self._last = now
            elapsed = now - self.started
            self.stream.write(f"{self.label}: {done}/{self.total} after {elapsed:.0f} s {note}\n")
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def pcts(values: list[float], digits: int = 1) -> dict[str, float | int]:
    """p50/p90/p99, mean and count of a list of values."""
    return {
        "p50": round(percentile(values, 50), digits),
        "p90": round(percentile(values, 90), digits),
        "p99": round(percentile(values, 99), digits),
        "mean": round(sum(values) / len(values), digits) if values else 0.0,
        "max": round(max(values), digits) if values else 0.0,
        "n": len(values),
    }


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def machine() -> dict[str, Any]:
    """Where the benchmark ran."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in load],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write the results where the user asked (folders are created)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
