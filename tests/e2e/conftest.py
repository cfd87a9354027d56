"""A typed LSP client (pytest-lsp) talking to a real ``suggest-ls --stdio`` subprocess; helpers for it."""

from __future__ import annotations

import asyncio
import sys

import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import default_model_env

SERVER = [sys.executable, "-m", "suggest_ls", "--stdio"]
# The end-to-end tests run the default model: the coder model, with its FIM prompt.
CODER = ClientServerConfig(server_command=SERVER, server_env=default_model_env())
CAPABILITIES = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities(),
        completion=types.CompletionClientCapabilities(),
        synchronization=types.TextDocumentSyncClientCapabilities(),
    ),
    window=types.WindowClientCapabilities(work_done_progress=True),
    workspace=types.WorkspaceClientCapabilities(configuration=True),
)
OPTIONS = {"temperature": 0, "debounceMs": 0}


async def start(client: LanguageClient, options: dict | None = None) -> types.InitializeResult:
    """Initialize a session (``client.statuses`` records the status notifications) and wait until the
    model is loaded."""
    client.statuses = []  # type: ignore[attr-defined]

    @client.feature("suggest/didChangeStatus")
    def _status(params) -> None:
        client.statuses.append(as_dict(params))  # type: ignore[attr-defined]

    result = await client.initialize_session(
        types.InitializeParams(capabilities=CAPABILITIES, initialization_options={**OPTIONS, **(options or {})})
    )
    await wait_ready(client)
    return result


async def wait_for(client: LanguageClient, predicate, timeout: float = 60.0) -> dict:
    """Poll ``suggest/status`` until ``predicate(status)`` holds; returns that status."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        current = await status(client)
        if predicate(current):
            return current
        if loop.time() > deadline:
            raise TimeoutError(f"status never matched: {current}")
        await asyncio.sleep(0.1)


async def wait_ready(client: LanguageClient) -> dict:
    """Poll ``suggest/status`` until the server leaves the loading state."""
    return await wait_for(client, lambda s: s["state"] != "loading")


@pytest_lsp.fixture(config=CODER)
async def client(lsp_client: LanguageClient):
    lsp_client.init_result = await start(lsp_client)
    yield
    await lsp_client.shutdown_session()


def open_doc(client: LanguageClient, uri: str, text: str, language: str = "python", version: int = 1) -> None:
    """Send didOpen."""
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)
        )
    )


async def inline(client: LanguageClient, uri: str, line: int, character: int, invoked: bool = False):
    """Ask for an inline completion and return the list."""
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    return await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(trigger_kind=kind),
        )
    )


def as_dict(obj):
    """A custom request's result as plain dicts and lists."""
    if hasattr(obj, "_asdict"):
        return {k: as_dict(v) for k, v in obj._asdict().items()}
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_dict(v) for v in obj]
    return obj


async def status(client: LanguageClient) -> dict:
    """The server's ``suggest/status``."""
    return as_dict(await client.protocol.send_request_async("suggest/status", {}))
