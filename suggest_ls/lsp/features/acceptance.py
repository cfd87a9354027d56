"""Accepted suggestions, counted for the acceptance rate: the command an item carries
(``suggestLs.accepted``, run by the editor when the item is accepted) and
``suggest/didPartiallyAccept`` (a word or line at a time)."""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types

from suggest_ls.lsp.convert import param_field
from suggest_ls.lsp.server import SuggestServer

log = logging.getLogger(__name__)
# The inline item's command: arguments [{"id", "uri", "length"}]; editors run it when the item is accepted.
ACCEPTED_COMMAND = "suggestLs.accepted"
# Partial acceptance (word/line at a time): params {"id", "acceptedLength"}.
PARTIAL_ACCEPT_NOTIFICATION = "suggest/didPartiallyAccept"


def acceptance_command(ls: SuggestServer, uri: str, text: str, offset: int = -1) -> types.Command:
    """The command an editor runs when it accepts a suggestion (counted for the acceptance rate)."""
    offer = ls.ops.acceptance.offer(uri, len(text), offset, text)
    return types.Command(
        title="suggest-ls: suggestion accepted",
        command=ACCEPTED_COMMAND,
        arguments=[{"id": offer, "uri": uri, "length": len(text)}],
    )


def accepted(ls: SuggestServer, *args: Any) -> bool:
    """The editor accepted the suggestion offered as ``args[0].id``."""
    offer = param_field(args[0], "id") if args else None
    return isinstance(offer, str) and ls.ops.acceptance.accept(offer)


def partially_accepted(ls: SuggestServer, params: Any) -> None:
    """The editor accepted the first ``acceptedLength`` characters of a suggestion."""
    offer, length = param_field(params, "id"), param_field(params, "acceptedLength")
    if isinstance(offer, str) and isinstance(length, int) and not isinstance(length, bool):
        ls.ops.acceptance.accept_partially(offer, length)
    else:
        log.warning("%s needs {id: string, acceptedLength: integer}", PARTIAL_ACCEPT_NOTIFICATION)


def register(server: SuggestServer) -> None:
    """Register the accepted command and ``suggest/didPartiallyAccept``."""
    server.command(ACCEPTED_COMMAND)(accepted)
    server.feature(PARTIAL_ACCEPT_NOTIFICATION)(partially_accepted)
