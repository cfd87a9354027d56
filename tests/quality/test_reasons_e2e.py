"""Every empty answer of the real server has a reason in suggest/status, also those decided before the completer."""

from __future__ import annotations

import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.e2e.conftest import SERVER, inline, open_doc, start, status


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient):
    await start(lsp_client)
    yield
    await lsp_client.shutdown_session()


async def test_reasons_reach_the_status(client: LanguageClient):
    result = await inline(client, "file:///tmp/never-opened.py", 0, 0)
    assert not result.items
    open_doc(client, "file:///tmp/word.py", "value = 1\n")
    assert not (await inline(client, "file:///tmp/word.py", 0, 3)).items
    open_doc(client, "file:///tmp/short.py", "x = 1\n")
    assert not (await inline(client, "file:///tmp/short.py", 0, 40)).items
    reasons = {(r["uri"], r["reason"]) for r in (await status(client))["recentReasons"]}
    assert ("file:///tmp/never-opened.py", "document not open") in reasons
    assert ("file:///tmp/word.py", "inside a word") in reasons
    assert any(uri == "file:///tmp/short.py" and reason for uri, reason in reasons)
