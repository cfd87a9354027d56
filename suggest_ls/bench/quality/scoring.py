"""What an arm did on a task and how it scores: the outcome, exact match, the test program run, and
the figures of one arm (pass@1, precision, the ``minConfidence`` curve)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suggest_ls.bench.common import pcts

TIMEOUT_S = 3.0


# Runs the program under a CPU-time limit (set inside the child, so no pre-exec hook in a threaded parent).
_BOOT = (
    "import resource, runpy, sys; n = int(sys.argv[2]); "
    "resource.setrlimit(resource.RLIMIT_CPU, (n, n + 1)); runpy.run_path(sys.argv[1], run_name='__main__')"
)


def run_program(program: str, timeout: float = TIMEOUT_S) -> bool:
    """Run a program in a fresh interpreter in a scratch folder; True when it exits 0 in time.

    ``timeout`` is CPU time (RLIMIT_CPU), with ten times as much wall-clock time as a backstop,
    so a loaded machine does not turn a passing program into a timeout.
    """
    with tempfile.TemporaryDirectory(prefix="suggest-ls-he-") as tmp:
        path = Path(tmp) / "candidate.py"
        path.write_text(program, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-c", _BOOT, str(path), str(max(1, round(timeout)))],
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout * 10,
            )
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0


@dataclass
class Outcome:
    """What one arm did on one task."""

    text: str = ""
    shown: bool = False
    passed: bool = False
    exact: bool = False
    reason: str = ""
    ms: float = 0.0
    tokens_evaluated: int = 0
    tokens_generated: int = 0
    confidence: float = -1.0
    line_prob: float = -1.0  # the first generation's geometric mean token probability
    min_prob: float = -1.0
    program: str | None = None
    early: bool = False  # first words shown, then the whole line on asking again (``lineBudgetMs``)


def exact(shown: str, middle: str) -> bool:
    """Exact match of the filled text with the reference (trailing whitespace aside)."""
    return shown.rstrip() == middle.rstrip() and bool(shown.strip())


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    """pass@1, exact match, shown rate, precision and latency of one arm."""
    n = len(outcomes)
    shown = [o for o in outcomes if o.shown]
    passed = sum(o.passed for o in outcomes)
    reasons: dict[str, int] = {}
    for o in outcomes:
        if not o.shown:
            key = re.sub(r" \([0-9.]+\)$", "", o.reason) or "unknown"  # "low confidence (0.05)": one group
            reasons[key] = reasons.get(key, 0) + 1
    return {
        "tasks": n,
        "pass@1": round(100 * passed / n, 2) if n else 0.0,
        "exact": round(100 * sum(o.exact for o in outcomes) / n, 2) if n else 0.0,
        "shown": round(100 * len(shown) / n, 2) if n else 0.0,
        "precision": round(100 * passed / len(shown), 2) if shown else 0.0,
        "passed": passed,
        # latency to the first answer; with ``lineBudgetMs`` that may be a line's first words, and the
        # text scored is the whole line the bench asked for again on ``suggest/refresh``
        "latency_ms": pcts([o.ms for o in outcomes]),
        "first_words": sum(o.early for o in outcomes),
        "tokens_evaluated": pcts([float(o.tokens_evaluated) for o in outcomes], 0),
        "tokens_generated": pcts([float(o.tokens_generated) for o in outcomes], 0),
        "not_shown": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "by_min_confidence": by_min_confidence(outcomes),
    }


THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.9)


def by_min_confidence(outcomes: list[Outcome]) -> list[dict[str, float]]:
    """What the ``minConfidence`` setting would do: shown rate, pass@1 and precision per threshold."""
    n = len(outcomes)
    rows: list[dict[str, float]] = []
    if not n or not any(o.confidence >= 0 for o in outcomes if o.shown):
        return rows
    for t in THRESHOLDS:
        kept = [o for o in outcomes if o.shown and o.confidence >= t]
        passed = sum(o.passed for o in kept)
        rows.append(
            {
                "min_confidence": t,
                "shown": round(100 * len(kept) / n, 2),
                "pass@1": round(100 * passed / n, 2),
                "precision": round(100 * passed / len(kept), 2) if kept else 0.0,
            }
        )
    return rows
