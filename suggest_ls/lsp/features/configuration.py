"""``workspace/didChangeConfiguration``: the client's settings, applied while serving."""

from __future__ import annotations

from lsprotocol import types

from suggest_ls.lsp.server import SuggestServer


def did_change_configuration(ls: SuggestServer, params: types.DidChangeConfigurationParams) -> None:
    """Apply the new settings (a model swap, disable or re-enable included)."""
    ls.apply_settings(params.settings)


def register(server: SuggestServer) -> None:
    """Register ``workspace/didChangeConfiguration``."""
    server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(did_change_configuration)
