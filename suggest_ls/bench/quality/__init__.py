"""``suggest-ls bench quality``: HumanEval infilling through the real LSP server, tests executed.

Tasks follow the FIM paper's construction (InCoder's code): the canonical solution's trailing
whitespace is stripped and it is split into lines; single-line tasks mask each non-blank line in
turn (1033), multi-line tasks every span that starts and ends on a non-blank line (5815). The
editor document is ``prefix + "\\n" + suffix`` with the cursor on the empty line where the hole is;
the program run is ``prefix + middle + "\\n" + suffix + test + check(entry_point)``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from suggest_ls.bench.common import Progress, machine, write_json
from suggest_ls.bench.quality.arms import BENCH_SETTINGS, RawArm, ServerArm
from suggest_ls.bench.quality.report import plot, print_report, task_rows
from suggest_ls.bench.quality.scoring import Outcome, run_program, summarize
from suggest_ls.bench.quality.tasks import build_tasks, load_problems, select
from suggest_ls.settings import parse_pairs


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Arguments of ``suggest-ls bench quality``."""
    p = argparse.ArgumentParser(prog="suggest-ls bench quality", description=__doc__.split("\n")[0])
    p.add_argument("--sets", default="single", help="comma list of: single, multi")
    p.add_argument("--stride", type=int, default=1, help="take every N-th task (quick runs)")
    p.add_argument("--limit", type=int, default=0, help="at most N tasks per set (after the stride)")
    p.add_argument(
        "--offset", type=int, default=0, help="start the stride at this task (another slice of the same size)"
    )
    p.add_argument("--arms", default="pipeline,raw", help="comma list of: pipeline, raw")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a suggest-ls setting")
    p.add_argument("--workers", type=int, default=2, help="test programs run at once")
    p.add_argument("--out", default="bench-results/quality.json", help="where the JSON goes")
    p.add_argument("--plot", default="", help="PNG path (default: next to the JSON)")
    return p.parse_args(argv)


async def run(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """Run every selected arm on every selected set; return the report."""
    problems = load_problems()
    sets = {
        name: select(build_tasks(problems, name), args.stride, args.limit, args.offset) for name in args.sets.split(",")
    }
    arm_names = [a for a in args.arms.split(",") if a]
    settings = parse_pairs(args.set)
    workdir = Path(tempfile.mkdtemp(prefix="suggest-ls-quality-"))
    arms: dict[str, ServerArm | RawArm] = {}
    for name in arm_names:
        arms[name] = ServerArm(model, settings, workdir) if name == "pipeline" else RawArm(model)
        await arms[name].start()
    server = arms.get("pipeline")
    status = server.status if isinstance(server, ServerArm) else {}
    pool = ThreadPoolExecutor(max(1, args.workers))
    loop = asyncio.get_running_loop()
    report: dict[str, Any] = {
        "benchmark": "quality",
        "machine": machine(),
        "model": model or "embedded",
        "settings": {**BENCH_SETTINGS, **settings},
        "server": {k: status.get(k) for k in ("template", "model", "device", "quantization")},
        "stride": args.stride,
        "offset": args.offset,
        "limit": args.limit,
        "sets": {},
        "tasks": {},
    }
    try:
        for set_name, tasks in sets.items():
            outcomes: dict[str, list[Outcome]] = {a: [] for a in arms}
            pending: list[tuple[str, Outcome, asyncio.Future[bool]]] = []
            progress = Progress(f"quality {set_name}", len(tasks))
            for i, task in enumerate(tasks):
                for name, arm in arms.items():
                    out = await arm.complete(task)
                    outcomes[name].append(out)
                    if out.program is not None:
                        pending.append((name, out, loop.run_in_executor(pool, run_program, out.program)))
                for _, done_out, fut in [p for p in pending if p[2].done()]:
                    done_out.passed = fut.result()
                pending = [p for p in pending if not p[2].done()]
                note = "  ".join(
                    f"{n} {100 * sum(o.passed for o in os_) / max(1, len(os_)):.1f}%" for n, os_ in outcomes.items()
                )
                progress.update(i + 1, note)
            for _name, out, fut in pending:
                out.passed = await fut
            progress.close()
            report["sets"][set_name] = {name: summarize(os_) for name, os_ in outcomes.items()}
            report["tasks"][set_name] = task_rows(tasks, outcomes)
    finally:
        for arm in arms.values():
            await arm.close()
        pool.shutdown()
    return report


def main(argv: list[str], model: str = "") -> int:
    """Entry point of ``suggest-ls bench quality``."""
    args = parse_args(argv)
    report = asyncio.run(run(args, model))
    print_report(report)
    write_json(args.out, report)
    png = args.plot or str(Path(args.out).with_suffix(".png"))
    try:
        plot(report, png)
        print(f"wrote {args.out} and {png}")
    except ImportError:  # the plot is optional (pip install 'suggest-ls[bench]')
        print(f"wrote {args.out} (no plot: matplotlib is not installed)")
    return 0
