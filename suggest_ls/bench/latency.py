"""``suggest-ls bench latency``: replay a person typing real source files through LSP, side by side.

Each server under test runs as a subprocess spoken to over stdio the way an editor does: per
keystroke one incremental ``didChange`` and one automatic ``inlineCompletion`` (older requests
are never cancelled, as Neovim 0.12 does not). The same replay goes to suggest-ls, to a naive
single-lock pygls server and to llama-cpp-python's OpenAI-compatible server behind the same
kind of LSP shim (``suggest_ls.bench.baseline``); optionally also to suggest-ls with llama.cpp's
``llama-server`` as its remote backend, and to that server driven as llama.vim drives it
(``suggest_ls.bench.peer_infill``, the peer baseline). Reported per server: round trip percentiles
for every request and for the last keystroke of each burst (the ones a person waits on),
keystroke-to-suggestion time, model runs per keystroke, tokens evaluated per completion against
the new text since the document's previous completion, stale and unanswered responses, and the
server overhead (round trip minus debounce and engine time). JSON, a table and a latency CDF plot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from suggest_ls.bench import llama_server, peer_infill
from suggest_ls.bench.common import Progress, machine, table, write_json
from suggest_ls.bench.latency_analysis import Refresh, Sent, analyse, first_suggestion_ms, summarise
from suggest_ls.completion.stats import STALE_LOGGED, UNREAD_SEND
from suggest_ls.harness.client import LspClient
from suggest_ls.harness.typist import DEFAULT_FILES, Keystroke, Rhythm, Source, plan
from suggest_ls.harness.wire import EDITOR_CAPABILITIES, free_port, position, server_command
from suggest_ls.settings import parse_pairs

VIA_LLAMA_SERVER = "suggest-ls-via-llama-server"  # suggest-ls, its remote backend on llama-server
PEER = "llama.vim"  # llama-server's /infill asked the way llama.vim asks (peer_infill)
DEFAULT_SERVERS = ("suggest-ls", "naive", "openai")
SERVERS = (*DEFAULT_SERVERS, VIA_LLAMA_SERVER, PEER)
# like the VS Code and Neovim clients, the replay asks again on suggest/refresh (``follow_refresh``);
# a plain LSP client does not, so it gets whole lines only
PLAIN_CAPABILITIES: dict[str, Any] = {k: v for k, v in EDITOR_CAPABILITIES.items() if k != "experimental"}
CURSOR_NOTIFICATION = "suggest/didMoveCursor"


class Session:
    """One server under test: its processes, its trace and its log."""

    def __init__(
        self,
        kind: str,
        model: str,
        settings: dict[str, Any],
        workdir: Path,
        threads: int,
        name: str = "",
        env: dict[str, str] | None = None,
        plain: bool = False,
    ) -> None:
        self.kind = kind
        self.plain = plain
        self.env = env or {}
        self.model = model
        self.settings = settings
        self.dir = workdir / (name or kind)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.trace = self.dir / "trace.jsonl"
        self.threads = threads
        self.helper: asyncio.subprocess.Process | None = None
        self.client: LspClient | None = None

    async def start(self) -> LspClient:
        """Start the server (and the OpenAI server behind the shim) and initialize LSP."""
        env = {**os.environ, **self.env}
        stderr = (self.dir / "stderr.txt").open("wb")
        if self.kind in ("suggest-ls", VIA_LLAMA_SERVER):
            env["SUGGEST_LS_TRACE"] = str(self.trace)
            argv = server_command("--model", self.model, log_file=self.dir / "server.log")
            if self.kind == VIA_LLAMA_SERVER:
                self.helper, url = await llama_server.start_llama_server(
                    self.model, self.dir / "llama-server.log", free_port(), threads=self.threads
                )
                self.settings = {**self.settings, **llama_server.remote_settings(self.model, url)}
        else:
            argv = [sys.executable, "-m", "suggest_ls.bench.baseline", "--mode", self.kind, "--model", self.model]
            argv += [
                "--trace",
                str(self.trace),
                "--settings",
                json.dumps(self.settings),
                "--threads",
                str(self.threads),
            ]
            if self.kind == "openai":
                argv += ["--endpoint", await self._start_openai()]
        self.client = await LspClient.spawn(argv, env=env, stderr=stderr)
        capabilities = PLAIN_CAPABILITIES if self.plain else EDITOR_CAPABILITIES
        await self.client.initialize(self.settings, capabilities, os.getpid())
        status = await self.client.wait_ready()
        if status.get("state") != "ready":
            raise RuntimeError(f"{self.kind}: server not ready: {status}")
        return self.client

    async def _start_openai(self) -> str:
        port = free_port()
        n_ctx = str(self.settings.get("contextSize", 4096))
        threads = ["--n_threads", str(self.threads), "--n_threads_batch", str(self.threads)] if self.threads else []
        log = (self.dir / "openai-server.log").open("wb")
        self.helper = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "llama_cpp.server", "--model", self.model, "--host", "127.0.0.1"],
            *["--port", str(port), "--n_ctx", n_ctx, *threads, "--verbose", "False"],
            stdout=log,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}/v1"
        for _ in range(600):
            if self.helper.returncode is not None:
                raise RuntimeError(f"llama_cpp.server exited; see {self.dir / 'openai-server.log'}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url + "/models", timeout=1).read()
                return url
            await asyncio.sleep(0.2)
        raise RuntimeError("llama_cpp.server did not start")

    async def stop(self) -> None:
        """Shut everything down."""
        if self.client is not None:
            await self.client.close()
        if self.helper is not None and self.helper.returncode is None:
            self.helper.terminate()
            try:
                await asyncio.wait_for(self.helper.wait(), 10)
            except TimeoutError:
                self.helper.kill()
                await self.helper.wait()

    def log_count(self, text: str) -> int:
        """How many lines of the server's log hold ``text``."""
        path = self.dir / "server.log"
        if not path.exists():
            return 0
        return sum(text in line for line in path.read_text(encoding="utf-8", errors="replace").splitlines())

    def records(self) -> list[dict[str, Any]]:
        """The per-request records the server wrote."""
        if not self.trace.exists():
            return []
        out = []
        for line in self.trace.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


async def replay(
    kind: str,
    client: LspClient,
    sources: list[Source],
    keys: list[Keystroke],
    grace: float,
    read_s: float = 0.0,
) -> tuple[list[Sent], list[float], list[Refresh]]:
    """Open the documents, warm each one up, then type; returns what was sent, the warm-up times and
    the requests that followed ``suggest/refresh``. With ``read_s``, cold documents instead: no
    warm-up request; the client says where the cursor is (as the VS Code and Neovim clients here
    do) and the person reads for ``read_s`` seconds before typing."""
    texts = [s.initial for s in sources]
    versions = [1] * len(sources)
    cursors = [s.start for s in sources]
    refreshes: list[Refresh] = []
    follower = asyncio.ensure_future(follow_refresh(client, sources, texts, versions, cursors, refreshes))
    for s in sources:
        client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": s.uri, "languageId": "python", "version": 1, "text": s.initial}},
        )
    warm: list[float] = []
    if read_s > 0:
        for s in sources:
            client.notify(
                CURSOR_NOTIFICATION, {"textDocument": {"uri": s.uri}, "position": position(s.initial, s.start)}
            )
        await asyncio.sleep(read_s)
    for s in sources if read_s <= 0 else []:
        t = time.perf_counter()
        await client.request(
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": s.uri},
                "position": position(s.initial, s.start),
                "context": {"triggerKind": 1},
            },
        )
        warm.append((time.perf_counter() - t) * 1000)
    progress = Progress(f"latency {kind}", len(keys))
    sent: list[Sent] = []
    t0 = time.perf_counter() + 0.2
    for i, k in enumerate(keys):
        delay = t0 + k.at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        text = texts[k.doc]
        at = position(text, k.offset)
        versions[k.doc] += 1
        typed_at = time.perf_counter()
        client.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": sources[k.doc].uri, "version": versions[k.doc]},
                "contentChanges": [{"range": {"start": at, "end": at}, "text": k.text}],
            },
        )
        text = text[: k.offset] + k.text + text[k.offset :]
        texts[k.doc] = text
        cursors[k.doc] = k.offset + len(k.text)
        call = client.send(
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": sources[k.doc].uri},
                "position": position(text, k.offset + len(k.text)),
                "context": {"triggerKind": 2},
            },
        )
        sent.append(Sent(k, versions[k.doc], typed_at, call))
        answered = sum(1 for s in sent if s.call.answered)
        progress.update(i + 1, f"{answered} answered")
    last = time.perf_counter()
    done = -1
    while True:
        now_done = sum(1 for s in sent if s.call.answered)
        if now_done == len(sent):
            break
        if now_done != done:
            done, last = now_done, time.perf_counter()
        elif time.perf_counter() - last > grace:
            break
        await asyncio.sleep(0.05)
    progress.close()
    follower.cancel()
    for item in sent:
        if not item.call.answered:
            item.call.answered = -1.0  # not answered within the grace period: a later answer is ignored
    return sent, warm, refreshes


async def follow_refresh(
    client: LspClient,
    sources: list[Source],
    texts: list[str],
    versions: list[int],
    cursors: list[int],
    asked: list[Refresh],
) -> None:
    """Ask again at the cursor on ``suggest/refresh`` for a document still at that version, as the
    VS Code extension does (an explicit trigger); the calls go to ``asked``."""
    seen = len(client.notifications)
    while True:
        await asyncio.sleep(0.002)
        new, seen = client.notifications[seen:], len(client.notifications)
        for _, method, params in new:
            if method != "suggest/refresh" or not isinstance(params, dict):
                continue
            doc = next((i for i, s in enumerate(sources) if s.uri == params.get("uri")), None)
            if doc is None or params.get("version") != versions[doc]:
                continue
            call = client.send(
                "textDocument/inlineCompletion",
                {
                    "textDocument": {"uri": sources[doc].uri},
                    "position": position(texts[doc], cursors[doc]),
                    "context": {"triggerKind": 1},
                },
            )
            asked.append(Refresh(doc, versions[doc], call))


def plot(results: dict[str, dict[str, Any]], path: str) -> None:
    """A CDF of last-keystroke and all-request latency per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, res in results.items():
        for key, style in (("_rtt_last", "-"), ("_rtt_all", ":")):
            values = sorted(res.get(key, []))
            if not values:
                continue
            ys = [(i + 1) / len(values) for i in range(len(values))]
            label = f"{name} ({'last keystroke' if key == '_rtt_last' else 'all requests'})"
            ax.step(values, ys, style, where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("server latency (ms, request sent to answer received)")
    ax.set_ylabel("share of requests")
    ax.set_title("suggest-ls bench latency: typing replay")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _token_counter(model: str) -> Any:
    try:
        from llama_cpp import Llama

        llm = Llama(model, vocab_only=True, verbose=False)
    except Exception:
        return None
    return lambda text: len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``suggest-ls bench latency``."""
    p = argparse.ArgumentParser(prog="suggest-ls bench latency", description=__doc__.split("\n")[0])
    p.add_argument("--files", nargs="+", default=list(DEFAULT_FILES), help="files to type (stdlib names or paths)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long the person types")
    p.add_argument("--key-ms", type=float, default=Rhythm.key_ms, help="median gap between keys in a burst")
    p.add_argument("--pause-ms", default="400:1500", help="pause length range MIN:MAX")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--concurrent", action="store_true", help="one typist per document, all at once")
    p.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma list of: {', '.join(SERVERS)} (the last two need scripts/build-llama-server.sh)",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a suggest-ls setting (all servers)")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="one more suggest-ls server with these settings on top (to compare levers side by side); "
        "UPPER_CASE keys set that server's environment",
    )
    p.add_argument("--threads", type=int, default=0, help="threads for the baselines (0: their own default)")
    p.add_argument("--grace", type=float, default=30.0, help="seconds without any answer before giving up")
    p.add_argument("--rounds", type=int, default=1, help="replays per server, taking turns (samples pooled)")
    p.add_argument(
        "--plain", action="store_true", help="a plain LSP client: no experimental.suggestRefresh (whole lines only)"
    )
    p.add_argument(
        "--read-s",
        type=float,
        default=0.0,
        help="cold documents: no warm-up request; the cursor is sent (suggest/didMoveCursor) and the person "
        "reads this long before typing; reports each document's first keystroke to its first suggestion",
    )
    p.add_argument("--out", default="bench-results/latency.json", help="where the JSON goes")
    p.add_argument("--plot", default="", help="PNG path (default: next to the JSON)")
    return p


async def _run(args: argparse.Namespace, model: str) -> int:
    from suggest_ls.backends.models import resolve_model

    model_path = str(resolve_model(model).path)
    low, _, high = args.pause_ms.partition(":")
    rhythm = Rhythm(key_ms=args.key_ms, pause_ms=(float(low), float(high or low)))
    sources, keys = plan(args.files, args.seconds, rhythm, args.seed, args.concurrent)
    settings = parse_pairs(args.set)
    count_tokens = _token_counter(model_path)
    results: dict[str, dict[str, Any]] = {}
    warmups: dict[str, list[float]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="suggest-ls-bench-latency-"))
    print(
        f"replaying {len(keys)} keystrokes ({sum(k.pause_after for k in keys)} burst ends) over {args.seconds:.0f} s "
        f"into {', '.join(Path(s.path).name for s in sources)}; logs in {workdir}",
        file=sys.stderr,
    )
    servers = [(k.strip(), k.strip(), settings) for k in args.servers.split(",") if k.strip()]
    unknown = [k for _, k, _ in servers if k not in SERVERS]
    if unknown:
        print(f"unknown server(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    envs: dict[str, dict[str, str]] = {}
    for spec in args.variant:
        name, _, pairs = spec.partition(":")
        items = [x for x in pairs.split(",") if x]
        # Upper-case keys are environment variables of that server process (OMP_WAIT_POLICY=...).
        envs[name] = dict(x.split("=", 1) for x in items if x.split("=", 1)[0].isupper())
        options = parse_pairs([x for x in items if not x.split("=", 1)[0].isupper()])
        servers.append((name, "suggest-ls", {**settings, **options}))
    raws: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in servers}
    for round_no in range(args.rounds):
        for name, kind, options in servers:  # side by side: the servers take turns, round after round
            if kind == PEER:
                raw, warm = await peer_infill.run_round(
                    model_path, sources, keys, args.grace, args.threads, workdir / f"round{round_no + 1}" / name
                )
                warmups.setdefault(name, []).extend(round(w, 1) for w in warm)
                raws[name].append(raw)
                continue
            session = Session(
                kind,
                model_path,
                options,
                workdir / f"round{round_no + 1}",
                args.threads,
                name,
                envs.get(name, {}),
                args.plain,
            )
            try:
                client = await session.start()
                sent, warm, refreshes = await replay(name, client, sources, keys, args.grace, args.read_s)
            finally:
                await session.stop()
            warmups.setdefault(name, []).extend(round(w, 1) for w in warm)
            raw = analyse(name, sent, session.records(), sources, count_tokens, refreshes)
            raw["cold_first_suggestion_ms"] = first_suggestion_ms(sent, refreshes, len(sources))
            # the server's own view of staleness: answers it emptied because the document changed
            # first, and answers it let go while client input was still unread (0 means every stale
            # answer the client saw was written before the keystroke reached the server)
            raw["counts"]["server_emptied_stale"] = session.log_count(STALE_LOGGED)
            raw["counts"]["server_sent_with_input_unread"] = session.log_count(UNREAD_SEND)
            raws[name].append(raw)
    for name, _, options in servers:
        results[name] = summarise(name, raws[name])
        results[name]["first_completion_ms"] = warmups[name]
        results[name]["settings"] = options
    report = _report(args, results, sources, keys, settings)
    print(_table(results))
    for line in _ratios_text(report["ratios"]):
        print(line)
    write_json(args.out, report)
    png = args.plot or str(Path(args.out).with_suffix(".png"))
    try:
        plot(results, png)
        print(f"wrote {args.out} and {png}")
    except ImportError:  # the plot is optional (pip install 'suggest-ls[bench]')
        print(f"wrote {args.out} (no plot: matplotlib is not installed)")
    return 0


def _report(
    args: argparse.Namespace,
    results: dict[str, dict[str, Any]],
    sources: list[Source],
    keys: list[Keystroke],
    settings: dict[str, Any],
) -> dict[str, Any]:
    ratios: dict[str, Any] = {}
    ours = results.get("suggest-ls")
    if ours:
        for name in ("naive", "openai", VIA_LLAMA_SERVER, PEER):
            other = results.get(name)
            if not other:
                continue
            for q in ("p50", "p90", "p99"):
                a = ours["server_ms_last_keystroke"][q]
                b = other["server_ms_last_keystroke"][q]
                answered = ours["server_ms_last_keystroke"]["n"] and other["server_ms_last_keystroke"]["n"]
                ratios[f"{name}_over_suggest_ls_last_keystroke_{q}"] = round(b / a, 2) if a and answered else None
    clean = {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in results.items()}
    return {
        "benchmark": "latency",
        "machine": machine(),
        "config": {
            "files": [s.path for s in sources],
            "seconds": args.seconds,
            "keystrokes": len(keys),
            "burst_ends": sum(k.pause_after for k in keys),
            "rhythm": asdict(Rhythm(key_ms=args.key_ms)) | {"pause_ms": args.pause_ms},
            "seed": args.seed,
            "concurrent": args.concurrent,
            "rounds": args.rounds,
            "settings": settings,
        },
        "servers": clean,
        "ratios": ratios,
    }


def _ratios_text(ratios: dict[str, Any]) -> list[str]:
    return [f"{k}: {v}x" if v is not None else f"{k}: - (nothing answered)" for k, v in ratios.items()]


def _table(results: dict[str, dict[str, Any]]) -> str:
    header = ["server", "last p50", "last p90", "last p99", "all p50", "all p99", "k→sugg p50", "k→first p90"]
    header += ["pending", "runs/key"]
    header += ["eval p50", "eval max", "over bound", "stale", "unanswered", "overhead p50", "cold first"]
    rows = []
    for name, r in results.items():
        last, everything = r["server_ms_last_keystroke"], r["server_ms_all"]
        rows.append(
            [
                name,
                *((last["p50"], last["p90"], last["p99"]) if last["n"] else ("-", "-", "-")),  # none answered
                everything["p50"],
                everything["p99"],
                r["keystroke_to_suggestion_ms"]["p50"],
                r["keystroke_to_first_suggestion_ms"]["p90"],
                r.get("pending", 0),
                r["model_runs_per_keystroke"],
                r["tokens_evaluated_per_completion"]["p50"],
                r["tokens_evaluated_per_completion"]["max"],
                f"{r['completions_over_token_bound']['over']}/{r['completions_over_token_bound']['checked']}",
                r["stale"],
                r["unanswered"],
                r["server_overhead_ms"]["p50"],
                " ".join("-" if v is None else f"{v:.0f}" for rnd in r["cold_first_suggestion_ms"] for v in rnd or []),
            ]
        )
    return table(header, rows) + (
        "\n(ms; 'last' = the last keystroke of each burst; k→first = from it to the first suggestion on screen, "
        "answered or asked again on suggest/refresh; pending = answered empty while the line was still being "
        "written; eval = tokens evaluated per model run; cold first = with --read-s, each document's first "
        "keystroke to its first suggestion, per round)"
    )


def main(argv: list[str], model: str = "") -> int:
    """Run the latency benchmark."""
    args = build_parser().parse_args(argv)
    return asyncio.run(_run(args, model))
