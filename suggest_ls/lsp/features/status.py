"""``suggest/status`` (the server's state, model and counters) and ``suggest/reloadModel`` (switch
the model, or load the current settings again, without a gap)."""

from __future__ import annotations

from typing import Any

from suggest_ls.lsp.convert import param_field
from suggest_ls.lsp.server import SuggestServer
from suggest_ls.ops.status import to_wire

STATUS_METHOD = "suggest/status"
RELOAD_METHOD = "suggest/reloadModel"


def status(ls: SuggestServer, params: Any) -> dict[str, Any]:
    """The server's state for ``suggest/status``."""
    return to_wire(ls.ops.status())


async def reload_model(ls: SuggestServer, params: Any) -> dict[str, Any]:
    """Switch to ``params.model`` (or reload the current settings)."""
    return await ls.reload_model(param_field(params, "model"))


def register(server: SuggestServer) -> None:
    """Register ``suggest/status`` and ``suggest/reloadModel``."""
    server.feature(STATUS_METHOD)(status)
    server.feature(RELOAD_METHOD)(reload_model)
