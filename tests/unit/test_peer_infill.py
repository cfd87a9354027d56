"""The llama.vim-shaped peer of ``bench latency``: its requests, its cache and throttling, its figures."""

from __future__ import annotations

import asyncio
import json

from suggest_ls.bench.latency_analysis import summarise
from suggest_ls.bench.peer_infill import LlamaVim, analyse, local_context, render
from suggest_ls.harness.typist import Keystroke, Source

TEXT = "def add(a, b):\n\n\nprint(add(1, 2))\n"
SOURCE = Source("file:///t.py", "/t.py", TEXT, len("def add(a, b):\n"), "    return a + b")


class FakeInfill:
    """An ``/infill`` endpoint that answers ``content`` after ``delay_s`` and keeps what it was sent."""

    def __init__(self, content: str, delay_s: float) -> None:
        self.content = content
        self.delay_s = delay_s
        self.bodies: list[dict] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(x for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")).split(b":")[1])
        body = json.loads(await reader.readexactly(length))
        self.bodies.append(body)
        await asyncio.sleep(self.delay_s if body.get("n_predict") else 0)
        data = json.dumps({"content": self.content, "timings/prompt_n": 7, "timings/predicted_n": 3}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(data) + data)
        await writer.drain()
        writer.close()

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


def test_local_context_is_llama_vims():
    lines = ["import os", "def f(x):", "    return x", ""]
    ctx = local_context(lines, 2, 8)
    assert (ctx.prefix, ctx.middle, ctx.suffix) == ("import os\ndef f(x):\n", "    retu", "rn x\n\n")
    assert ctx.indent == 4
    blank = local_context(["a", "   ", "b"], 1, 3)  # a line of blanks: from its start, indent 0
    assert (blank.middle, blank.suffix, blank.indent) == ("", "\nb\n", 0)
    after = local_context(lines, 2, 12, prev=["  # done"], indent_last=4)  # as if accepted
    assert after.middle == "    return x  # done" and after.line_cur_suffix == ""


def test_render_drops_what_repeats_the_text_below():
    lines = ["def f():", "    ", "    return 1"]
    assert render("    return 1\n", lines, 1, 4) == ([""], False)  # the next line again: nothing to show
    assert render("x = 2\n", lines, 1, 4) == (["x = 2"], True)
    assert render("", lines, 1, 4) == ([""], False)


async def test_requests_are_shaped_as_llama_vims_and_one_runs_at_a_time():
    fake = FakeInfill("return a + b", 0.3)
    url = await fake.start()
    client = LlamaVim(url, [SOURCE])
    client.start()
    try:
        start = SOURCE.start
        client.type(Keystroke(0.0, 0, start, "    r", False))  # asks
        await asyncio.sleep(0.05)
        client.type(Keystroke(0.05, 0, start + 5, "e", True))  # one in flight: waits for it
        assert len(fake.bodies) == 1
        body = fake.bodies[0]
        assert body["input_prefix"] == "def add(a, b):\n" and body["prompt"] == "    r"
        assert body["input_suffix"].startswith("\n\nprint(add(1, 2))")
        assert body["samplers"] == ["top_k", "top_p", "infill"] and (body["top_k"], body["top_p"]) == (40, 0.9)
        assert body["cache_prompt"] is True and body["id_slot"] == 0 and body["n_predict"] == 128
        assert body["t_max_predict_ms"] == 250 and body["t_max_prompt_ms"] == 500
        assert isinstance(body["input_extra"], list) and body["n_indent"] == 4
        for _ in range(100):
            await asyncio.sleep(0.05)
            if client.job is None and client.timer is None:
                break
    finally:
        await client.close()
        fake.close()
    first, second = client.typed
    # the first keystroke's answer came after the second keystroke: stale; the second was asked
    # about once the first request finished
    assert first.via == "stale" and first.shown
    assert second.answered and second.asked
    assert len(fake.bodies) >= 2 and fake.bodies[1]["prompt"] == "    re"
    raw = analyse(client)
    assert raw["counts"]["stale"] == 1 and raw["counts"]["unanswered"] == 0
    assert raw["counts"]["model_runs"] == len(client.asked)
    figures = summarise("llama.vim", [raw])
    assert figures["server_ms_last_keystroke"]["n"] == 1 and figures["keystrokes"] == 2


async def test_typing_through_a_cached_suggestion_shows_the_rest_at_once():
    fake = FakeInfill("eturn a + b", 0.0)
    url = await fake.start()
    client = LlamaVim(url, [SOURCE])
    try:
        start = SOURCE.start
        client.type(Keystroke(0.0, 0, start, "    r", True))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if client.job is None and client.timer is None:
                break
        asked = len(fake.bodies)
        typed = client.type(Keystroke(0.5, 0, start + 5, "e", True))
        assert typed.via == "cache" and typed.shown and typed.answered - typed.typed_at < 0.05
        assert client.hint is not None and client.hint[0] == ["turn a + b"]
        await asyncio.sleep(0.3)
        # the first hint's follow-up (as if accepted) already asked for "    return a + b", the same
        # text as this one's: only the text as typed is asked for (llama.vim does not cache the rest)
        prompts = [(b["prompt"], b["t_max_predict_ms"]) for b in fake.bodies]
        assert prompts[:asked] == [("    r", 250), ("    return a + b", 1000)]
        assert prompts[asked:] == [("    re", 250)]
    finally:
        await client.close()
        fake.close()
