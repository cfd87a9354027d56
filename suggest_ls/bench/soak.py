"""``suggest-ls bench soak``: thousands of completion requests with edits and cancels against a real server.

A simulated editor types into ``--docs`` documents (stdlib sources) through a real
``suggest-ls --stdio`` subprocess: each keystroke is a didChange, a ``suggest/documentState``
barrier (the server's hash of the document, checked against the client's copy) and an inline
completion request; some requests are cancelled. At the end:

- every request answered exactly once;
- stale answers: a suggestion that arrived after the server had acknowledged a newer version
  of its document (the barrier's answer came first) — must be 0;
- document sync: every barrier hash equals the client's text at that version;
- resident memory growth of the server after warm-up (sampled with psutil);
- exceptions / ERROR lines in the server log.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from suggest_ls.harness.raw import RawServer
from suggest_ls.harness.reference import ref_apply, ref_lines, ref_units, sha
from suggest_ls.harness.wire import INLINE

SOURCES = [
    "json/decoder.py",
    "json/encoder.py",
    "textwrap.py",
    "shlex.py",
    "fnmatch.py",
    "bisect.py",
    "heapq.py",
    "glob.py",
]
WORDS = ["value", "result", "self", "return", "None", "for", "item", "in", "range", "(", ")", ":", ".", ",", "=", " "]


class Doc:
    """The client's copy of one document and its cursor."""

    def __init__(self, uri: str, text: str, rng: random.Random) -> None:
        self.uri, self.text, self.version, self.rng = uri, text, 1, rng
        self.shas: dict[int, str] = {1: sha(text)}
        self.line, self.char = 0, 0
        self.jump()

    def jump(self) -> None:
        """Put the cursor at the end of a random non-blank line."""
        lines = ref_lines(self.text)
        candidates = [i for i, (s, e) in enumerate(lines) if self.text[s:e].strip()] or [0]
        self.line = self.rng.choice(candidates)
        s, e = lines[self.line]
        self.char = ref_units(self.text[s:e], "utf-16")

    def edit(self) -> dict[str, Any]:
        """One keystroke-like edit at the cursor; returns the LSP content change."""
        r = self.rng.random()
        if r < 0.05:
            self.jump()
        lines = ref_lines(self.text)
        s, e = lines[self.line]
        line_text = self.text[s:e]
        if r < 0.25 and self.char > 0:  # backspace
            start, end, new = (self.line, self.char - 1), (self.line, self.char), ""
            self.char -= 1
        elif r < 0.30:  # newline plus the line's indentation
            indent = line_text[: len(line_text) - len(line_text.lstrip())]
            start = end = (self.line, self.char)
            new = "\n" + indent
            self.line, self.char = self.line + 1, len(indent)
        else:
            new = self.rng.choice(WORDS)
            if new.isalpha() and line_text[: self.char][-1:].isalnum():
                new = " " + new
            start = end = (self.line, self.char)
            self.char += len(new)
        self.text = ref_apply(self.text, start, end, new)
        self.version += 1
        self.shas[self.version] = sha(self.text)
        rng = {"start": {"line": start[0], "character": start[1]}, "end": {"line": end[0], "character": end[1]}}
        return {"range": rng, "text": new}


def _source(name: str, lines: int) -> str:
    path = Path(json.__file__).parent.parent / name
    return "".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:lines])


def _parser() -> argparse.ArgumentParser:
    """Arguments of ``suggest-ls bench soak``."""
    p = argparse.ArgumentParser(prog="suggest-ls bench soak")
    p.add_argument("--requests", type=int, default=10_000, help="completion requests to send")
    p.add_argument("--docs", type=int, default=8)
    p.add_argument("--rate", type=float, default=40.0, help="keystrokes per second, all documents together")
    p.add_argument("--in-flight", type=int, default=16, help="most completion requests outstanding")
    p.add_argument("--cancel", type=float, default=0.1, help="share of requests cancelled with $/cancelRequest")
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--prompt-tokens", type=int, default=256, help="promptTokens setting (small keeps a CPU run short)")
    p.add_argument("--parallel", type=int, default=8, help="parallel slots (one per document keeps each KV cache)")
    p.add_argument("--lines", type=int, default=150, help="lines of each source document")
    p.add_argument("--warmup", type=float, default=0.2, help="share of the run before the memory baseline")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--drain-timeout", type=float, default=1800.0, help="seconds allowed for the last answers")
    p.add_argument("--out", default="bench-results/soak.json")
    return p


@dataclass
class Sent:
    """What the simulated editor sent: completion requests, barriers and cancels, and the RSS samples."""

    requests: dict[Any, tuple[Doc, int]] = field(default_factory=dict)  # completion id -> (doc, version)
    barriers: dict[Any, tuple[Doc, int]] = field(default_factory=dict)  # documentState id -> (doc, version sent)
    cancelled: set[Any] = field(default_factory=set)
    rss: list[tuple[int, int]] = field(default_factory=list)  # (requests sent, resident bytes)
    base_rss: int = 0  # after the warm-up share of the run


def _type(
    srv: RawServer, docs: list[Doc], args: argparse.Namespace, rng: random.Random, proc: psutil.Process, started: float
) -> Sent:
    """Type into the documents at ``--rate``, keeping at most ``--in-flight`` completions outstanding."""
    out = Sent()
    warm = int(args.requests * args.warmup)
    period = 1.0 / args.rate
    t_next = time.perf_counter()
    outstanding: set[Any] = set()
    for n in range(args.requests):
        while True:
            outstanding = {i for i in outstanding if i not in srv.responses}
            if len(outstanding) < args.in_flight:
                break
            time.sleep(0.005)
        doc = rng.choice(docs)
        srv.change(doc.uri, doc.version + 1, [doc.edit()])
        out.barriers[srv.request("suggest/documentState", {"uri": doc.uri})] = (doc, doc.version)
        invoked = rng.random() < 0.1
        msg_id = srv.request(INLINE, srv.inline_params(doc.uri, doc.line, doc.char, invoked))
        out.requests[msg_id] = (doc, doc.version)
        outstanding.add(msg_id)
        if rng.random() < args.cancel:
            target = rng.choice(sorted(outstanding))
            srv.notify("$/cancelRequest", {"id": target})
            out.cancelled.add(target)
        if n % 250 == 0 or n == warm:
            out.rss.append((n, proc.memory_info().rss))
            if n == warm:
                out.base_rss = out.rss[-1][1]
        if n and n % 1000 == 0:
            print(
                f"  {n} requests, {time.perf_counter() - started:.0f} s, rss {out.rss[-1][1] / 2**20:.0f} MiB",
                file=sys.stderr,
            )
        t_next += period
        delay = t_next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            t_next = time.perf_counter()
    return out


def _check(srv: RawServer, sent: Sent) -> tuple[Counter[str], int, int]:
    """Every answer checked: the outcomes, stale suggestions and barriers out of sync with the client."""
    outcomes: Counter[str] = Counter()
    stale = 0
    last_ack: dict[str, list[tuple[int, int]]] = {}  # uri -> [(arrival, version acknowledged)]
    desync = 0
    for b_id, (doc, version) in sent.barriers.items():
        state = srv.responses[b_id].get("result") or {}
        if state.get("version") != version or state.get("sha256") != doc.shas[version]:
            desync += 1
        last_ack.setdefault(doc.uri, []).append((srv.arrival[b_id], version))
    for msg_id, (doc, version) in sent.requests.items():
        answer = srv.responses[msg_id]
        if "error" in answer:
            outcomes["cancelled" if answer["error"]["code"] == -32800 else f"error {answer['error']['code']}"] += 1
            continue
        items = answer["result"]["items"]
        outcomes["suggestion" if items else "empty"] += 1
        arrived = srv.arrival[msg_id]
        if items and any(a < arrived and v > version for a, v in last_ack.get(doc.uri, [])):
            stale += 1
    return outcomes, stale, desync


def main(argv: list[str], model: str = "") -> int:
    """Run the soak and write ``bench-results/soak.json``."""
    args = _parser().parse_args(argv)
    rng = random.Random(args.seed)
    options = {
        "debounceMs": 0,
        "maxTokens": args.max_tokens,
        "maxTokensMultiline": args.max_tokens,
        "promptTokens": args.prompt_tokens,
        "parallel": args.parallel,
    }
    srv = RawServer(("--model", model) if model else ())
    started = time.perf_counter()
    try:
        srv.initialize(options)
        proc = psutil.Process(srv.proc.pid)
        docs = [
            Doc(f"file:///soak/{i}_{Path(n).name}", _source(n, args.lines), rng)
            for i, n in enumerate(SOURCES[: args.docs])
        ]
        for d in docs:
            srv.open(d.uri, d.text)
        # warm-up: one full generation per document, so every slot's KV cache has been written once
        # (first-touch pages of the preallocated cache are not growth)
        warmups = [srv.request(INLINE, srv.inline_params(d.uri, d.line, d.char, True)) for d in docs]
        for msg_id in warmups:
            srv.wait(msg_id, timeout=args.drain_timeout)
        rss_start = proc.memory_info().rss
        sent = _type(srv, docs, args, rng, proc, started)
        requests, barriers, cancelled, rss, base_rss = (
            sent.requests,
            sent.barriers,
            sent.cancelled,
            sent.rss,
            sent.base_rss,
        )
        sent_s = time.perf_counter() - started
        drain_deadline = time.monotonic() + args.drain_timeout  # the last requests of each document run the model
        for msg_id in list(requests) + list(barriers):
            srv.wait(msg_id, timeout=max(1.0, drain_deadline - time.monotonic()))
        drain_s = time.perf_counter() - started - sent_s
        status = srv.result("suggest/status", {})
        rss.append((args.requests, proc.memory_info().rss))
        outcomes, stale, desync = _check(srv, sent)
        unanswered, twice = srv.unanswered(), srv.answered_twice()
        alive = srv.alive()
        code = srv.shutdown()
        log = srv.log_text()
        tracebacks = log.count("Traceback")
        error_lines = [ln for ln in log.splitlines() if " ERROR " in ln]
        end_rss = rss[-1][1]
        growth = (end_rss - base_rss) / base_rss if base_rss else 0.0
    finally:
        if srv.alive():
            srv.kill()
    result = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {psutil.cpu_count()} cores",
            "options": options,
            "args": vars(args),
        },
        "requests": len(requests),
        "documentState_barriers": len(barriers),
        "cancel_notifications": len(cancelled),
        "seconds": round(sent_s, 1),
        "drain_seconds": round(drain_s, 1),
        "outcomes": dict(outcomes),
        "unanswered": len(unanswered),
        "answered_twice": len(twice),
        "stale_answers": stale,
        "document_desync": desync,
        "rss_mib": {
            "after_first_generations": round(rss_start / 2**20, 1),
            "after_warmup": round(base_rss / 2**20, 1),
            "end": round(end_rss / 2**20, 1),
        },
        "rss_growth_pct": round(100 * growth, 2),
        "rss_samples_mib": [(n, round(r / 2**20, 1)) for n, r in rss],
        "tracebacks_in_log": tracebacks,
        "error_lines_in_log": error_lines[:20],
        "server_alive_at_end": alive,
        "exit_code": code,
        "server_outcomes": status.get("outcomes"),
    }
    ok = (
        not unanswered
        and not twice
        and stale == 0
        and desync == 0
        and growth < 0.05
        and tracebacks == 0
        and not error_lines
        and alive
        and code == 0
    )
    result["pass"] = ok
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"soak: {len(requests)} completion requests (+{len(barriers)} documentState, {len(cancelled)} cancels) "
        f"over {args.docs} documents in {sent_s:.0f} s (+{drain_s:.0f} s for the last answers)\n"
        f"  answers: {dict(outcomes)}\n"
        f"  unanswered {len(unanswered)}, answered twice {len(twice)}, stale {stale}, document desync {desync}\n"
        f"  RSS after warm-up {base_rss / 2**20:.1f} MiB, end {end_rss / 2**20:.1f} MiB, growth {100 * growth:.2f} %\n"
        f"  log: {tracebacks} tracebacks, {len(error_lines)} ERROR lines; exit code {code}\n"
        f"  {'PASS' if ok else 'FAIL'}; wrote {out}"
    )
    return 0 if ok else 1
