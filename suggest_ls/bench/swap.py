"""``suggest-ls bench swap``: the service gap while the model is swapped under continuous requests.

A client types into one document through a real ``suggest-ls --stdio`` subprocess (``--lines``
lines of real code, then a function whose name it edits), one inline completion request at a
time (each after an edit, so the model runs every time; at most 8 tokens each), while the
benchmark swaps the model ``--swaps`` times with ``suggest/reloadModel``, alternating between the
embedded model and a re-quantized copy of it (``--type``, made with ``suggest-ls quantize``'s
function). Per swap: how long it took (load + smoke), requests answered meanwhile, failures, the
longest gap in service (the longest time without a successful answer, from the swap's start to
the next swap's start or the end of the run, ``--settle`` seconds after its end: that covers the
old model's close and the new model's first requests, where a stall shows after the switch) and
the slowest request answered in that window (what a typist waits for at worst). The same gap
measured over ``--baseline`` seconds before any swap is the baseline: on a busy CPU it is the
latency of one request, which is the least a gap can be.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import statistics
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from suggest_ls.backends.models import embedded_model_path
from suggest_ls.backends.quantize import quantize
from suggest_ls.bench.common import machine, pcts, table, write_json
from suggest_ls.harness.raw import RawServer

URI = "file:///bench/swap.py"


class Driver(threading.Thread):
    """Sends one inline completion after another until stopped; records (sent, answered, ok)."""

    def __init__(self, server: RawServer, head: str) -> None:
        super().__init__(name="swap-driver", daemon=True)
        self.server = server
        self.head = head
        self.line = head.count("\n") + 1
        self.stop = threading.Event()
        self.answers: list[tuple[float, float, bool]] = []

    def text(self, version: int) -> str:
        """The document at ``version``: the head, then a function whose name changes with every edit."""
        return f"{self.head}def add{version}(a, b):\n    return "

    def run(self) -> None:
        """Edit the function name, ask for a suggestion, repeat."""
        version = 1
        while not self.stop.is_set():
            version += 1
            self.server.change(URI, version, [{"text": self.text(version)}])
            sent = time.perf_counter()
            answer = self.server.inline(URI, self.line, 11, invoked=True, timeout=120)
            items = (answer.get("result") or {}).get("items") or []
            self.answers.append((sent, time.perf_counter(), bool(items) and "error" not in answer))


def document_head(lines: int) -> str:
    """The first ``lines`` lines of a standard library module, so prompts are as long as in real files."""
    if lines <= 0:
        return ""
    source = inspect.getsource(textwrap).splitlines(keepends=True)[:lines]
    return "".join(source) + "\n\n"


def longest_gap(answers: list[tuple[float, float, bool]], start: float, end: float) -> float:
    """The longest time in [start, end] without a successful answer."""
    times = [start, *sorted(done for _, done, ok in answers if ok and start <= done <= end), end]
    return max(b - a for a, b in itertools.pairwise(times))


def main(argv: list[str], model: str = "") -> int:
    """Run the benchmark; print a table and write JSON."""
    p = argparse.ArgumentParser(prog="suggest-ls bench swap", description=__doc__)
    p.add_argument("--swaps", type=int, default=4)
    p.add_argument("--type", default="Q4_0", help="quantization of the second model (default Q4_0)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds of requests between and after swaps")
    p.add_argument(
        "--baseline",
        type=float,
        default=6.0,
        help="seconds of requests before the first swap, for the baseline gap (about a swap and its settle time)",
    )
    p.add_argument(
        "--lines",
        type=int,
        default=100,
        help="lines of real code above the typed function (textwrap.py's first ones; 0: the function alone)",
    )
    p.add_argument("--json", default="bench/results/swap.json")
    args = p.parse_args(argv)
    first = Path(model) if model else embedded_model_path()
    workdir = Path(tempfile.mkdtemp(prefix="suggest-ls-swap-"))
    second = workdir / f"{first.stem}-{args.type.lower()}.gguf"
    print(f"quantizing {first.name} to {args.type} ...", flush=True)
    quantize(first, second, args.type, allow_requantize=True)
    server = RawServer(workdir=str(workdir))
    swaps: list[dict[str, Any]] = []
    try:
        # At most 8 tokens a suggestion: an occasional 48-token answer would be a long request
        # whichever model serves, and would hide what the swap itself costs.
        server.initialize({"temperature": 0, "debounceMs": 0, "maxTokens": 8, "model": str(first)})
        driver = Driver(server, document_head(args.lines))
        server.open(URI, driver.text(1))
        driver.start()
        deadline = time.monotonic() + 120
        while len(driver.answers) < 6 and time.monotonic() < deadline:  # warm: the first requests are cold
            time.sleep(0.05)
        base_start = driver.answers[1][1] if len(driver.answers) > 1 else time.perf_counter()
        time.sleep(args.baseline)
        base_end = time.perf_counter()
        for i in range(args.swaps):
            target = second if i % 2 == 0 else first
            start = time.perf_counter()
            reply = server.result("suggest/reloadModel", {"model": str(target)}, timeout=600)
            end = time.perf_counter()
            time.sleep(args.settle)
            swaps.append({"to": target.name, "start": start, "end": end, "reply": reply})
        driver.stop.set()
        driver.join(120)
        status = server.result("suggest/status", {})
    finally:
        server.shutdown()
    answers = driver.answers
    rows = []
    results = []
    for i, s in enumerate(swaps):
        during = [a for a in answers if s["start"] <= a[1] <= s["end"]]
        window_end = swaps[i + 1]["start"] if i + 1 < len(swaps) else s["end"] + args.settle
        window = [a for a in answers if s["start"] <= a[1] <= window_end]
        failed = [a for a in window if not a[2]]
        gap = longest_gap(answers, s["start"], window_end)
        slowest = max((done - sent for sent, done, _ in window), default=0.0)
        results.append(
            {
                "to": s["to"],
                "ok": bool(s["reply"].get("ok")),
                "swap_s": round(s["end"] - s["start"], 3),
                "answered_during": len(during),
                "failed": len(failed),
                "longest_gap_s": round(gap, 3),
                "slowest_request_s": round(slowest, 3),
            }
        )
        r = results[-1]
        rows.append([i + 1, s["to"], r["swap_s"], len(during), len(failed), r["longest_gap_s"], r["slowest_request_s"]])
    baseline = longest_gap(answers, base_start, base_end)
    latency = pcts([1000 * (done - sent) for sent, done, ok in answers[2:] if ok and done < base_end])
    print(table(["swap", "to", "took s", "answered during", "failed", "longest gap s", "slowest request s"], rows))
    gaps = [r["longest_gap_s"] for r in results]
    print(f"longest gap over the swaps: median {statistics.median(gaps):.2f} s, max {max(gaps):.2f} s")
    print(f"before any swap: longest gap {baseline:.2f} s, request latency p50 {latency['p50']} ms (n={latency['n']})")
    print(
        f"all requests: {len(answers)}, failed: {sum(1 for a in answers if not a[2])}; swaps counted: {status['swaps']}"
    )
    write_json(
        args.json,
        {
            "machine": machine(),
            "models": [first.name, second.name],
            "swaps": results,
            "baseline_longest_gap_s": round(baseline, 3),
            "baseline_latency_ms": latency,
            "requests": len(answers),
            "failed": sum(1 for a in answers if not a[2]),
            "longest_gap_s": pcts([r["longest_gap_s"] for r in results], 3),
            "slowest_request_s": pcts([r["slowest_request_s"] for r in results], 3),
            # perf_counter times (seconds, the same clock as the server's): requests and swaps, to line up with logs
            "timeline": {
                "requests": [[round(sent, 3), round(done, 3), ok] for sent, done, ok in answers],
                "swaps": [[round(s["start"], 3), round(s["end"], 3)] for s in swaps],
            },
        },
    )
    print(f"wrote {args.json}")
    return 0 if all(r["ok"] for r in results) and not any(not a[2] for a in answers) else 1
