"""``suggest-ls bench fuzz``: hypothesis fuzzing of framing, documents, LSP parameters and edit sync.

Targets (each runs ``--cases`` examples; the total is printed and written as JSON):

- ``framing``: random valid messages split at random chunk boundaries, with garbage in between,
  through ``FrameParser``: every message framed correctly after garbage comes out intact.
- ``document``: random edit sequences applied to ``Document`` and to an independent reference
  model (UTF-16 counted by encoding, lines split by hand): same text and line index after each edit.
- ``lsp``: random and mutated messages (bad JSON, wrong types, odd ids, huge numbers, surrogates)
  sent to a real server subprocess: every request gets exactly one answer and the server keeps
  serving.
- ``sync``: random edit sequences sent as didChange to a real server: its copy (hash from
  ``suggest/documentState``) equals the client's after each sequence.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from suggest_ls.harness.properties import document_property, edit_sequences, framing_property, json_values
from suggest_ls.harness.reference import ref_apply, sha
from suggest_ls.harness.wire import frame
from suggest_ls.lsp.framing import valid_id

LSP_METHODS = [
    "textDocument/inlineCompletion",
    "textDocument/completion",
    "textDocument/didOpen",
    "textDocument/didChange",
    "textDocument/didClose",
    "suggest/status",
    "suggest/documentState",
    "workspace/didChangeConfiguration",
    "$/cancelRequest",
    "unknown/method",
]
FUZZ_URI = "file:///fuzz/doc.py"


@st.composite
def mutated(draw: Any, value: Any) -> Any:
    """``value`` with a few fields dropped, retyped or replaced by extreme values."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        choice = draw(st.integers(0, 3))
        copy = dict(value)
        if choice == 0:
            del copy[key]
        elif choice == 1:
            copy[key] = draw(json_values)
        elif choice == 2:
            copy[key] = draw(st.sampled_from([-1, 2**31, 2**64, 1.5, "", "\ud800", "x" * 300, [], {}, None, True]))
        else:
            copy[key] = draw(mutated(value[key]))
        return copy
    return value


def valid_params(method: str, n: int) -> Any:
    """Well-formed parameters for ``method`` on the fuzz document."""
    pos = {"line": n % 5, "character": n % 17}
    if method in ("textDocument/inlineCompletion", "textDocument/completion"):
        return {"textDocument": {"uri": FUZZ_URI}, "position": pos, "context": {"triggerKind": 1}}
    if method == "textDocument/didOpen":
        return {
            "textDocument": {"uri": FUZZ_URI, "languageId": "python", "version": n, "text": "def f(x):\n    return "}
        }
    if method == "textDocument/didChange":
        change = {"range": {"start": pos, "end": pos}, "text": "y"}
        return {"textDocument": {"uri": FUZZ_URI, "version": n}, "contentChanges": [change]}
    if method == "textDocument/didClose":
        return {"textDocument": {"uri": FUZZ_URI}}
    if method == "suggest/documentState":
        return {"uri": FUZZ_URI}
    if method == "workspace/didChangeConfiguration":
        return {"settings": {"suggestLs": {"maxTokens": 4, "debounceMs": 0}}}
    if method == "$/cancelRequest":
        return {"id": n}
    return {}


@st.composite
def lsp_messages(draw: Any) -> tuple[bytes, Any]:
    """A raw message (bytes) and the request id the server must answer (None for none)."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(min_size=1, max_size=60)).replace(b":", b"") + b"\r\n", None
    if kind == 1:
        body = draw(st.binary(max_size=60))
        return frame(body), "null-or-none"
    method = draw(st.sampled_from([*LSP_METHODS, "initialize", "shutdown"][: len(LSP_METHODS) + (kind == 9)]))
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": draw(mutated(valid_params(method, kind)))}
    request = method not in (
        "textDocument/didOpen",
        "textDocument/didChange",
        "textDocument/didClose",
        "$/cancelRequest",
    )
    if kind == 2:
        msg = draw(mutated(msg))
    if request or kind == 3:
        msg["id"] = draw(st.one_of(st.integers(10**6, 10**9), st.text(min_size=1, max_size=10), st.just(True)))
    body = json.dumps(msg).encode()
    # JSON-RPC: a message with a method and a usable id is a request and gets one answer, even when broken
    answer = msg.get("id") if "method" in msg and valid_id(msg.get("id")) else None
    return frame(body), answer


def _settings(cases: int, seed: int | None) -> settings:
    return settings(
        max_examples=cases,
        deadline=None,
        database=None,
        derandomize=seed is None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


def run_lsp(server: Any, cases: int, seed: int | None = None) -> dict[str, int]:
    """The ``lsp`` target against a running, initialized RawServer."""
    counts = {"messages": 0, "requests": 0}
    server.open(FUZZ_URI, "def f(x):\n    return ")

    @_settings(cases, seed)
    @given(st.lists(lsp_messages(), min_size=1, max_size=6))
    def run(batch: list[tuple[bytes, Any]]) -> None:
        ids = []
        for raw, answer in batch:
            if answer == "null-or-none":
                answer = None
            if answer is not None:
                server.sent[answer] += 1
                ids.append(answer)
            server.send_bytes(raw)
            counts["messages"] += 1
        # a barrier: a fresh request answered means everything before it was read
        state = server.result("suggest/status", {}, timeout=120)
        assert state["state"] in ("ready", "disabled", "error")
        for i in ids:
            server.wait(i, timeout=120)
        counts["requests"] += len(ids)
        assert not server.answered_twice(), server.answered_twice()

    run()
    return counts


def run_sync(server: Any, cases: int, seed: int | None = None) -> dict[str, int]:
    """The ``sync`` target: the server's copy equals the client's after random edit sequences."""
    counts = {"edits": 0, "sequences": 0}
    serial = [0]

    @_settings(cases, seed)
    @given(edit_sequences("utf-16"))
    def run(case: tuple[str, list[tuple[Any, Any, str]]]) -> None:
        text, edits = case
        serial[0] += 1
        uri = f"file:///fuzz/sync{serial[0] % 4}.py"
        server.open(uri, text, version=1)
        current, version = text, 1
        changes: list[dict[str, Any]] = []
        for p, q, new in edits:
            if p is None:
                changes.append({"text": new})
                current = new
            else:
                rng = {"start": {"line": p[0], "character": p[1]}, "end": {"line": q[0], "character": q[1]}}
                changes.append({"range": rng, "text": new})
                current = ref_apply(current, p, q, new)
        # half the time one didChange per edit, else all edits in one didChange (applied in order)
        if serial[0] % 2:
            for change in changes:
                version += 1
                server.change(uri, version, [change])
        else:
            version += 1
            server.change(uri, version, changes)
        state = server.document_state(uri)
        counts["edits"] += len(edits)
        counts["sequences"] += 1
        assert state is not None and state["version"] == version
        assert not state["outOfSync"], state
        assert state["sha256"] == sha(current), (state, len(current))
        server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})

    run()
    return counts


def main(argv: list[str], model: str = "") -> int:
    """Run the fuzz targets and write ``bench-results/fuzz.json``."""
    from suggest_ls.harness.raw import RawServer

    p = argparse.ArgumentParser(prog="suggest-ls bench fuzz")
    p.add_argument("--cases", type=int, default=2500, help="examples per target (4 targets)")
    p.add_argument("--targets", default="framing,document,lsp,sync")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: derandomized, repeatable)")
    p.add_argument("--out", default="bench-results/fuzz.json")
    args = p.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    results: dict[str, Any] = {}
    failures = 0
    server = None
    try:
        for target in targets:
            t0 = time.perf_counter()
            detail: dict[str, int] = {}
            error = ""
            try:
                if target == "framing":
                    _settings(args.cases, args.seed)(framing_property)()
                elif target == "document":
                    for enc in ("utf-16", "utf-8", "utf-32"):
                        _settings(max(1, args.cases // 3), args.seed)(document_property(enc))()
                elif target in ("lsp", "sync"):
                    if server is None:
                        extra = ("--model", model) if model else ()
                        server = RawServer(extra)
                        server.initialize({"maxTokens": 4, "debounceMs": 0, "temperature": 0})
                    run = run_lsp if target == "lsp" else run_sync
                    detail = run(server, args.cases, args.seed)
                else:
                    raise SystemExit(f"unknown target {target}")
            except AssertionError as exc:
                failures += 1
                error = f"{type(exc).__name__}: {str(exc)[:2000]}"
            elapsed = time.perf_counter() - t0
            results[target] = {"cases": args.cases, "seconds": round(elapsed, 1), "error": error, **detail}
            print(
                f"{target:9} {args.cases:6d} cases in {elapsed:6.1f} s  {'FAILED ' + error if error else 'ok'} {detail or ''}"
            )
        if server is not None:
            unanswered, twice = server.unanswered(), server.answered_twice()
            alive = server.alive()
            log = server.log_text()
            tracebacks = log.count("Traceback")
            code = server.shutdown()
            results["server"] = {
                "unanswered": len(unanswered),
                "answered_twice": len(twice),
                "alive_at_end": alive,
                "exit_code": code,
                "tracebacks_in_log": tracebacks,
                "parse_error_answers": len(server.null_errors),
            }
            print(
                f"server    unanswered {len(unanswered)}, answered twice {len(twice)}, alive {alive}, exit {code}, tracebacks {tracebacks}"
            )
            if unanswered or twice or not alive or code != 0 or tracebacks:
                failures += 1
    finally:
        if server is not None and server.alive():
            server.kill()
    total = sum(r.get("cases", 0) for k, r in results.items() if k != "server")
    print(f"total     {total} cases, {failures} failures")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
    }
    report: dict[str, Any] = {"meta": meta, "total_cases": total, "failures": failures, "targets": results}
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 1 if failures else 0
