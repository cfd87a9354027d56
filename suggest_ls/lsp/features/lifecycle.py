"""``initialize``, ``initialized``, ``shutdown`` and ``exit``: workspace roots and settings from the
client, the editor process watched, the model loaded, and the process ended with the session."""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types

from suggest_ls.lsp.convert import uri_path
from suggest_ls.lsp.server import SuggestServer


def initialize(ls: SuggestServer, params: types.InitializeParams) -> None:
    """Take the workspace folders and the initialization options; watch the editor process."""
    folders = params.workspace_folders or []
    ls.roots = [uri_path(f.uri) for f in folders]
    if params.root_uri:
        ls.roots.append(uri_path(params.root_uri))
    ls.apply_settings(params.initialization_options)
    if params.process_id:
        ls.watch_parent(params.process_id)


async def initialized(ls: SuggestServer, params: types.InitializedParams) -> None:
    """Start loading the model."""
    ls.start_loading()


async def shutdown(ls: SuggestServer, params: Any) -> None:
    """Stop the backend between decode steps."""
    # each backend is given 0.3 s, even if a step runs longer (exit then ends it)
    await asyncio.to_thread(ls.ops.shutdown, 0.3)


def exit_(ls: SuggestServer, params: Any) -> None:
    """End the process: code 0 after ``shutdown``, else 1."""
    ls.terminate(0 if ls.protocol.shutting_down else 1)


def register(server: SuggestServer) -> None:
    """Register the lifecycle methods."""
    server.feature(types.INITIALIZE)(initialize)
    server.feature(types.INITIALIZED)(initialized)
    server.feature(types.SHUTDOWN)(shutdown)
    server.feature(types.EXIT)(exit_)
