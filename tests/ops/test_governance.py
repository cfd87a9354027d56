"""Resource governance: disabled means no model at all, idle unload and reload on use, the thread cap."""

from __future__ import annotations

import sys

import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from .conftest import change_settings, inline, open_doc, start, status, wait_for

SERVER = [sys.executable, "-m", "suggest_ls", "--stdio"]
FUNC = "def add(a, b):\n    return "


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient):
    await start(lsp_client, {"enabled": False, "threads": 1})
    yield
    await lsp_client.shutdown_session()


async def test_disabled_idle_unload_and_thread_cap(client: LanguageClient):
    # enabled: false from the start: no model is ever loaded
    current = await status(client)
    assert current["state"] == "disabled" and current["loaded"] is False and current["model"] is None
    open_doc(client, "file:///tmp/gov.py", FUNC)
    assert not (await inline(client, "file:///tmp/gov.py", 1, 11)).items
    # turning it on loads the model; a request arriving meanwhile waits for it
    change_settings(client, enabled=True)
    result = await inline(client, "file:///tmp/gov.py", 1, 11)
    assert len(result.items) == 1
    current = await status(client)
    assert current["state"] == "ready" and current["loaded"] is True
    assert current["threads"] == current["threadsNow"] == 1  # the thread cap reaches llama.cpp
    # idle unload after 1 s; the next request loads it again
    change_settings(client, idleUnloadSeconds=1)
    unloaded = await wait_for(client, lambda s: not s["loaded"], timeout=15)
    assert unloaded["state"] == "ready" and "unloaded after 1 s idle" in unloaded["reason"]
    change_settings(client, idleUnloadSeconds=0)
    result = await inline(client, "file:///tmp/gov.py", 1, 11)
    assert len(result.items) == 1
    current = await status(client)
    assert current["loaded"] is True and current["state"] == "ready"
    # turning it off unloads the model; requests are answered empty with the reason
    change_settings(client, enabled=False)
    current = await wait_for(client, lambda s: s["state"] == "disabled")
    assert current["loaded"] is False
    assert not (await inline(client, "file:///tmp/gov.py", 1, 11)).items
    assert (await status(client))["recentReasons"][0]["reason"] == "disabled"
