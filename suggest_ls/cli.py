"""Command line: the server (stdio or TCP), one-shot completion, a health check and benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.handlers
import os
import queue
import sys
import time
from collections.abc import Callable
from pathlib import Path

from suggest_ls import __version__


class _Background(logging.handlers.QueueHandler):
    """Hands log records to a thread that filters, formats and writes them: the event loop never
    waits on the log file (a suggestion's log line cost ~0.25 ms of its answer when written inline)."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(queue.SimpleQueue())
        self._listener: logging.handlers.QueueListener | None = logging.handlers.QueueListener(
            self.queue, target, respect_handler_level=True
        )
        self._listener.start()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record as it is: the target handler formats it in the writing thread."""
        return record

    def close(self) -> None:
        """Write what is queued, then stop the thread (``logging.shutdown`` calls this at exit)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        super().close()


def _setup_logging(
    level: str, log_file: str | None, client: Callable[[logging.Handler], logging.Handler] | None = None
) -> logging.Handler:
    """Log to ``log_file``, else to stderr; with ``client`` (``server.ClientLog``), to the client with
    stderr as its fallback. Returns the handler the log thread writes to."""
    from suggest_ls.security import PrivacyFilter

    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8", errors="backslashreplace")
        if log_file
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    target = client(handler) if client is not None else handler
    for h in {handler, target}:
        if level != "debug":
            h.addFilter(PrivacyFilter())
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, _Background):
            old.close()
    root.handlers[:] = [_Background(target)]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("pygls").setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
    return target


LOG_FILE_HELP = "write the log here (serving over stdio the log goes to the editor, else to stderr)"
LOG_LEVELS = ["debug", "info", "warning", "error"]


def parse_hostport(value: str) -> tuple[str, int]:
    """Parse ``[HOST:]PORT``; the host defaults to loopback."""
    host, _, port = value.rpartition(":")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``suggest-ls``."""
    p = argparse.ArgumentParser(prog="suggest-ls", description="Local inline code suggestions over LSP, on llama.cpp.")
    p.add_argument("--version", action="version", version=f"suggest-ls {__version__}")
    p.add_argument("--stdio", action="store_true", help="serve LSP on stdin/stdout (the default)")
    p.add_argument("--tcp", metavar="[HOST:]PORT", help="serve LSP over TCP (host defaults to 127.0.0.1)")
    p.add_argument(
        "--token-file",
        metavar="PATH",
        help="access token clients must present (initializationOptions.authToken); else $SUGGEST_LS_TOKEN",
    )
    p.add_argument("--model", default="", help="GGUF model path (overrides the embedded default)")
    p.add_argument(
        "--health-port",
        metavar="[HOST:]PORT",
        help="serve GET /health (JSON) and /metrics (Prometheus) over HTTP; host defaults to 127.0.0.1",
    )
    p.add_argument("--log-file", help=LOG_FILE_HELP)
    p.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    sub = p.add_subparsers(dest="command")
    # The global options a subcommand uses are accepted after it too, as people type them
    # (``suggest-ls complete FILE:LINE:COL --model X``); absent there, the value before it holds.
    logs = argparse.ArgumentParser(add_help=False)
    logs.add_argument("--log-file", default=argparse.SUPPRESS, help=LOG_FILE_HELP)
    logs.add_argument("--log-level", default=argparse.SUPPRESS, choices=LOG_LEVELS)
    model = argparse.ArgumentParser(add_help=False, parents=[logs])
    model.add_argument("--model", default=argparse.SUPPRESS, help="GGUF model path (overrides the embedded default)")

    c = sub.add_parser("complete", parents=[model], help="run one completion through the whole pipeline")
    c.add_argument("location", metavar="FILE:LINE:COL", help="1-based line and column of the cursor")
    c.add_argument("--explain", action="store_true", help="show the prompt window and why nothing was shown")
    c.add_argument("--repeat", type=int, default=1, help="run the completion N times (first and steady-state)")
    c.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting, e.g. temperature=0")

    sub.add_parser("check", parents=[model], help="load the model, print the device, run a smoke completion")

    q = sub.add_parser("quantize", parents=[logs], help="quantize a GGUF with llama.cpp's in-process quantizer")
    q.add_argument("input", metavar="IN.gguf")
    q.add_argument("output", metavar="OUT.gguf")
    q.add_argument("--type", default="Q4_K_M", help="Q4_K_M, Q4_0, Q5_K_M, Q6_K, Q8_0, F16, ... (default Q4_K_M)")
    q.add_argument("--threads", type=int, default=0, help="quantizer threads (0: all cores)")
    q.add_argument(
        "--allow-requantize", action="store_true", help="allow an already quantized input (costs some quality)"
    )
    q.add_argument("--force", action="store_true", help="overwrite OUT.gguf")

    b = sub.add_parser("bench", help="benchmarks: latency, throughput, quality, languages, fuzz, soak, swap")
    b.add_argument("kind", choices=["latency", "throughput", "quality", "languages", "fuzz", "soak", "swap"])
    b.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``suggest-ls`` command."""
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level, args.log_file)
    if args.command == "complete":
        return asyncio.run(_complete(args))
    if args.command == "check":
        return asyncio.run(_check(args))
    if args.command == "quantize":
        from suggest_ls.backends.quantize import main as quantize_main

        return quantize_main(args)
    if args.command == "bench":
        from suggest_ls.bench import run_bench

        return run_bench(args.kind, args.rest, model=args.model)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    from suggest_ls.lsp.features import create_server
    from suggest_ls.security import SecurityError, check_bind, load_token

    try:
        token = load_token(args.token_file)
        if args.tcp:
            host, port = parse_hostport(args.tcp)
            check_bind(host, token)
        if args.health_port:
            check_bind(parse_hostport(args.health_port)[0], token, "--health-port")
    except (SecurityError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = create_server(args.model)
    if args.health_port:
        _start_health(server, args.health_port, token)
    if args.tcp:
        server.start_tcp(host, port, token)
        return 0
    if not args.log_file:  # the log goes to the editor (window/logMessage), levels and all
        from suggest_ls.lsp.clientlog import ClientLog

        client_log = _setup_logging(args.log_level, None, ClientLog)
        server.client_log = client_log if isinstance(client_log, ClientLog) else None
    # Keep stdout for the protocol alone: anything else written to fd 1 goes to stderr.
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server.start_io(sys.stdin.buffer, protocol_out)
    return 0


def _start_health(server: object, where: str, token: str = "") -> None:
    """Start the HTTP health endpoint; a port that cannot be bound is logged, the LSP serves anyway."""
    from suggest_ls.ops.health import HealthServer

    try:
        host, port = parse_hostport(where)
        HealthServer(server.ops, host, port, token).start()  # type: ignore[attr-defined]
    except (OSError, ValueError) as exc:
        logging.getLogger(__name__).error("health endpoint on %s not started: %s", where, exc)


async def _load(model: str, settings_raw: dict[str, object]):  # type: ignore[no-untyped-def]
    from suggest_ls.backends.llama.engine import Engine
    from suggest_ls.backends.models import resolve_model
    from suggest_ls.completion.completer import Completer
    from suggest_ls.completion.prompt import detect_template
    from suggest_ls.ops.lifecycle import engine_config
    from suggest_ls.settings import resolve

    settings, messages = resolve(settings_raw)
    for m in messages:
        print(f"warning: {m}", file=sys.stderr)
    choice = resolve_model(model or settings.model)
    engine = Engine(engine_config(settings, choice.path)).start()
    info = await asyncio.wrap_future(engine.ready)
    template = detect_template(info.model, settings.template)
    completer = Completer(engine, template, settings)
    completer.prefill_tps = info.prefill_tps
    return engine, info, completer, choice


async def _complete(args: argparse.Namespace) -> int:
    from suggest_ls.backends.models import ModelError
    from suggest_ls.completion.prompt import build_prompt
    from suggest_ls.completion.request import CompletionRequest
    from suggest_ls.lsp.document import Document
    from suggest_ls.settings import parse_pairs

    path_s, _, rest = args.location.rpartition(":")
    path_s, _, line_s = path_s.rpartition(":")
    try:
        line, col = int(line_s), int(rest)
        text = Path(path_s).read_text(encoding="utf-8", errors="replace")
    except (ValueError, OSError) as exc:
        print(f"error: cannot read {args.location}: {exc}", file=sys.stderr)
        return 2
    doc = Document(path_s, text, encoding="utf-32")
    offset = doc.offset(max(0, line - 1), max(0, col - 1))
    raw = {"debounceMs": 0, **parse_pairs(args.set)}
    t0 = time.perf_counter()
    try:
        engine, info, completer, choice = await _load(args.model, raw)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    load_ms = (time.perf_counter() - t0) * 1000
    runs = []
    try:
        for _ in range(max(1, args.repeat)):
            completer.forget(Path(path_s).resolve().as_uri())  # measure the model, not the suggestion cache
            req = CompletionRequest(
                Path(path_s).resolve().as_uri(), 0, text, offset, Path(path_s).suffix.lstrip("."), manual=False
            )
            t1 = time.perf_counter()
            result = await completer.complete(req)
            runs.append((result, (time.perf_counter() - t1) * 1000))
    finally:
        engine.close()
    result = runs[0][0]
    rec = result.record
    cursor = completer.cursor(req)
    out = {
        "model": str(choice.path),
        "device": info.device,
        "template": completer.template.name,
        "suggestion": result.text,
        "replace": result.replace,
        "reason": result.reason,
        "load_ms": round(load_ms, 1),
        "runs": [
            {
                "total_ms": round(w, 1),
                "queue_ms": round(r.record.queue_ms, 1) if r.record else 0,
                "ttft_ms": round(r.record.ttft_ms, 1) if r.record else 0,
                "engine_ms": round(r.record.engine_ms, 1) if r.record else 0,
                "prompt_tokens": r.record.prompt_tokens if r.record else 0,
                "cached_tokens": r.record.cached_tokens if r.record else 0,
                "evaluated_tokens": r.record.evaluated_tokens if r.record else 0,
                "generated_tokens": r.record.generated_tokens if r.record else 0,
                "outcome": r.record.outcome if r.record else "",
            }
            for r, w in runs
        ],
    }
    if args.explain:
        out["prompt"], out["raw"] = completer.last_prompt, completer.last_raw
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"model      {Path(choice.path).name} ({info.quantization}) on {info.device}, template {out['template']}")
    print(f"load       {load_ms:.0f} ms")
    if result.text:
        print(
            "suggestion " + json.dumps(result.text) + (f" (replaces {result.replace} chars)" if result.replace else "")
        )
    else:
        print(f"suggestion (none): {result.reason}")
    if rec:
        print(
            f"prompt     {rec.prompt_tokens} tokens ({rec.cached_tokens} cached, {rec.evaluated_tokens} evaluated), "
            f"{rec.generated_tokens} generated"
        )
    for i, r in enumerate(out["runs"]):  # type: ignore[arg-type]
        label = "first" if i == 0 else f"run {i + 1}"
        print(
            f"{label:10} total {r['total_ms']:.1f} ms = queue {r['queue_ms']:.1f} + prompt eval/first token "
            f"{r['ttft_ms'] - r['queue_ms']:.1f} + generation {r['engine_ms'] - r['ttft_ms']:.1f} ms "
            f"(+ pipeline {r['total_ms'] - r['engine_ms']:.1f} ms); evaluated {r['evaluated_tokens']}, generated {r['generated_tokens']}"
        )
    if args.explain:
        from suggest_ls.completion.context import should_complete, wants_block

        block = wants_block(cursor, completer.settings.multiline)
        gate = should_complete(cursor)
        print(
            "decision   "
            + ("a block (after a block opener)" if block else "one line")
            + (f"; not here: {gate}" if gate else "")
        )
        print("--- prompt" + (" (the model did not run)" if not completer.last_prompt else "") + " ---")
        print(completer.last_prompt or build_prompt(cursor, completer.template))
        print("--- end of prompt ---")
        if completer.last_prompt:
            print("raw        " + json.dumps(completer.last_raw))
        print(f"why no suggestion: {result.reason}" if not result.text else "shown      yes")
    return 0


async def _check(args: argparse.Namespace) -> int:
    from suggest_ls.backends.device import gpu_memory
    from suggest_ls.backends.models import ModelError
    from suggest_ls.completion.request import CompletionRequest

    t0 = time.perf_counter()
    try:
        engine, info, completer, choice = await _load(args.model, {"debounceMs": 0})
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"suggest-ls {__version__}")
        print(f"model      {choice.path} (from {choice.source})")
        if choice.why:
            print(f"           {choice.why}")
        print(
            f"           {info.model.name or '?'} [{info.model.architecture}] {info.quantization}, {info.size_bytes / 2**20:.0f} MiB"
        )
        print(f"template   {completer.template.name}")
        print(
            f"device     {info.device}; layers offloaded {info.gpu_layers}/{info.n_layers + 1}; {info.offload_reason}"
        )
        mem = gpu_memory()
        if mem:
            print(
                f"gpu memory {mem.used / 2**30:.2f} / {mem.total / 2**30:.2f} GiB used ({mem.used / mem.total:.0%}) on {mem.name}"
            )
        else:
            print("gpu memory no GPU (NVML unavailable)")
        print(
            f"threads    {info.threads}; context {info.n_ctx} per slot x {info.parallel} slots; load {info.load_ms:.0f} ms"
        )
        print(
            f"prompt     {info.prefill_tps:.0f} tokens/s evaluated (measured at load); "
            f"window {completer.prompt_tokens()} tokens, extra context {completer.extra_tokens()}"
        )
        text = "def add(a, b):\n    return "
        req = CompletionRequest("file:///check.py", 0, text, len(text), "python", manual=True)
        result = await completer.complete(req)
        rec = result.record
        if rec is None or rec.outcome.startswith("error"):
            print(f"error: smoke completion failed: {result.reason}", file=sys.stderr)
            return 1
        shown = json.dumps(result.text) if result.text else f"(none: {result.reason})"
        print(f"smoke      {shown} in {rec.total_ms:.0f} ms ({rec.generated_tokens} tokens)")
        print(f"total      {(time.perf_counter() - t0) * 1000:.0f} ms")
        print("ok")
        return 0
    finally:
        engine.close()
