"""Shared pieces of the operations tests: a requantized model, a free port, LSP helpers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.conftest import CAPABILITIES, as_dict, inline, open_doc

__all__ = ["CAPABILITIES", "as_dict", "change_settings", "inline", "open_doc", "start", "status", "wait_for"]

OPTIONS = {"temperature": 0, "debounceMs": 0}


@pytest.fixture(scope="session")
def quantized(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The embedded model re-quantized to Q4_0 by ``suggest-ls quantize`` (the CLI, in a subprocess)."""
    out = tmp_path_factory.mktemp("quantized") / "gemma-3-270m-q4_0.gguf"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "suggest_ls",
            "quantize",
            str(model_path),
            str(out),
            "--type",
            "Q4_0",
            "--allow-requantize",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out, done


async def start(client: LanguageClient, options: dict | None = None, wait: bool = True) -> types.InitializeResult:
    """Initialize a session (recording status notifications) and wait until the model is loaded."""
    client.statuses = []  # type: ignore[attr-defined]

    @client.feature("suggest/didChangeStatus")
    def _status(params) -> None:
        client.statuses.append(as_dict(params))  # type: ignore[attr-defined]

    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=CAPABILITIES,
            initialization_options={**OPTIONS, **(options or {})},
        )
    )
    if wait:
        await wait_for(client, lambda s: s["state"] != "loading")
    return result


async def status(client: LanguageClient) -> dict:
    """The server's ``suggest/status``."""
    return as_dict(await client.protocol.send_request_async("suggest/status", {}))


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


def change_settings(client: LanguageClient, **settings) -> None:
    """Send workspace/didChangeConfiguration with suggestLs settings."""
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"suggestLs": settings}))
