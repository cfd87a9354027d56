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
from pytest_lsp import ClientServerConfig, LanguageClient

from suggest_ls.clean import StopRule
from suggest_ls.engine import GenRequest
from suggest_ls.remote import RemoteBackend, RemoteConfig, RemoteError, base_url
from suggest_ls.swap import run_job

from .conftest import free_port, inline, open_doc, start, status

KEY = "test-key-5e7c"
KEY_ENV = "SUGGEST_LS_TEST_REMOTE_KEY"
PORT = free_port()
ENDPOINT = f"http://127.0.0.1:{PORT}/v1"


@pytest.fixture(scope="module")
def openai_server(model_path):
    """``python -m llama_cpp.server`` on loopback with the embedded model and an API key."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(PORT),
            "--n_ctx",
            "2048",
            "--api_key",
            KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    request = urllib.request.Request(f"{ENDPOINT}/models", headers={"Authorization": f"Bearer {KEY}"})
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(request, timeout=2) as resp:
                    json.loads(resp.read())
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not start") from None
                time.sleep(0.3)
        yield ENDPOINT
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_endpoint_urls_are_normalized():
    assert base_url("http://h:8000") == ("http", "h", 8000, "/v1")
    assert base_url("https://gpu.example/v1/") == ("https", "gpu.example", 443, "/v1")
    assert base_url("http://h:1/proxy/v1")[3] == "/proxy/v1"
    with pytest.raises(RemoteError, match="http"):
        base_url("ftp://h/v1")


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
    await start(lsp_client, {"backend": "openai", "endpoint": openai_server, "apiKeyEnv": KEY_ENV})
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
