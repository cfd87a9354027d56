"""The OpenAI-compatible remote backend against llama-cpp-python's server on loopback (embedded model)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from suggest_ls.backends.contract import GenRequest, GenResult, StopRule
from suggest_ls.backends.remote.backend import RemoteBackend
from suggest_ls.backends.remote.client import RemoteConfig, RemoteError, base_url
from suggest_ls.backends.switchable import run_job
from suggest_ls.harness.wire import free_port

from .conftest import inline, open_doc, start, status

KEY = "test-key-5e7c"
KEY_ENV = "SUGGEST_LS_TEST_REMOTE_KEY"
PORT = free_port()
ENDPOINT = f"http://127.0.0.1:{PORT}/v1"


def launch(model_path, port: int, api_key: str = "", n_ctx: int = 2048) -> subprocess.Popen:
    """``python -m llama_cpp.server`` on loopback with the embedded model (through the tests' launcher)."""
    command = [
        sys.executable,
        "-m",
        "tests.ops.llama_cpp_server",
        "--model",
        str(model_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
    ]
    if api_key:
        command += ["--api_key", api_key]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_up(proc: subprocess.Popen, endpoint: str, api_key: str = "", seconds: float = 120) -> None:
    """Wait until the server lists its models."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(f"{endpoint}/models", headers=headers)
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                json.loads(resp.read())
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start") from None
            time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def openai_server(model_path):
    """``python -m llama_cpp.server`` on loopback with the embedded model and an API key."""
    proc = launch(model_path, PORT, KEY)
    try:
        wait_up(proc, ENDPOINT, KEY)
        yield ENDPOINT
    finally:
        stop(proc)


def test_endpoint_urls_are_normalized():
    assert base_url("http://h:8000") == ("http", "h", 8000, "/v1")
    assert base_url("https://gpu.example/v1/") == ("https", "gpu.example", 443, "/v1")
    assert base_url("http://h:1/proxy/v1")[3] == "/proxy/v1"
    with pytest.raises(RemoteError, match="http"):
        base_url("ftp://h/v1")


async def watch_text(backend: RemoteBackend, req: GenRequest, poll_s: float = 0.01) -> tuple[GenResult, list[str]]:
    """Run one job, noting each new value of its text so far while it streams; the result and those values."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[GenResult] = loop.create_future()
    job = backend.submit(req, lambda r: loop.call_soon_threadsafe(future.set_result, r))
    seen: list[str] = []
    while not future.done():
        if job.text() and (not seen or seen[-1] != job.text()):
            seen.append(job.text())
        await asyncio.sleep(poll_s)
    return future.result(), seen


async def test_remote_backend_completes_stops_and_cancels(openai_server, model_path):
    backend = RemoteBackend(RemoteConfig(openai_server, api_key=KEY, parallel=2)).start()
    try:
        info = await asyncio.wrap_future(backend.ready)
        assert info.path == str(model_path) and info.device.startswith("remote (127.0.0.1")
        one_line = GenRequest("u", "def add(a, b):\n    return ", max_tokens=32, temperature=0.0, rule=StopRule())
        result = await run_job(backend, one_line)
        assert result.outcome == "done" and result.generated_tokens >= 1
        assert "a" in result.text.split("\n")[0]
        assert "\n" in result.text and result.generated_tokens < 32  # the stop rule ended the stream at the newline
        long = GenRequest(
            "u",
            "Count from one to one thousand: 1, 2, 3, 4,",
            max_tokens=500,
            temperature=0.0,
            rule=StopRule(multiline=True, max_lines=500),
        )
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        handle = backend.submit(long, lambda r: loop.call_soon_threadsafe(future.set_result, r))
        # the speed of this server here, from the first stream
        per_token = (result.total_ms - result.ttft_ms) / 1000 / max(1, result.generated_tokens - 1)
        await asyncio.sleep(max(1.0, 3 * result.ttft_ms / 1000))  # the long stream has begun
        cancelled_at = time.perf_counter()
        handle.cancel.set()
        cancelled = await asyncio.wait_for(future, 60)
        after_cancel = time.perf_counter() - cancelled_at
        assert cancelled.outcome == "cancelled"
        streamed = cancelled.generated_tokens
        assert streamed < 500
        if streamed >= 2:
            per_token = max(per_token, (cancelled.total_ms - cancelled.ttft_ms) / 1000 / (streamed - 1))
        # answered long before the stream would have ended: a quarter of the time the tokens left take
        assert after_cancel < 0.25 * (500 - streamed) * per_token, (after_cancel, per_token, streamed)
        after = await run_job(backend, one_line)  # the server still answers after a dropped stream
        assert after.outcome == "done" and after.text == result.text
    finally:
        backend.close()


async def test_wrong_key_is_an_error_not_a_crash(openai_server):
    backend = RemoteBackend(RemoteConfig(openai_server, api_key="wrong")).start()
    with pytest.raises(Exception, match="401"):
        await asyncio.wrap_future(backend.ready)
    result = await run_job(backend, GenRequest("u", "x = ", max_tokens=4))
    assert result.outcome == "error" and "401" in result.error
    backend.close()


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "suggest_ls", "--stdio"], server_env={**os.environ, KEY_ENV: KEY}
    )
)
async def remote_client(lsp_client: LanguageClient, openai_server):
    # minConfidence 0: this session is about the suggestion getting through, not its confidence
    await start(lsp_client, {**remote_options(openai_server), "minConfidence": 0})
    yield
    await lsp_client.shutdown_session()


def remote_options(endpoint: str) -> dict:
    return {"backend": "openai", "endpoint": endpoint, "apiKeyEnv": KEY_ENV}


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "suggest_ls", "--stdio"], server_env={**os.environ, KEY_ENV: KEY}
    )
)
async def lsp(lsp_client: LanguageClient):
    """A session each test initializes itself (with ``start``)."""
    yield
    await lsp_client.shutdown_session()


async def test_lsp_suggestions_through_the_remote_backend(remote_client: LanguageClient, model_path):
    current = await status(remote_client)
    assert current["state"] == "ready", current
    assert current["backend"] == "openai" and current["device"].startswith("remote (127.0.0.1")
    assert current["model"] == model_path.name and current["quantization"] == "remote"
    open_doc(remote_client, "file:///tmp/remote.py", "def add(a, b):\n    return ")
    result = await inline(remote_client, "file:///tmp/remote.py", 1, 11)
    assert len(result.items) == 1 and "a" in result.items[0].insert_text
    current = await status(remote_client)
    assert current["outcomes"].get("shown") == 1 and current["latency"]["count"] == 1


# ----- parity with the in-process engine -----
async def test_remote_results_carry_the_engines_confidence_figures(openai_server):
    backend = RemoteBackend(RemoteConfig(openai_server, api_key=KEY)).start()
    try:
        await asyncio.wrap_future(backend.ready)
        caps = backend.capabilities
        assert caps.streaming and caps.logprobs and caps.top_logprobs >= 1, caps
        req = GenRequest("u", "def add(a, b):\n    return ", max_tokens=16, rule=StopRule(), alternatives=3)
        result = await run_job(backend, req)
        assert result.outcome == "done" and result.generated_tokens >= 2
        # probabilities of the tokens sampled: a first, the least and the geometric mean between them
        assert 0.0 < result.min_prob < 1.0
        assert result.min_prob <= result.first_prob <= 1.0
        assert result.min_prob <= result.line_prob <= 1.0
        # other first tokens, shaped as in-process: (text so far + the token, its probability)
        assert 1 <= len(result.alternatives) <= 3
        for text, prob in result.alternatives:
            assert text.strip() and "\n" not in text and 0.0 < prob < 1.0
            assert not result.text.startswith(text) or len(text) < len(result.text)
        assert [p for _, p in result.alternatives] == sorted((p for _, p in result.alternatives), reverse=True)
    finally:
        backend.close()


async def test_min_confidence_hides_a_low_confidence_line_remotely(lsp: LanguageClient, openai_server):
    await start(lsp, {**remote_options(openai_server), "minConfidence": 0})
    text = "def add(a, b):\n    return "
    open_doc(lsp, "file:///tmp/confident.py", text)
    shown = await inline(lsp, "file:///tmp/confident.py", 1, 11)
    assert len(shown.items) == 1
    # no line of the small model has every token at 0.999 or more: the same line is refused
    lsp.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"suggestLs": {"minConfidence": 0.999}})
    )
    await asyncio.sleep(0.3)
    open_doc(lsp, "file:///tmp/doubtful.py", text)  # another document: not the typing-through cache
    hidden = await inline(lsp, "file:///tmp/doubtful.py", 1, 11)
    assert not hidden.items
    current = await status(lsp)
    assert any("low confidence" in r for r in map(str, current["recentReasons"])), current["recentReasons"]
    assert current["swaps"] == 0  # minConfidence did not reload the remote


async def test_a_running_remote_job_shows_its_text_so_far(openai_server):
    # a generous job limit: llama_cpp.server's logprobs are slow, more so on a loaded machine
    backend = RemoteBackend(RemoteConfig(openai_server, api_key=KEY, timeout_s=180)).start()
    try:
        await asyncio.wrap_future(backend.ready)
        req = GenRequest(
            "u", "Count from one to fifty: 1, 2, 3, 4,", max_tokens=24, rule=StopRule(multiline=True, max_lines=50)
        )
        result, seen = await watch_text(backend, req)
        assert result.outcome == "done" and result.generated_tokens >= 10, result.error
        assert len(seen) >= 3  # the text grew while the job ran
        assert all(result.text.startswith(t) for t in seen) and len(seen[0]) < len(result.text)
    finally:
        backend.close()


async def test_first_words_through_the_remote_backend(openai_server):
    from suggest_ls.completion.completer import Completer
    from suggest_ls.completion.prompt import FAMILIES
    from suggest_ls.completion.request import CompletionRequest
    from suggest_ls.settings import resolve

    backend = RemoteBackend(RemoteConfig(openai_server, api_key=KEY, timeout_s=180)).start()
    try:
        await asyncio.wrap_future(backend.ready)
        text = "first = ['alpha', 'beta', 'gamma', 'delta', 'epsilon']\nsecond = ['alpha', 'beta', '"
        settings, messages = resolve(
            {"temperature": 0, "debounceMs": 0, "lineBudgetMs": 1, "lineDeadlineMs": 30000, "minConfidence": 0}
        )
        assert not messages
        completer = Completer(backend, FAMILIES["plain"], settings)
        refreshed: list[tuple[str, int]] = []
        completer.refresh_hook = lambda u, v: refreshed.append((u, v))
        uri = "file:///tmp/first-words.py"
        first = await completer.complete(CompletionRequest(uri, 1, text, len(text), "python"))
        # answered from the text streamed so far, before the line was complete
        assert first.record is not None and first.record.early, first
        assert first.text
        for _ in range(600):
            if refreshed:
                break
            await asyncio.sleep(0.05)
        assert refreshed == [(uri, 1)]  # the whole line came after, and the client is told to ask again
        again = await completer.complete(CompletionRequest(uri, 2, text, len(text), "python"))
        assert again.cached and again.text.startswith(first.text) and len(again.text) > len(first.text)
    finally:
        backend.close()


# ----- robustness -----
async def test_settings_of_the_in_process_engine_do_not_reload_a_remote(lsp: LanguageClient, openai_server):
    await start(lsp, remote_options(openai_server))
    before = await status(lsp)
    assert before["state"] == "ready" and before["remote"]["capabilities"]["logprobs"] is True
    lsp.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={
                "suggestLs": {
                    "contextSize": 1024,
                    "gpuLayers": 0,
                    "threads": 1,
                    "batchWindowMs": 5,
                    "draftTokens": 2,
                }
            }
        )
    )
    await asyncio.sleep(1.0)
    after = await status(lsp)
    assert after["swaps"] == before["swaps"] and after["swap"] == before["swap"]
    assert after["remote"]["probes"] == before["remote"]["probes"] and after["state"] == "ready"
    # a setting that matters to a remote does reload it (so the test above could see one)
    lsp.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"suggestLs": {"parallel": 2}}))
    for _ in range(300):
        current = await status(lsp)
        if current["swaps"] == before["swaps"] + 1:
            break
        await asyncio.sleep(0.1)
    assert current["swaps"] == before["swaps"] + 1 and current["parallel"] == 2


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "suggest_ls", "--stdio"]))
async def plain_lsp(lsp_client: LanguageClient):
    """A session without an API key in its environment; each test initializes it."""
    yield
    await lsp_client.shutdown_session()


async def test_a_remote_started_late_or_restarted_brings_the_server_back_to_ready(
    plain_lsp: LanguageClient, model_path
):
    from .conftest import wait_for

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/v1"
    await start(plain_lsp, {"backend": "openai", "endpoint": endpoint, "minConfidence": 0})
    current = await status(plain_lsp)
    assert current["state"] == "degraded" and "unreachable" in current["reason"], current
    assert current["remote"]["health"] == "down"
    asked = 0

    async def ask() -> int:
        """Suggestions for a fresh document (never the typing-through cache of an earlier one)."""
        nonlocal asked
        asked += 1
        uri = f"file:///tmp/late-{asked}.py"
        open_doc(plain_lsp, uri, "def add(a, b):\n    return ")
        result = await inline(plain_lsp, uri, 1, 11, invoked=True)
        return len(result.items) if result is not None else 0

    assert await ask() == 0  # answered, empty, while the server is down
    proc = launch(model_path, port, n_ctx=512)
    try:
        await wait_for(plain_lsp, lambda s: s["state"] == "ready", timeout=180)
        assert await ask() == 1
        stop(proc)  # the server goes away while serving
        assert await ask() == 0
        down = await wait_for(plain_lsp, lambda s: s["state"] == "degraded", timeout=30)
        assert "unreachable" in down["reason"] and down["remote"]["reconnects"] >= 1
        proc = launch(model_path, port, n_ctx=512)
        back = await wait_for(plain_lsp, lambda s: s["state"] == "ready", timeout=180)
        assert back["swaps"] == 0  # the same backend, back by itself: no reload
        assert await ask() == 1
    finally:
        stop(proc)
