"""The remote backend against a small fake OpenAI-compatible server: stalls, streams cut short, scoring by echo."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from suggest_ls.backends.contract import GenRequest, StopRule
from suggest_ls.backends.remote.backend import RemoteBackend
from suggest_ls.backends.remote.client import RemoteConfig
from suggest_ls.backends.switchable import SwitchableBackend, run_job
from suggest_ls.completion.completer import Completer
from suggest_ls.completion.prompt import FAMILIES
from suggest_ls.completion.request import CompletionRequest
from suggest_ls.settings import resolve


class Fake(BaseHTTPRequestHandler):
    """``/v1/models`` and ``/v1/completions``: a prompt with STALL never gets an answer, one with DROP
    gets one chunk and a closed connection; ``echo`` returns one-character tokens at logprob -1."""

    echo = True
    release = threading.Event()

    def log_message(self, *args):  # quiet
        pass

    def _json(self, data: dict) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._json({"data": [{"id": "fake-model"}]})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = req["prompt"]
        if "STALL" in prompt:
            self.release.wait(30)
            return
        if req.get("echo"):
            if not self.echo:
                self._json({"choices": [{"text": prompt + "x", "logprobs": None}]})
                return
            tokens = [*prompt, "x"]
            self._json(
                {
                    "choices": [
                        {
                            "text": prompt + "x",
                            "logprobs": {
                                "tokens": tokens,
                                "token_logprobs": [None] + [-1.0] * (len(tokens) - 1),
                                "top_logprobs": [None] + [{t: -1.0} for t in tokens[1:]],
                                "text_offset": list(range(len(tokens))),
                            },
                        }
                    ]
                }
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for text in (" a", " +", " b", "\n"):
            chunk = {
                "choices": [
                    {
                        "text": text,
                        "logprobs": {
                            "tokens": [text],
                            "token_logprobs": [-0.5],
                            "top_logprobs": [{text: -0.5, " c": -1.5}],
                        },
                    }
                ]
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
            self.wfile.flush()
            if "DROP" in prompt:
                self.close_connection = True
                return
        self.wfile.write(b"data: [DONE]\r\n\r\n")


@pytest.fixture
def fake():
    Fake.echo = True
    Fake.release = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    Fake.release.set()
    server.shutdown()
    server.server_close()


async def test_a_slow_server_never_blocks_the_event_loop(fake):
    backend = RemoteBackend(RemoteConfig(fake, parallel=2, timeout_s=1.5)).start()
    try:
        await asyncio.wrap_future(backend.ready)
        loop = asyncio.get_running_loop()
        gaps: list[float] = []
        running = True

        async def ticker() -> None:  # how long the loop goes without turning
            last = time.perf_counter()
            while running:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticking = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        futures = []
        for i in range(4):  # more jobs than workers: two wait in the queue
            future = loop.create_future()
            backend.submit(
                GenRequest(f"u{i}", f"STALL {i}", max_tokens=8),
                lambda r, f=future: loop.call_soon_threadsafe(f.set_result, r),
            )
            futures.append(future)
        results = await asyncio.wait_for(asyncio.gather(*futures), 20)
        running = False
        await ticking
        assert all(r.outcome == "error" and "timed out" in r.error for r in results), results
        assert max(gaps) < 0.5  # the loop kept turning while every worker waited on the server
        assert time.perf_counter() - t0 < 15  # each job ended by the read timeout, not by the server
    finally:
        started = time.perf_counter()
        backend.close()
        assert time.perf_counter() - started < 1.0


async def test_closing_cancels_jobs_a_stalled_server_holds(fake):
    backend = RemoteBackend(RemoteConfig(fake, parallel=2, timeout_s=30)).start()
    await asyncio.wrap_future(backend.ready)
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    backend.submit(GenRequest("u", "STALL", max_tokens=8), lambda r: loop.call_soon_threadsafe(future.set_result, r))
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    backend.close()
    result = await asyncio.wait_for(future, 5)
    assert result.outcome == "cancelled" and time.perf_counter() - started < 1.0


async def test_a_stream_cut_short_is_an_error_and_the_backend_probes_again(fake):
    health: list[str] = []
    backend = RemoteBackend(RemoteConfig(fake, backoff_start_s=0.05), on_health=lambda s, why: health.append(s))
    backend.start()
    try:
        await asyncio.wrap_future(backend.ready)
        whole = await run_job(backend, GenRequest("u", "x = ", max_tokens=8, rule=StopRule()))
        assert whole.outcome == "done" and whole.text == " a + b\n"
        assert whole.min_prob == pytest.approx(0.6065, abs=1e-3) and whole.line_prob == pytest.approx(0.6065, abs=1e-3)
        cut = await run_job(backend, GenRequest("u", "DROP x = ", max_tokens=8, rule=StopRule()))
        assert cut.outcome == "error" and "ended early" in cut.error  # never shown as if complete
        for _ in range(100):
            if health[-1:] == ["up"] and "down" in health:
                break
            await asyncio.sleep(0.05)
        assert health == ["up", "down", "up"]  # the server still answers: back up after one probe
    finally:
        backend.close()


async def test_scoring_by_echo_and_reranking_only_where_the_server_scores(fake):
    backend = RemoteBackend(RemoteConfig(fake)).start()
    try:
        await asyncio.wrap_future(backend.ready)
        assert backend.capabilities.score is None
        assert backend.scores() is False  # not probed yet: probed now, in the background
        for _ in range(100):
            if backend.capabilities.score is not None:
                break
            await asyncio.sleep(0.02)
        assert backend.scores() is True, backend.capabilities
        # the prompt's characters after score_from, one token each at logprob -1 (the generated one not counted)
        scored = await run_job(backend, GenRequest("u", "abcdef", max_tokens=0, score_from=3))
        assert scored.outcome == "done" and scored.scored_tokens == 3 and scored.score == pytest.approx(-3.0)
    finally:
        backend.close()

    Fake.echo = False
    backend = RemoteBackend(RemoteConfig(fake)).start()
    try:
        await asyncio.wrap_future(backend.ready)
        backend.scores()
        for _ in range(100):
            if backend.capabilities.score is not None:
                break
            await asyncio.sleep(0.02)
        assert backend.scores() is False and "echo" in backend.capabilities.score_reason
        proxy = SwitchableBackend()
        proxy.switch(backend)
        settings, _ = resolve({"candidates": 2, "rerank": "always"})
        completer = Completer(proxy, FAMILIES["plain"], settings)
        completer.fast_device = True
        req = CompletionRequest("file:///r.py", 1, "x = ", 4, "python", manual=True)
        assert not completer._reranks(req)  # no scores: no reranking, even when always asked for
        refused = await run_job(backend, GenRequest("u", "abc", max_tokens=0, score_from=1))
        assert refused.outcome == "error" and "cannot score" in refused.error  # never a made-up score of 0
    finally:
        backend.close()
