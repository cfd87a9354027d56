"""The remote backend against llama.cpp's own ``llama-server``, when it is built.

``scripts/build-llama-server.sh`` builds it (minutes on 2 cores) into the cache outside git; these
tests are skipped until then (or point ``SUGGEST_LS_LLAMA_SERVER`` at a binary).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from suggest_ls.backends.contract import GenRequest, StopRule
from suggest_ls.backends.remote.backend import RemoteBackend
from suggest_ls.backends.remote.client import RemoteConfig
from suggest_ls.backends.switchable import run_job
from suggest_ls.bench.llama_server import find_llama_server, server_command
from suggest_ls.harness.wire import free_port

from .conftest import inline, open_doc, start, status
from .test_remote import stop, wait_up, watch_text

BINARY = find_llama_server()
pytestmark = pytest.mark.skipif(
    BINARY is None or not BINARY.exists(), reason="llama-server not built (scripts/build-llama-server.sh)"
)


@pytest.fixture(scope="module")
def llama_server(model_path):
    assert BINARY is not None
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/v1"
    command = server_command(BINARY, str(model_path), port, slots=2, context_per_slot=2048)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(proc, endpoint)
        yield endpoint
    finally:
        stop(proc)


async def test_llama_server_offers_what_parity_needs(llama_server):
    backend = RemoteBackend(RemoteConfig(llama_server, parallel=2)).start()
    try:
        await asyncio.wrap_future(backend.ready)
        caps = backend.capabilities
        assert caps.streaming and caps.logprobs and caps.timings, caps
        req = GenRequest("u", "def add(a, b):\n    return ", max_tokens=16, rule=StopRule(), alternatives=3)
        result, seen = await watch_text(backend, req, 0.005)
        assert result.outcome == "done" and result.generated_tokens >= 1
        assert 0.0 < result.min_prob < 1.0 and result.min_prob <= result.line_prob <= 1.0
        assert all(result.text.startswith(t) for t in seen)
        if caps.top_logprobs:
            assert result.alternatives and all("\n" not in t for t, _ in result.alternatives)
        # the stream stops at the line's end, before the server's last chunk: the counts still come
        # from the timings of every chunk
        assert result.evaluated_tokens > 0 and result.prompt_tokens >= result.evaluated_tokens
        again = await run_job(backend, req)  # greedy: the same line again
        assert again.text == result.text
        assert again.prompt_tokens == result.prompt_tokens  # what it took from its cache and evaluated
        assert again.cached_tokens + again.evaluated_tokens == again.prompt_tokens
    finally:
        backend.close()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "suggest_ls", "--stdio"]))
async def lsp(lsp_client: LanguageClient):
    """A session each test initializes itself (with ``start``)."""
    yield
    await lsp_client.shutdown_session()


async def test_status_shows_what_llama_server_offers(lsp: LanguageClient, llama_server, model_path):
    await start(lsp, {"backend": "openai", "endpoint": llama_server, "minConfidence": 0})
    current = await status(lsp)
    assert current["state"] == "ready" and current["backend"] == "openai", current
    assert current["model"] == model_path.name  # llama-server lists its model by the path it was given
    remote = current["remote"]
    assert remote["health"] == "up" and remote["endpoint"] == llama_server, remote
    caps = remote["capabilities"]
    assert caps["streaming"] is True and caps["logprobs"] is True and caps["topLogprobs"] >= 1, caps
    open_doc(lsp, "file:///tmp/llama_server.py", "def add(a, b):\n    return ")
    result = await inline(lsp, "file:///tmp/llama_server.py", 1, 11)
    assert len(result.items) == 1 and result.items[0].insert_text.strip()


async def test_the_team_setup_key_and_alias(model_path, tmp_path):
    """As README's Team setup starts it: ``--alias coder --api-key-file``; the key is needed."""
    assert BINARY is not None
    key = "k" * 24
    (tmp_path / "token").write_text(key + "\n")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/v1"
    command = server_command(BINARY, str(model_path), port, slots=1, context_per_slot=2048)
    command += ["--alias", "coder", "--api-key-file", str(tmp_path / "token")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(proc, endpoint, key)
        backend = RemoteBackend(RemoteConfig(endpoint, api_key=key, model="coder")).start()
        try:
            info = await asyncio.wrap_future(backend.ready)
            assert info.path == "coder"
            result = await run_job(backend, GenRequest("u", "def add(a, b):\n    return ", max_tokens=8))
            assert result.outcome == "done" and result.generated_tokens >= 1
        finally:
            backend.close()
        wrong = RemoteBackend(RemoteConfig(endpoint, api_key="wrong" * 5, model="coder")).start()
        try:
            with pytest.raises(Exception, match="401"):
                await asyncio.wrap_future(wrong.ready)
            assert wrong.view()["health"] == "error"
        finally:
            wrong.close()
    finally:
        stop(proc)
