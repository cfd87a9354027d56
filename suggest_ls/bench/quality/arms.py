"""The two arms asked at each task's hole: the real server driven like an editor, and the raw model."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from suggest_ls.backends.contract import GenRequest, GenResult, StopRule
from suggest_ls.backends.llama.engine import Engine
from suggest_ls.backends.llama.loading import EngineConfig
from suggest_ls.backends.models import resolve_model
from suggest_ls.bench.quality.scoring import Outcome, exact
from suggest_ls.bench.quality.tasks import Task
from suggest_ls.completion.deadline import PENDING
from suggest_ls.completion.prompt import Template, detect_template, fill, own_layout
from suggest_ls.completion.stats import LINE_FINISHED
from suggest_ls.harness.client import LspClient
from suggest_ls.harness.wire import EDITOR_CAPABILITIES, position, server_command

REFRESH_GRACE_S = 0.5  # after a line's finish is recorded, how long its suggest/refresh may take to arrive

AUTOMATIC = 2  # InlineCompletionTriggerKind.Automatic: what an editor sends while the user types
# Greedy, no debounce; no extra context: the problems are unrelated files, and the chunk ring would
# otherwise hand the model earlier problems' reference solutions as examples.
BENCH_SETTINGS: dict[str, Any] = {"temperature": 0, "debounceMs": 0, "extraContextTokens": 0}


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
        template = own_layout(detect_template(info.model))
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
