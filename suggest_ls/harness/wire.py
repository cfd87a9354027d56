"""What both harness clients share: the server command, frames in and out, the answers to the server's own
requests, initialize parameters and LSP positions."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

from suggest_ls.lsp.document import utf16_len
from suggest_ls.lsp.framing import Frame, FrameParser

INLINE = "textDocument/inlineCompletion"
# what the raw client declares: inline and plain completions, full sync, UTF-16 positions
CAPABILITIES: dict[str, Any] = {
    "textDocument": {"inlineCompletion": {}, "completion": {}, "synchronization": {}},
    "general": {"positionEncodings": ["utf-16"]},
}
# an editor like the VS Code and Neovim clients: it asks again on ``suggest/refresh``
EDITOR_CAPABILITIES: dict[str, Any] = {
    "general": {"positionEncodings": ["utf-16"]},
    "textDocument": {"inlineCompletion": {}, "synchronization": {}},
    "experimental": {"suggestRefresh": True},
}


def server_command(*args: str, log_file: str | Path | None = None, log_level: str | None = None) -> list[str]:
    """The command line of a ``suggest-ls --stdio`` subprocess in this interpreter."""
    cmd = [sys.executable, "-m", "suggest_ls", "--stdio"]
    if log_file is not None:
        cmd += ["--log-file", str(log_file)]
    if log_level is not None:
        cmd += ["--log-level", log_level]
    return cmd + list(args)


def frame(body: bytes) -> bytes:
    """``body`` behind a correct ``Content-Length`` header (the body may be anything, valid JSON or not)."""
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def request(msg_id: Any, method: str, params: Any = None) -> dict[str, Any]:
    """A JSON-RPC request (no ``params`` member when there are none)."""
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def notification(method: str, params: Any = None) -> dict[str, Any]:
    """A JSON-RPC notification (no ``params`` member when there are none)."""
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def reply(msg: dict[str, Any]) -> dict[str, Any]:
    """The client's answer to a request from the server: empty settings for ``workspace/configuration``,
    ``null`` for anything else (progress tokens, registrations)."""
    result: Any = None
    if msg["method"] == "workspace/configuration":
        result = [{}] * len((msg.get("params") or {}).get("items", []))
    return {"jsonrpc": "2.0", "id": msg["id"], "result": result}


class Inbox:
    """The server's output: bytes in by any chunks, JSON-RPC messages out; framing errors are kept."""

    def __init__(self) -> None:
        self._parser = FrameParser()
        self.frame_errors: list[str] = []

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The messages completed by ``data``."""
        out = []
        for item in self._parser.feed(data):
            if not isinstance(item, Frame):
                self.frame_errors.append(item.reason)
                continue
            try:
                out.append(json.loads(item.body))
            except ValueError:
                self.frame_errors.append("a body that is not JSON")
        return out


def initialize_params(
    options: dict[str, Any] | None = None,
    capabilities: dict[str, Any] | None = None,
    process_id: int | None = None,
) -> dict[str, Any]:
    """Parameters of ``initialize``: ``options`` are the server's initialization options."""
    return {
        "processId": process_id,
        "rootUri": None,
        "capabilities": CAPABILITIES if capabilities is None else capabilities,
        "initializationOptions": options or {},
    }


def position(text: str, offset: int) -> dict[str, int]:
    """The LSP position (UTF-16 columns) of a string offset."""
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return {"line": line, "character": utf16_len(text[start:offset])}


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
