"""The LSP methods the server answers, one module per method or group; each module's ``register``
adds its handlers to a server. ``create_server`` builds a server with all of them."""

from __future__ import annotations

from suggest_ls.lsp.features import acceptance, completion, configuration, cursor, documents, lifecycle, status
from suggest_ls.lsp.server import SuggestServer

FEATURES = (lifecycle, documents, cursor, completion, configuration, status, acceptance)


def create_server(model_override: str = "") -> SuggestServer:
    """Build the server with all its LSP features registered."""
    server = SuggestServer(model_override)
    for feature in FEATURES:
        feature.register(server)
    return server
