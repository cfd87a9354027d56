"""``suggest-ls bench swap``: the service gap while the model is swapped under continuous requests.

A client types into one document through a real ``suggest-ls --stdio`` subprocess, one inline
completion request at a time (each after an edit, so the model runs every time), while the
benchmark swaps the model ``--swaps`` times with ``suggest/reloadModel``, alternating between the
embedded model and a re-quantized copy of it (``--type``, made with ``suggest-ls quantize``'s
function). Per swap: how long it took (load + smoke), requests answered meanwhile, failures, and
the longest gap in service (the longest time without a successful answer, from the swap's start
to one second after its end). The same gap measured before any swap is the baseline: on a busy
CPU it is the latency of one request, which is the least a gap can be.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from suggest_ls.bench.common import machine, pcts, table, write_json
from suggest_ls.bench.rawlsp import RawServer
from suggest_ls.models import embedded_model_path
from suggest_ls.quantize import quantize

URI = "file:///bench/swap.py"


class Driver(threading.Thread):
    """Sends one inline completion after another until stopped; records (sent, answered, ok)."""

    def __init__(self, server: RawServer) -> None:
        super().__init__(name="swap-driver", daemon=True)
        self.server = server
        self.stop = threading.Event()
        self.answers: list[tuple[float, float, bool]] = []

    def run(self) -> None:
        """Edit the function name, ask for a suggestion, repeat."""
        version = 1
        while not self.stop.is_set():
            version += 1
            text = f"def add{version}(a, b):\n    return "
            self.server.change(URI, version, [{"text": text}])
            sent = time.perf_counter()
            answer = self.server.inline(URI, 1, 11, invoked=True, timeout=120)
            items = (answer.get("result") or {}).get("items") or []
            self.answers.append((sent, time.perf_counter(), bool(items) and "error" not in answer))


def longest_gap(answers: list[tuple[float, float, bool]], start: float, end: float) -> float:
    """The longest time in [start, end] without a successful answer."""
    times = [start, *sorted(done for _, done, ok in answers if ok and start <= done <= end), end]
    return max(b - a for a, b in itertools.pairwise(times))


def main(argv: list[str], model: str = "") -> int:
    """Run the benchmark; print a table and write JSON."""
    p = argparse.ArgumentParser(prog="suggest-ls bench swap", description=__doc__)
    p.add_argument("--swaps", type=int, default=4)
    p.add_argument("--type", default="Q4_0", help="quantization of the second model (default Q4_0)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds of requests before, between and after swaps")
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
        server.initialize({"temperature": 0, "debounceMs": 0, "model": str(first)})
        server.open(URI, "def add1(a, b):\n    return ")
        driver = Driver(server)
        driver.start()
        deadline = time.monotonic() + 120
        while len(driver.answers) < 6 and time.monotonic() < deadline:  # warm: the first requests are cold
            time.sleep(0.05)
        base_start = driver.answers[1][1] if len(driver.answers) > 1 else time.perf_counter()
        time.sleep(args.settle)
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
        window_end = s["end"] + 1.0
        failed = [a for a in answers if s["start"] <= a[1] <= window_end and not a[2]]
        gap = longest_gap(answers, s["start"], window_end)
        results.append(
            {
                "to": s["to"],
                "ok": bool(s["reply"].get("ok")),
                "swap_s": round(s["end"] - s["start"], 3),
                "answered_during": len(during),
                "failed": len(failed),
                "longest_gap_s": round(gap, 3),
            }
        )
        rows.append([i + 1, s["to"], results[-1]["swap_s"], len(during), len(failed), results[-1]["longest_gap_s"]])
    baseline = longest_gap(answers, base_start, base_end)
    latency = pcts([1000 * (done - sent) for sent, done, ok in answers[2:] if ok and done < base_end])
    print(table(["swap", "to", "took s", "answered during", "failed", "longest gap s"], rows))
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
        },
    )
    print(f"wrote {args.json}")
    return 0 if all(r["ok"] for r in results) and not any(not a[2] for a in answers) else 1
