"""The servers a user would pick instead, for side-by-side benchmarks (not part of suggest-ls itself).

``--mode naive``: a plain pygls server that runs ``Llama.create_completion`` in-process behind one
lock, no debounce, no cancellation (the "before any code" baseline). ``--mode openai``: the same
server shape calling llama-cpp-python's OpenAI-compatible server once per request. Both build
the same prompt as suggest-ls (same window, template, token budget and stop rule, streamed and
stopped as early as suggest-ls stops) and clean the text the same way, so only the scheduling
differs. Each request leaves a JSON line in ``--trace`` like suggest-ls's ``SUGGEST_LS_TRACE``.

This module imports pygls directly on purpose: it is a stand-in for someone else's server.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from suggest_ls.backends.contract import ModelInfo, StopRule, should_stop
from suggest_ls.completion.clean import clean
from suggest_ls.completion.completer import PROMPT_TOKENS_MIN
from suggest_ls.completion.context import Cursor, should_complete, wants_block, window
from suggest_ls.completion.prompt import Template, build_prompt, detect_template
from suggest_ls.settings import Settings

log = logging.getLogger("suggest_ls.bench.baseline")


class Generator:
    """One way to stream completion text for a prompt."""

    def stream(self, prompt: str, max_tokens: int) -> Iterator[str]:
        """Yield text pieces as the model produces them."""
        raise NotImplementedError


class InProcess(Generator):
    """``Llama.create_completion`` in this process (its own prefix cache on one sequence)."""

    def __init__(self, model: str, n_ctx: int, threads: int, vocab_only: bool = False) -> None:
        from llama_cpp import Llama

        kwargs: dict[str, Any] = {"n_threads": threads, "n_threads_batch": threads} if threads else {}
        self.llm = Llama(model, n_ctx=n_ctx, vocab_only=vocab_only, verbose=False, **kwargs)

    def info(self) -> ModelInfo:
        """What prompting needs to know about the model."""
        meta = self.llm.metadata
        vocab = self.llm._model.vocab  # type: ignore[attr-defined]
        import llama_cpp as L

        def text(tok: int) -> str:
            raw = L.llama_vocab_get_text(vocab, tok) if tok >= 0 else b""
            return raw.decode("utf-8", "replace") if raw else ""

        return ModelInfo(
            name=meta.get("general.name", ""),
            architecture=meta.get("general.architecture", ""),
            fim_prefix=text(L.llama_vocab_fim_pre(vocab)),
            fim_suffix=text(L.llama_vocab_fim_suf(vocab)),
            fim_middle=text(L.llama_vocab_fim_mid(vocab)),
            eos=text(L.llama_vocab_eos(vocab)),
        )

    def stream(self, prompt: str, max_tokens: int) -> Iterator[str]:
        """Stream from the in-process model."""
        for chunk in self.llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, stream=True):
            yield chunk["choices"][0]["text"]  # type: ignore[index]


class OpenAI(Generator):
    """``POST /v1/completions`` with ``stream: true`` to an OpenAI-compatible server."""

    def __init__(self, endpoint: str) -> None:
        url = urlparse(endpoint)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.path = url.path.rstrip("/") + "/completions"

    def stream(self, prompt: str, max_tokens: int) -> Iterator[str]:
        """Stream server-sent events; closing the generator closes the connection."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        try:
            body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True})
            conn.request("POST", self.path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
            for raw in resp:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                yield json.loads(data)["choices"][0]["text"]
        finally:
            conn.close()


class Baseline:
    """The completion logic shared by both baselines: one lock, every request runs."""

    def __init__(self, gen: Generator, template: Template, settings: Settings, trace: str) -> None:
        self.gen = gen
        self.template = template
        self.settings = settings
        self.trace = trace
        self.lock = threading.Lock()

    def complete(
        self, uri: str, version: int, text: str, offset: int, language: str, received: float
    ) -> tuple[str, int]:
        """Run the model for a cursor (blocking); the suggestion and how many characters it replaces."""
        started = received
        s = self.settings
        # an automatic window (-1) is the smallest suggest-ls would pick: never more prompt than it evaluates
        tokens = s.prompt_tokens if s.prompt_tokens > 0 else PROMPT_TOKENS_MIN
        prefix, suffix = window(text, offset, tokens, s.suffix_share)
        cursor = Cursor(prefix, suffix, language, uri)
        why = should_complete(cursor)
        if why:
            self._record(uri, version, why, started)
            return "", 0
        block = wants_block(cursor, s.multiline)
        lines = cursor.prefix.split("\n")[:-1]
        opener = next((ln for ln in reversed(lines) if ln.strip()), "")
        rule = StopRule(
            multiline=block,
            base_indent=(len(opener) - len(opener.lstrip(" \t"))) if block else len(cursor.indent),
            line_started=bool(cursor.line_prefix.strip()),
            stop=self.template.stop,
        )
        prompt = build_prompt(cursor, self.template)
        with self.lock:
            admitted = time.perf_counter()
            raw = ""
            pieces = 0
            first = 0.0
            stream = self.gen.stream(prompt, s.max_tokens_multiline if block else s.max_tokens)
            try:
                for piece in stream:
                    pieces += 1
                    first = first or time.perf_counter()
                    raw += piece
                    if should_stop(raw, rule):
                        break
            finally:
                close = getattr(stream, "close", None)
                if close:
                    close()
            end = time.perf_counter()
        cleaned = clean(raw, cursor, rule)
        self._record(
            uri,
            version,
            "shown" if cleaned.text else cleaned.reason,
            started,
            queue_ms=(admitted - started) * 1000,
            ttft_ms=((first or end) - started) * 1000,
            engine_ms=(end - started) * 1000,
            generated_tokens=pieces,
            ran=True,
        )
        return cleaned.text, cleaned.replace

    def _record(self, uri: str, version: int, outcome: str, started: float, **extra: float) -> None:
        if not self.trace:
            return
        record = {"uri": uri, "version": version, "outcome": outcome, "at": time.time()}
        record["total_ms"] = (time.perf_counter() - started) * 1000
        record.update(extra)
        with open(self.trace, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


def serve(baseline: Baseline) -> None:
    """Serve LSP on stdio with pygls: documents, inline completion, a ready ``suggest/status``."""
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer
    from pygls.workspace import TextDocument

    server = LanguageServer("baseline", "0")

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline(ls: LanguageServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        doc: TextDocument = ls.workspace.get_text_document(params.text_document.uri)
        received = time.perf_counter()
        offset = doc.offset_at_position(params.position)
        text, replace = await asyncio.to_thread(
            baseline.complete, doc.uri, doc.version or 0, doc.source, offset, doc.language_id or "", received
        )
        if not text:
            return types.InlineCompletionList(items=[])
        end = types.Position(params.position.line, params.position.character + replace)
        item = types.InlineCompletionItem(insert_text=text, range=types.Range(params.position, end))
        return types.InlineCompletionList(items=[item])

    @server.feature("suggest/status")
    def status(ls: LanguageServer, params: Any) -> dict[str, Any]:
        return {"state": "ready"}

    server.start_io()


def main(argv: list[str] | None = None) -> int:
    """``python -m suggest_ls.bench.baseline --mode naive|openai ...``"""
    p = argparse.ArgumentParser(prog="baseline")
    p.add_argument("--mode", choices=["naive", "openai"], required=True)
    p.add_argument("--model", required=True, help="GGUF path (naive) or the one the OpenAI server serves")
    p.add_argument("--endpoint", default="", help="OpenAI-compatible base URL (openai mode)")
    p.add_argument("--trace", default="")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--settings", default="{}", help="suggest-ls settings as JSON (same prompt budget)")
    args = p.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    from suggest_ls.settings import resolve

    settings, _ = resolve(json.loads(args.settings))
    local = InProcess(args.model, settings.context_size, args.threads, vocab_only=args.mode == "openai")
    info = local.info()
    gen: Generator = local if args.mode == "naive" else OpenAI(args.endpoint)
    template = detect_template(info, settings.template)
    serve(Baseline(gen, template, settings, args.trace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
