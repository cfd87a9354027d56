"""The remote backend against llama.cpp's own ``llama-server``, when it is built.

``scripts/build-llama-server.sh`` builds it (minutes on 2 cores) into the cache outside git; these
tests are skipped until then (or point ``SUGGEST_LS_LLAMA_SERVER`` at a binary).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from suggest_ls.backends.contract import GenRequest, StopRule
from suggest_ls.backends.remote.backend import RemoteBackend
from suggest_ls.backends.remote.client import RemoteConfig
from suggest_ls.backends.switchable import run_job
from suggest_ls.harness.wire import free_port

from .test_remote import stop, wait_up, watch_text


def _binary() -> Path | None:
    given = os.environ.get("SUGGEST_LS_LLAMA_SERVER")
    if given:
        return Path(given)
    cache = Path(os.environ.get("SUGGEST_LS_CACHE", Path.home() / ".cache" / "suggest-ls")) / "llama-server"
    found = sorted(cache.glob("*/bin/llama-server"))
    return found[-1] if found else None


BINARY = _binary()
pytestmark = pytest.mark.skipif(
    BINARY is None or not BINARY.exists(), reason="llama-server not built (scripts/build-llama-server.sh)"
)


def _cpu_has_amx() -> bool:
    import llama_cpp

    from suggest_ls.backends.llama.loading import cpu_has_amx

    return cpu_has_amx(llama_cpp.llama_print_system_info().decode(errors="replace"))


@pytest.fixture(scope="module")
def llama_server(model_path):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/v1"
    command = [str(BINARY), "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port), "-c", "4096", "-np", "2"]
    if _cpu_has_amx():
        command.append("--no-repack")  # its AMX kernels crash here, as in-process (loading.cpu_has_amx)
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
        assert caps.streaming and caps.logprobs, caps
        req = GenRequest("u", "def add(a, b):\n    return ", max_tokens=16, rule=StopRule(), alternatives=3)
        result, seen = await watch_text(backend, req, 0.005)
        assert result.outcome == "done" and result.generated_tokens >= 1
        assert 0.0 < result.min_prob < 1.0 and result.min_prob <= result.line_prob <= 1.0
        assert all(result.text.startswith(t) for t in seen)
        if caps.top_logprobs:
            assert result.alternatives and all("\n" not in t for t, _ in result.alternatives)
        again = await run_job(backend, req)  # greedy: the same line again
        assert again.text == result.text
    finally:
        backend.close()
