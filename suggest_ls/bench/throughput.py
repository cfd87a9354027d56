"""``suggest-ls bench throughput``: N documents completing at once, batched slots vs one slot.

Two engines on the same model run side by side in one process: one with ``parallel`` slots
(batched decoding, every document keeps its KV cache) and one with ``parallel=1`` (jobs take
turns in one sequence, as a single-slot server does). For each N, N documents (prompts cut
from different standard-library modules) ask for a completion at the same moment; each
generates a fixed number of tokens. Reported: aggregate generated tokens per second (wall
time from the submissions to the last answer, prompt work included where the mode needs it),
the mean time per decode step, and the ratio batched / one slot. The documents are completed
once before timing, so each mode starts from whatever cache it can keep.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from suggest_ls.backends.contract import GenRequest, GenResult, StopRule
from suggest_ls.backends.llama.engine import Engine
from suggest_ls.backends.llama.loading import EngineConfig
from suggest_ls.bench.common import Progress, machine, table, write_json
from suggest_ls.harness.typist import stdlib_file

MODULES = (
    "textwrap.py",
    "json/decoder.py",
    "csv.py",
    "fractions.py",
    "shlex.py",
    "string.py",
    "heapq.py",
    "bisect.py",
    "colorsys.py",
    "glob.py",
)
NEVER_STOP = StopRule(multiline=True, base_indent=-1, max_lines=10_000)


def prompts(n: int, chars: int) -> list[str]:
    """``n`` prompts of about ``chars`` characters, each from a different module, cut at a line end."""
    out: list[str] = []
    for name in (MODULES * (n // len(MODULES) + 1))[:n]:
        text = stdlib_file(name).read_text(encoding="utf-8")
        middle = len(text) // 2
        end = text.find("\n", middle) + 1 or len(text)
        out.append(text[max(0, end - chars) : end] + f"# {len(out)}\n")
    return out


def run_all(engine: Engine, reqs: list[GenRequest], timeout: float = 900) -> tuple[float, list[GenResult]]:
    """Submit all requests at once; wall seconds until the last answer and the results."""
    results: dict[int, GenResult] = {}
    left = threading.Semaphore(0)

    def answer(i: int) -> Callable[[GenResult], None]:
        def done(result: GenResult) -> None:
            results[i] = result
            left.release()

        return done

    t0 = time.perf_counter()
    for i, req in enumerate(reqs):
        engine.submit(req, answer(i))
    for _ in reqs:
        if not left.acquire(timeout=timeout):
            raise TimeoutError("engine did not answer")
    return time.perf_counter() - t0, [results[i] for i in range(len(reqs))]


def measure(engine: Engine, n: int, tokens: int, chars: int, repeats: int) -> dict[str, Any]:
    """Aggregate tokens/s for ``n`` documents at once (median of ``repeats``)."""
    texts = prompts(n, chars)
    reqs = [GenRequest(f"doc{i}", p, max_tokens=tokens, temperature=0.0, rule=NEVER_STOP) for i, p in enumerate(texts)]
    run_all(engine, reqs)  # warm: prompts evaluated once, cached where the engine can keep them
    rates, gen_rates, steps = [], [], []
    for _ in range(repeats):
        calls, decode_s = engine.stats["decode_calls"], engine.stats["decode_s"]
        wall, results = run_all(engine, reqs)
        generated = sum(r.generated_tokens for r in results)
        rates.append(generated / wall)
        busy = _union_ms([(r.ttft_ms, r.total_ms) for r in results])
        gen_rates.append(sum(r.generated_tokens - 1 for r in results) / (busy / 1000) if busy else 0.0)
        made = engine.stats["decode_calls"] - calls
        steps.append((engine.stats["decode_s"] - decode_s) / made * 1000 if made else 0.0)
    return {
        "tokens_per_s": round(statistics.median(rates), 1),
        "tokens_per_s_all": [round(r, 1) for r in rates],
        "generation_tokens_per_s": round(statistics.median(gen_rates), 1),
        "ms_per_step": round(statistics.median(steps), 1),
        "evaluated_per_request": round(statistics.mean(r.evaluated_tokens for r in results), 1),
    }


def _union_ms(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of intervals (the time some job was generating)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``suggest-ls bench throughput``."""
    p = argparse.ArgumentParser(prog="suggest-ls bench throughput", description=__doc__.split("\n")[0])
    p.add_argument("--docs", default="1,4,8", help="comma list of N (documents completing at once)")
    p.add_argument("--tokens", type=int, default=32, help="tokens generated per document")
    p.add_argument("--prompt-chars", type=int, default=1200, help="prompt length per document (characters)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per point (the median is reported)")
    p.add_argument("--parallel", type=int, default=0, help="slots of the batched engine (default: the largest N)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: tuned by the engine)")
    p.add_argument("--out", default="bench-results/throughput.json", help="where the JSON goes")
    return p


def main(argv: list[str], model: str = "") -> int:
    """Run the throughput benchmark."""
    from suggest_ls.backends.models import resolve_model

    args = build_parser().parse_args(argv)
    ns = [int(x) for x in args.docs.split(",") if x.strip()]
    parallel = args.parallel or max(ns)
    path = resolve_model(model).path
    ctx = max(1024, args.prompt_chars // 2 + args.tokens + 64)
    engines = {
        "batched": Engine(EngineConfig(path, context_size=ctx, parallel=parallel, threads=args.threads)).start(),
        "one_slot": Engine(EngineConfig(path, context_size=ctx, parallel=1, threads=args.threads)).start(),
    }
    for e in engines.values():
        e.ready.result(timeout=300)
    points: list[dict[str, Any]] = []
    progress = Progress("throughput", len(ns) * 2)
    try:
        for n in ns:
            point: dict[str, Any] = {"docs": n}
            for name, engine in engines.items():
                progress.update(progress.done, f"N={n} {name}")
                point[name] = measure(engine, n, args.tokens, args.prompt_chars, args.repeats)
                progress.update(progress.done + 1, f"N={n} {name}")
            point["ratio"] = round(point["batched"]["tokens_per_s"] / max(1e-9, point["one_slot"]["tokens_per_s"]), 2)
            point["generation_ratio"] = round(
                point["batched"]["generation_tokens_per_s"] / max(1e-9, point["one_slot"]["generation_tokens_per_s"]), 2
            )
            points.append(point)
    finally:
        progress.close()
        for e in engines.values():
            e.close()
    rows = [
        [
            p["docs"],
            p["batched"]["tokens_per_s"],
            p["one_slot"]["tokens_per_s"],
            p["ratio"],
            p["batched"]["generation_tokens_per_s"],
            p["one_slot"]["generation_tokens_per_s"],
            p["generation_ratio"],
            p["batched"]["ms_per_step"],
            p["one_slot"]["ms_per_step"],
        ]
        for p in points
    ]
    header = ["N docs", "batched tok/s", "parallel=1 tok/s", "ratio"]
    header += ["gen-only batched", "gen-only parallel=1", "gen ratio", "batched ms/step", "parallel=1 ms/step"]
    print(table(header, rows))
    print("(tok/s: generated tokens / wall time, prompt work included; gen-only: while some job was generating)")
    report = {
        "benchmark": "throughput",
        "machine": machine(),
        "config": {
            "tokens": args.tokens,
            "prompt_chars": args.prompt_chars,
            "repeats": args.repeats,
            "parallel": parallel,
            "threads": args.threads,
            "model": str(path),
        },
        "points": points,
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0
