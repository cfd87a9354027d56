"""``suggest/didMoveCursor`` (``{textDocument: {uri}, position}``): where the user is; the prompt is
warmed there."""

from __future__ import annotations

import logging
from typing import Any

from suggest_ls.lsp.convert import param_field
from suggest_ls.lsp.document import PositionError
from suggest_ls.lsp.server import WARM_CURSOR_S, SuggestServer

log = logging.getLogger(__name__)
CURSOR_NOTIFICATION = "suggest/didMoveCursor"


def cursor_moved(ls: SuggestServer, params: Any) -> None:
    """Warm the prompt where the cursor is."""
    document, position = param_field(params, "textDocument"), param_field(params, "position")
    uri = param_field(document, "uri") if document is not None else None
    line = param_field(position, "line") if position is not None else None
    character = param_field(position, "character") if position is not None else None
    if not isinstance(uri, str) or not all(isinstance(v, int) and not isinstance(v, bool) for v in (line, character)):
        log.warning("%s needs {textDocument: {uri}, position: {line, character}}", CURSOR_NOTIFICATION)
        return
    doc = ls.documents.get(uri)
    if doc is None:
        return
    try:
        offset = doc.offset(line, character, strict=True)  # type: ignore[arg-type]
    except PositionError as exc:
        log.debug("%s for %s: %s", CURSOR_NOTIFICATION, uri, exc)
        return
    ls.schedule_warm(uri, offset, WARM_CURSOR_S)


def register(server: SuggestServer) -> None:
    """Register ``suggest/didMoveCursor``."""
    server.feature(CURSOR_NOTIFICATION)(cursor_moved)
