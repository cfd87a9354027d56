"""``textDocument/didOpen``, ``didChange`` and ``didClose`` as plain calls on the server's documents,
and ``suggest/documentState``: a document's copy as a hash, to check that client and server agree."""

from __future__ import annotations

import hashlib
from typing import Any

from lsprotocol import types

from suggest_ls.lsp.convert import Change
from suggest_ls.lsp.server import SuggestServer

DOCUMENT_STATE_METHOD = "suggest/documentState"


def did_open(ls: SuggestServer, params: types.DidOpenTextDocumentParams) -> None:
    """Open the document."""
    item = params.text_document
    ls.open(item.uri, item.text, item.version, item.language_id)


def did_change(ls: SuggestServer, params: types.DidChangeTextDocumentParams) -> None:
    """Apply a didChange that took the typed path (the protocol hands well-formed ones over directly)."""
    changes: list[Change] = []
    for change in params.content_changes:
        if isinstance(change, types.TextDocumentContentChangePartial):
            r = change.range
            changes.append(((r.start.line, r.start.character, r.end.line, r.end.character), change.text))
        else:
            changes.append((None, change.text))
    ls.change(params.text_document.uri, params.text_document.version, changes)


def did_close(ls: SuggestServer, params: types.DidCloseTextDocumentParams) -> None:
    """Close the document."""
    ls.close(params.text_document.uri)


def document_state(ls: SuggestServer, params: Any) -> dict[str, Any] | None:
    """The server's copy of a document as a hash, to check that client and server agree."""
    uri = params.get("uri") if isinstance(params, dict) else getattr(params, "uri", None)
    doc = ls.documents.get(uri) if isinstance(uri, str) else None
    if doc is None:
        return None
    return {
        "uri": doc.uri,
        "version": doc.version,
        "length": len(doc.text),
        "lines": doc.line_count,
        "sha256": hashlib.sha256(doc.text.encode("utf-8", "surrogatepass")).hexdigest(),
        "outOfSync": doc.out_of_sync,
    }


def register(server: SuggestServer) -> None:
    """Register the document methods."""
    server.feature(types.TEXT_DOCUMENT_DID_OPEN)(did_open)
    server.feature(types.TEXT_DOCUMENT_DID_CHANGE)(did_change)
    server.feature(types.TEXT_DOCUMENT_DID_CLOSE)(did_close)
    server.feature(DOCUMENT_STATE_METHOD)(document_state)
