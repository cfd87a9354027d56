"""The server log reaches the editor as ``window/logMessage`` with its levels; stdout stays protocol only."""

from __future__ import annotations

import asyncio
import json
import subprocess

from lsprotocol import types
from pytest_lsp import LanguageClient

from suggest_ls.lsp.framing import FrameParser, encode

from .conftest import SERVER


async def _logged(client: LanguageClient, text: str, timeout: float = 10.0) -> types.LogMessageParams:
    for _ in range(int(timeout / 0.05)):
        found = [m for m in client.log_messages if text in m.message]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} not logged to the client: {[m.message for m in client.log_messages][-10:]}")


async def test_log_lines_reach_the_client_with_their_levels(client: LanguageClient):
    ready = await _logged(client, "suggest_ls.ops.lifecycle: ready: ")
    assert ready.type == types.MessageType.Info
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri="file:///tmp/never-opened.py", version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text="x = 1\n")],
        )
    )
    warning = await _logged(client, "didChange for a document that is not open")
    assert warning.type == types.MessageType.Warning
    assert warning.message.startswith("suggest_ls.lsp.protocol: ")  # the editor adds time and level itself
    assert not [m for m in client.log_messages if m.type == types.MessageType.Error]


def test_stdout_carries_only_the_protocol_and_stderr_no_log_lines(tmp_path):
    err = tmp_path / "stderr.txt"
    with err.open("wb") as stderr:
        proc = subprocess.Popen([*SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        assert proc.stdin is not None and proc.stdout is not None
        init = {"processId": None, "capabilities": {}, "initializationOptions": {"debounceMs": 0}}
        proc.stdin.write(encode({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}))
        proc.stdin.write(encode({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
        proc.stdin.write(encode({"jsonrpc": "2.0", "id": 2, "method": "suggest/nothing", "params": {}}))
        proc.stdin.write(encode({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}))
        proc.stdin.write(encode({"jsonrpc": "2.0", "method": "exit"}))
        proc.stdin.close()
        out = proc.stdout.read()
        assert proc.wait(60) == 0
    parser = FrameParser()
    frames = parser.feed(out)
    assert not parser.incomplete
    messages = [json.loads(f.body) for f in frames]  # every byte of stdout is a framed JSON-RPC message
    assert all(m["jsonrpc"] == "2.0" for m in messages)
    logged = [m["params"] for m in messages if m.get("method") == "window/logMessage"]
    assert any(p["message"] == "suggest_ls.lsp.server: exiting with code 0" and p["type"] == 3 for p in logged)
    assert {1, 2} <= {m.get("id") for m in messages}
    # llama.cpp's own loader may write to stderr; our log lines do not
    assert " suggest_ls." not in err.read_text(errors="replace")
