"""The JSON-RPC protocol, hardened: every request gets exactly one answer and bad input is survived.

Parameters are structured strictly (no int for a bool, no number for a string); a TCP client
authenticates with its first message; lifecycle rules admit what may come when; a suggestion
waits while input the client sent before it is unread. Well-formed didChange and inline
completion answers take fast paths past pygls' typed dispatch.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs
from cattrs import transform_error
from cattrs.errors import ClassValidationError
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol, default_converter
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage
from pygls.protocol.language_server import lsp_method

from suggest_ls.completion.stats import STALE_EMPTIED, UNREAD_SEND
from suggest_ls.lsp.convert import Change, plain_change, plain_inline_result
from suggest_ls.lsp.document import Document
from suggest_ls.lsp.framing import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    SERVER_NOT_INITIALIZED,
    BodyError,
    check_message,
    decode_body,
    error_response,
    request_id,
    valid_id,
)
from suggest_ls.lsp.lograte import LogLimiter
from suggest_ls.security import token_matches

log = logging.getLogger(__name__)
MAX_DEFERRALS = 3  # a suggestion waits at most this many input chunks for the changes before it


class DocumentHost(Protocol):
    """What the protocol needs of the server whose documents its fast paths and checks reach."""

    @property
    def documents(self) -> Mapping[str, Document]:
        """The open documents by URI."""

    def change(self, uri: str, version: int, changes: list[Change]) -> None:
        """Apply a didChange given as plain values."""

    def rejected_notification(self, method: str, params: Any) -> None:
        """A notification whose parameters did not fit the LSP types was dropped."""


class _Rejected:
    """A request whose parameters did not fit the protocol's types; answered with an error."""

    def __init__(self, msg_id: Any, method: str, error: JsonRpcException) -> None:
        self.id = msg_id
        self.method = method
        self.error = error


class _RejectedNotification:
    """A notification whose parameters did not fit the protocol's types; dropped with a logged reason."""

    def __init__(self, method: str, params: Any, detail: str) -> None:
        self.method = method
        self.params = params
        self.detail = detail


class Unauthorized(Exception):
    """A TCP client that did not present the token; its connection is closed."""


def _strict_int(value: Any, _type: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError("expected an integer")
    return int(value)


def _strict_bool(value: Any, _type: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected a boolean")
    return value


def _strict_str(value: Any, _type: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


class SuggestProtocol(LanguageServerProtocol):
    """The base protocol, hardened: every request gets exactly one answer and bad input is survived.

    Bodies come in through ``receive`` (the framing is ``suggest_ls.lsp.framing``): unparsable JSON is
    answered with ParseError, a malformed message with InvalidRequest, parameters that do not fit
    the LSP types with InvalidParams (pygls alone drops such requests unanswered), requests before
    ``initialize`` with ServerNotInitialized and requests after ``shutdown`` with InvalidRequest.
    Logs name the method and the failing field, never the values (they may be document text).
    ``host`` is set by the server that owns the protocol: what the fast paths need of it.
    """

    host: DocumentHost

    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        converter.register_structure_hook(int, _strict_int)
        converter.register_structure_hook(bool, _strict_bool)  # bool is an int: it needs its own hook
        converter.register_structure_hook(str, _strict_str)
        self.initialized = False
        self.shutting_down = False
        self.token = ""  # when set, ``initialize`` must carry initializationOptions.authToken
        self.authenticated = True
        self.answered_errors = 0
        self._stale_watch: dict[Any, tuple[str, Document, int]] = {}
        # A suggestion request's document version when it was read: its handler starts later (a task),
        # and a change read in the same chunk of input is applied before it starts.
        self._read_at: dict[Any, int] = {}
        self._unanswered: Any = None  # the request being read, until something answers it
        self._background: set[asyncio.Future[Any]] = set()
        # Whether client input waits unread (stdio pipes only); suggestions held back meanwhile.
        self.input_pending: Callable[[], bool] | None = None
        self._deferred: list[tuple[Any, Any]] = []
        self._deferrals: dict[Any, int] = {}
        # What a client can repeat without end is logged a few lines per template and window.
        self.faults = LogLimiter(log)

    # ----- bytes in -----
    def receive(self, body: bytes) -> None:
        """Handle one framed message body; a fault in it is logged (and answered), never fatal."""
        self._unanswered = None
        try:
            self._receive(body)
        except (BrokenPipeError, Unauthorized):
            raise
        except Exception:
            log.exception("a message could not be handled")
            if self._unanswered is not None:
                self._answer_error(self._unanswered, INTERNAL_ERROR, "internal error (see the server log)")

    def _receive(self, body: bytes) -> None:
        try:
            obj, warning = decode_body(body)
        except BodyError as exc:
            self.faults.warning("message of %d bytes not parsed: %s", len(body), exc)
            self._answer_error(None, PARSE_ERROR, f"parse error: {exc}")
            if self.token and not self.authenticated:
                raise Unauthorized from exc
            return
        if warning:
            self.faults.warning("message of %d bytes: %s", len(body), warning)
        why = check_message(obj)
        if self.token and not self.authenticated:
            self._authenticate(obj if isinstance(obj, dict) and not why else {})
        if why:
            self.faults.warning("invalid message: %s", why)
            if not (isinstance(obj, dict) and "method" not in obj and valid_id(obj.get("id"))):
                self._answer_error(request_id(obj), INVALID_REQUEST, f"invalid request: {why}")
            return
        msg_id = self._unanswered = request_id(obj)
        if log.isEnabledFor(logging.DEBUG):  # debug logging shows message bodies, document text included
            initialize = obj.get("method") == types.INITIALIZE  # re-serialized: its authToken was removed above
            log.debug("<- %s", json.dumps(obj)[:4000] if initialize else body[:4000].decode("utf-8", "replace"))
        if not self._admit(obj):
            return
        if msg_id is None and obj.get("method") == types.TEXT_DOCUMENT_DID_CHANGE:
            plain = plain_change(obj.get("params"))
            if plain is not None:  # every keystroke: no typed structuring, no pygls dispatch
                self.host.change(*plain)
                return
        message = self.structure_message(obj)
        if msg_id is not None and not isinstance(message, _Rejected) and not hasattr(message, "id"):
            self.faults.warning("%s is a notification but came with an id", obj["method"])
            self._answer_error(msg_id, INVALID_REQUEST, f"{obj['method']} is a notification, not a request")
            return
        cancel_id = getattr(getattr(message, "params", None), "id", None)
        if obj.get("method") == types.CANCEL_REQUEST and not isinstance(message, _Rejected) and not valid_id(cancel_id):
            self.faults.warning("$/cancelRequest without a valid id dropped")
            return
        if obj.get("method") == types.INITIALIZE and not isinstance(message, _Rejected):
            self.initialized = True
        elif obj.get("method") == types.SHUTDOWN:
            self.shutting_down = True
        self.handle_message(message)
        self._unanswered = None  # pygls answers from here on (errors in handlers included)

    def _authenticate(self, obj: dict[str, Any]) -> None:
        """Accept only an ``initialize`` carrying the token; anything else closes the connection."""
        params = obj.get("params")
        options = params.get("initializationOptions") if isinstance(params, dict) else None
        presented = options.pop("authToken", None) if isinstance(options, dict) else None
        if obj.get("method") == types.INITIALIZE and token_matches(self.token, presented):
            self.authenticated = True
            log.info("client authenticated")
            return
        log.warning("unauthenticated %s refused: initializationOptions.authToken missing or wrong", obj.get("method"))
        self._answer_error(request_id(obj), INVALID_REQUEST, "unauthorized: initializationOptions.authToken required")
        raise Unauthorized

    def _admit(self, obj: dict[str, Any]) -> bool:
        """Lifecycle rules: nothing but ``initialize``/``exit`` before initialize, only ``exit`` after shutdown."""
        method = obj.get("method")
        if method is None or method == types.EXIT:
            return True
        msg_id = request_id(obj)
        if self.shutting_down:
            self.faults.warning("%s after shutdown refused", method)
            if msg_id is not None:
                self._answer_error(msg_id, INVALID_REQUEST, "the server is shutting down")
            return False
        if method == types.INITIALIZE and self.initialized:
            self.faults.warning("second initialize refused")
            self._answer_error(msg_id, INVALID_REQUEST, "already initialized")
            return False
        if method != types.INITIALIZE and not self.initialized:
            self.faults.warning("%s before initialize refused", method)
            if msg_id is not None:
                self._answer_error(msg_id, SERVER_NOT_INITIALIZED, "the server is not initialized")
            return False
        return True

    def version_when_read(self) -> int | None:
        """The current request's document version when the request was read (None: unknown)."""
        return self._read_at.pop(self.msg_id, None) if self.msg_id is not None else None

    def _note_read(self, message: Any) -> None:
        """Remember the version of the document a suggestion request names, as it is read."""
        doc = self.host.documents.get(message.params.text_document.uri)
        if doc is not None:
            if len(self._read_at) > 1000:  # requests whose handler never asked (none expected)
                self._read_at.clear()
            self._read_at[message.id] = doc.version

    def watch_stale(self, uri: str, doc: Document, version: int) -> None:
        """Check the current request's document version again when its answer is sent."""
        if self.msg_id is not None:
            self._stale_watch[self.msg_id] = (uri, doc, version)

    def _send_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        """Send an answer; a suggestion for a document changed since the request goes out empty."""
        if msg_id == self._unanswered:
            self._unanswered = None
        watched = self._stale_watch.pop(msg_id, None)
        if watched is not None and error is None and attrs.has(type(result)) and getattr(result, "items", None):
            uri, doc, version = watched
            if doc.version != version or self.host.documents.get(uri) is not doc:
                log.info("no suggestion for %s: stale (v%d %s)", uri, version, STALE_EMPTIED)
                result = attrs.evolve(result, items=[])
        plain = plain_inline_result(result) if error is None else None
        if plain is not None and plain["items"] and self._defer(msg_id, result, watched):
            return
        if plain is not None:  # every keystroke's answer: written as JSON without cattrs
            self._result_types.pop(msg_id, None)
            self._send_data({"jsonrpc": "2.0", "id": msg_id, "result": plain})
            return
        super()._send_response(msg_id, result, error)

    def _defer(self, msg_id: Any, result: Any, watched: tuple[str, Document, int] | None) -> bool:
        """Hold a suggestion back while input the client sent before it is still unread: it may be a
        change that makes the suggestion stale. It goes out (checked again) once that input is handled."""
        count = self._deferrals.get(msg_id, 0)
        if self.input_pending is None or not self.input_pending():
            self._deferrals.pop(msg_id, None)
            return False
        if count >= MAX_DEFERRALS:
            self._deferrals.pop(msg_id, None)
            log.warning("suggestion for request %s %s (held back %d times)", msg_id, UNREAD_SEND, count)
            return False
        self._deferrals[msg_id] = count + 1
        if watched is not None:
            self._stale_watch[msg_id] = watched
        self._deferred.append((msg_id, result))
        return True

    def send_deferred(self) -> None:
        """Send the suggestions held back by ``_defer`` (the input read so far has been handled)."""
        deferred, self._deferred = self._deferred, []
        for msg_id, result in deferred:
            self._send_response(msg_id, result)

    def _answer_error(self, msg_id: Any, code: int, message: str) -> None:
        self._unanswered = None
        self.answered_errors += 1
        self._send_data(error_response(msg_id, code, message))

    # ----- messages -----
    def structure_message(self, data: Any) -> Any:
        """Structure a message into lsprotocol types; a failure becomes a ``_Rejected*`` with the failing fields."""
        if not isinstance(data, dict) or "jsonrpc" not in data:
            return data
        if "method" in data and "params" not in data:
            data = {**data, "params": None}
        try:
            if "method" in data:
                known = self.get_message_type(data["method"])
                fallback = JsonRPCRequestMessage if "id" in data else JsonRPCNotification
                return self._converter.structure(data, known or fallback)
            if "error" in data:
                return self._converter.structure(data, types.ResponseErrorMessage)
            result_type = self._result_types.pop(data["id"], None) or JsonRPCResponseMessage
            return self._converter.structure(data, result_type)
        except Exception as exc:
            detail = "; ".join(transform_error(exc)) if isinstance(exc, ClassValidationError) else type(exc).__name__
            detail = detail.replace("$.params.", "")
            method = data.get("method")
            if method == types.INITIALIZE:  # never lock out a client over a quirk in its capabilities
                try:
                    lenient = default_converter().structure(data, types.InitializeRequest)
                    log.warning("initialize accepted although its params do not fit the LSP types: %s", detail)
                    return lenient
                except Exception:
                    pass
            if method is None:
                self.faults.warning("response to %r not understood: %s", data.get("id"), detail)
                return None
            if "id" in data:
                return _Rejected(data["id"], str(method), JsonRpcInvalidParams(f"invalid params: {detail}"))
            return _RejectedNotification(str(method), data.get("params"), detail)

    def handle_message(self, message: Any) -> None:
        """Answer rejected requests, report rejected notifications; hand the rest to pygls."""
        if message is None:
            return
        if isinstance(message, _Rejected):
            self.faults.warning("invalid params for %s (id %r): %s", message.method, message.id, message.error.message)
            self.answered_errors += 1
            self._send_response(message.id, error=message.error.to_response_error())
            return
        if isinstance(message, _RejectedNotification):
            self.faults.warning("%s with invalid params dropped: %s", message.method, message.detail)
            self.host.rejected_notification(message.method, message.params)
            return
        if type(message) in (types.InlineCompletionRequest, types.CompletionRequest):
            self._note_read(message)
        if type(message) is types.InlineCompletionRequest and not self._shutdown and message.jsonrpc == "2.0":
            # Every keystroke's request skips pygls' dispatch by typing.Protocol isinstance checks
            # (slow for a path this hot); the handler runs exactly as pygls runs it.
            contextvars.copy_context().run(self._handle_request, message.id, message.method, message.params)
            return
        super().handle_message(message)

    # The server keeps its own documents (document.py): pygls' copies would double the memory
    # and the work per keystroke, and an edit pygls cannot apply would skip ours. These are plain
    # functions, not generators like pygls' own: pygls keeps the future of every generator
    # notification in its table of requests forever (a leak on every keystroke).
    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> None:
        """Hand didOpen to the server without pygls' workspace copy."""
        self._user_handler(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        """Hand didChange to the server without pygls' workspace copy."""
        self._user_handler(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> None:
        """Hand didClose to the server without pygls' workspace copy."""
        self._user_handler(types.TEXT_DOCUMENT_DID_CLOSE, params)

    def _user_handler(self, method: str, params: Any) -> None:
        if (handler := self.fm.features.get(method)) is not None and asyncio.iscoroutine(result := handler(params)):
            task = asyncio.ensure_future(result)
            self._background.add(task)
            task.add_done_callback(self._background.discard)
