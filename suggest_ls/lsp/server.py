"""The LSP boundary: the only module that knows pygls and lsprotocol."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import select
import stat
import sys
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import attrs
from cattrs import transform_error
from cattrs.errors import ClassValidationError
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, default_converter
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage
from pygls.protocol.language_server import lsp_method

from suggest_ls import __version__
from suggest_ls.backends.contract import LoadInfo
from suggest_ls.completion.completer import MAX_DOCUMENT_CHARS, MAX_LINE_CHARS, Completer
from suggest_ls.completion.request import CompletionRequest, Suggestion
from suggest_ls.completion.stats import STALE_EMPTIED, UNREAD_SEND, Record, Recorder
from suggest_ls.lsp.document import Document, PositionError, units_len
from suggest_ls.lsp.framing import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    SERVER_NOT_INITIALIZED,
    BodyError,
    FrameError,
    FrameParser,
    check_message,
    decode_body,
    encode,
    error_response,
    request_id,
    valid_id,
)
from suggest_ls.lsp.lograte import LogLimiter
from suggest_ls.ops.operations import Operations
from suggest_ls.security import token_matches
from suggest_ls.settings import SECTION, Settings, resolve

log = logging.getLogger(__name__)
STATUS_METHOD = "suggest/status"
STATUS_NOTIFICATION = "suggest/didChangeStatus"
REFRESH_NOTIFICATION = "suggest/refresh"  # a whole line waits where first words were shown: ask again
REFRESH_CAPABILITY = "suggestRefresh"  # in the client's experimental capabilities: it follows them
RELOAD_METHOD = "suggest/reloadModel"
# The inline item's command: arguments [{"id", "uri", "length"}]; editors run it when the item is accepted.
ACCEPTED_COMMAND = "suggestLs.accepted"
# Partial acceptance (word/line at a time): params {"id", "acceptedLength"}.
PARTIAL_ACCEPT_NOTIFICATION = "suggest/didPartiallyAccept"
CURSOR_NOTIFICATION = "suggest/didMoveCursor"  # {textDocument: {uri}, position}: where the user is
# Delays before warming the prompt at a place (suggest_ls.completion.completer.Completer.warm): a request
# arriving meanwhile makes it moot.
WARM_CURSOR_S, WARM_EDIT_S = 0.15, 0.4
_MESSAGE_TYPES = {"error": types.MessageType.Error, "warning": types.MessageType.Warning}
DOCUMENT_STATE_METHOD = "suggest/documentState"
AUTH_TIMEOUT_S = 10.0
MAX_DEFERRALS = 3  # a suggestion waits at most this many input chunks for the changes before it


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


Change = tuple[tuple[int, int, int, int] | None, str]


def _plain_position(p: types.Position) -> dict[str, int]:
    return {"line": p.line, "character": p.character}


def _plain_inline_result(result: Any) -> dict[str, Any] | None:
    """An InlineCompletionList of plain-text items as the JSON the typed converter writes; None for
    any other result (the converter handles it)."""
    if type(result) is not types.InlineCompletionList:
        return None
    items: list[dict[str, Any]] = []
    for item in result.items:
        if type(item.insert_text) is not str or item.filter_text is not None:
            return None
        out: dict[str, Any] = {"insertText": item.insert_text}
        if item.range is not None:
            out["range"] = {"start": _plain_position(item.range.start), "end": _plain_position(item.range.end)}
        if item.command is not None:
            c = item.command
            out["command"] = {"title": c.title, "command": c.command}
            if c.tooltip is not None:
                out["command"]["tooltip"] = c.tooltip
            if c.arguments is not None:
                out["command"]["arguments"] = list(c.arguments)
        items.append(out)
    return {"items": items}


def _plain_change(params: Any) -> tuple[str, int, list[Change]] | None:
    """didChange params as plain values when they are exactly well-formed; None leaves the message to
    the typed path, which reports what is wrong with it."""
    if type(params) is not dict:
        return None
    doc, changes = params.get("textDocument"), params.get("contentChanges")
    if type(doc) is not dict or type(changes) is not list:
        return None
    uri, version = doc.get("uri"), doc.get("version")
    if type(uri) is not str or type(version) is not int:
        return None
    out: list[Change] = []
    for change in changes:
        if type(change) is not dict or type(text := change.get("text")) is not str:
            return None
        if "range" not in change:
            out.append((None, text))
            continue
        r = change["range"]
        start, end = (r.get("start"), r.get("end")) if type(r) is dict else (None, None)
        if type(start) is not dict or type(end) is not dict:
            return None
        where = (start.get("line"), start.get("character"), end.get("line"), end.get("character"))
        if any(type(n) is not int or n < 0 or n > 0x7FFFFFFF for n in where):
            return None
        out.append((where, text))  # type: ignore[arg-type]
    return uri, version, out


LOG_METHOD = "window/logMessage"


def log_message_type(levelno: int) -> int:
    """The ``window/logMessage`` type of a log level (debug lines as Log, which every client knows)."""
    if levelno >= logging.ERROR:
        return int(types.MessageType.Error)
    if levelno >= logging.WARNING:
        return int(types.MessageType.Warning)
    if levelno >= logging.INFO:
        return int(types.MessageType.Info)
    return int(types.MessageType.Log)


class ClientLog(logging.Handler):
    """Log records as ``window/logMessage`` notifications with their level, so that an editor shows
    levels as levels (VS Code shows every stderr line as an error); stdout still carries only the
    protocol, as whole messages.

    Records are formatted where the handler runs (the log thread); the event loop only writes the
    framed messages, between the messages it handles, like any other notification. At most
    ``MAX_PENDING`` wait for the loop; more are counted and reported as dropped. Before the loop
    serves a client, and after writing to it failed, records go to ``fallback`` (stderr).
    """

    MAX_PENDING = 2000

    def __init__(self, fallback: logging.Handler) -> None:
        super().__init__()
        self.fallback = fallback
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._write: Callable[[bytes], None] | None = None
        self._pending: deque[tuple[int, str]] = deque()
        self._scheduled = False
        self._dropped = 0

    def attach(self, write: Callable[[bytes], None]) -> None:
        """Send records through ``write`` (a whole framed message a call); call on the serving loop."""
        with self._guard:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            self._write = write

    @property
    def attached(self) -> bool:
        """Whether records go to the client."""
        return self._write is not None

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record for the loop (or hand it to the fallback when no client is served)."""
        if self._write is None:
            self.fallback.handle(record)
            return
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self._guard:
            if len(self._pending) >= self.MAX_PENDING:
                self._dropped += 1
                return
            self._pending.append((log_message_type(record.levelno), text))
            if self._scheduled or self._loop is None:
                return
            self._scheduled = True
            loop = self._loop
        try:
            loop.call_soon_threadsafe(self._send)
        except RuntimeError:  # the loop has closed: flush() writes what waits
            pass

    def _send(self) -> None:
        """Write every waiting record (on the loop, or at exit)."""
        with self._guard:
            items = list(self._pending)
            self._pending.clear()
            self._scheduled = False
            dropped, self._dropped = self._dropped, 0
            write = self._write
        if dropped:
            items.append(
                (int(types.MessageType.Warning), f"{__name__}: {dropped} log lines dropped (the client lagged)")
            )
        if write is None:
            return
        for kind, text in items:
            try:
                write(encode({"jsonrpc": "2.0", "method": LOG_METHOD, "params": {"type": kind, "message": text}}))
            except (OSError, ValueError):  # the client is gone: the rest goes to stderr
                self._write = None
                return

    def flush(self) -> None:
        """Write what waits when the loop cannot any more (``logging.shutdown`` at exit calls this)."""
        loop = self._loop
        if threading.get_ident() == self._loop_thread or loop is None or not loop.is_running():
            self._send()


class SuggestProtocol(LanguageServerProtocol):
    """The base protocol, hardened: every request gets exactly one answer and bad input is survived.

    Bodies come in through ``receive`` (the framing is ``suggest_ls.lsp.framing``): unparsable JSON is
    answered with ParseError, a malformed message with InvalidRequest, parameters that do not fit
    the LSP types with InvalidParams (pygls alone drops such requests unanswered), requests before
    ``initialize`` with ServerNotInitialized and requests after ``shutdown`` with InvalidRequest.
    Logs name the method and the failing field, never the values (they may be document text).
    """

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
        self._stale_watch: dict[Any, tuple[str, Any, int]] = {}
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
            plain = _plain_change(obj.get("params"))
            if plain is not None:  # every keystroke: no typed structuring, no pygls dispatch
                self._server.change(*plain)  # type: ignore[attr-defined]
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

    def watch_stale(self, uri: str, doc: Any, version: int) -> None:
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
            if doc.version != version or self._server.documents.get(uri) is not doc:  # type: ignore[attr-defined]
                log.info("no suggestion for %s: stale (v%d %s)", uri, version, STALE_EMPTIED)
                result = attrs.evolve(result, items=[])
        plain = _plain_inline_result(result) if error is None else None
        if plain is not None and plain["items"] and self._defer(msg_id, result, watched):
            return
        if plain is not None:  # every keystroke's answer: written as JSON without cattrs
            self._result_types.pop(msg_id, None)
            self._send_data({"jsonrpc": "2.0", "id": msg_id, "result": plain})
            return
        super()._send_response(msg_id, result, error)

    def _defer(self, msg_id: Any, result: Any, watched: tuple[str, Any, int] | None) -> bool:
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
            self._server.rejected_notification(message.method, message.params)  # type: ignore[attr-defined]
            return
        if type(message) is types.InlineCompletionRequest and not self._shutdown and message.jsonrpc == "2.0":
            # Every keystroke's request skips pygls' dispatch by typing.Protocol isinstance checks
            # (~60 µs each on Python 3.11); the handler runs exactly as pygls runs it.
            contextvars.copy_context().run(self._handle_request, message.id, message.method, message.params)
            return
        super().handle_message(message)

    # The server keeps its own documents (document.py): pygls' copies would double the memory
    # and the work per keystroke, and an edit pygls cannot apply would skip ours. These are plain
    # functions, not generators like pygls' own: pygls keeps the future of every generator
    # notification in its table of requests forever (a leak of ~1 KB per keystroke).
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


class SuggestServer(LanguageServer):
    """Holds the documents, the settings and the completer; converts LSP types to plain data."""

    protocol: SuggestProtocol
    auth_timeout_s = AUTH_TIMEOUT_S  # a TCP client that must authenticate speaks within this (tests shorten it)

    def __init__(self, model_override: str = "") -> None:
        super().__init__("suggest-ls", __version__, protocol_cls=SuggestProtocol)
        self.documents: dict[str, Document] = {}
        self.settings = Settings()
        self.model_override = model_override
        self.recorder = Recorder()
        self.ops = Operations(self, self.recorder, model_override)
        self.roots: list[str] = []
        self._load_task: asyncio.Future[Any] | None = None
        self._watch_task: asyncio.Future[None] | None = None
        self._warm_timers: dict[str, asyncio.TimerHandle] = {}
        self._start_log_level = logging.getLogger().level  # --log-level's, for logLevel ''
        self.client_log: ClientLog | None = None  # set when the log goes to the stdio client
        self._exiting = False

    # ----- transports and process lifecycle -----
    def start_io(self, stdin: Any = None, stdout: Any = None) -> None:
        """Serve one client on stdin/stdout with the hardened framing; the process ends with the session."""
        stdin = stdin or sys.stdin.buffer
        self.protocol.set_writer(_PipeWriter(stdout or sys.stdout.buffer, self._client_gone))
        try:
            asyncio.run(self._serve_stdio(stdin))
        except BrokenPipeError:
            log.warning("the client closed its end of the pipe")
        except (KeyboardInterrupt, SystemExit):
            pass
        except Exception:
            log.exception("the server loop failed")
        finally:  # never a normal interpreter exit: the stdin thread may hold its lock
            self.terminate(0 if self.protocol.shutting_down else 1)

    async def _serve_stdio(self, stdin: Any) -> None:
        """Serve stdin: read by the event loop itself when it is a pipe or socket, else by a thread."""
        writer = self.protocol.writer
        if self.client_log is not None and isinstance(writer, _PipeWriter):
            self.client_log.attach(writer.write_or_raise)
        pipe = await _pipe_reader(stdin)
        if pipe is None:
            await self._serve_stream(lambda: _thread_reader(stdin))
            return
        self.protocol.input_pending = pipe.pending
        try:
            await self._serve_stream(lambda: pipe.read)
        finally:
            self.protocol.input_pending = None

    async def _serve_stream(self, make_reader: Callable[[], Callable[[], Awaitable[bytes]]]) -> None:
        """Read framed messages until end of input and hand each body to the protocol."""
        read = make_reader()
        parser = FrameParser()
        while True:
            data = await read()
            if not data:
                if parser.incomplete:
                    log.warning("input ended in the middle of a message (%d bytes held)", parser.pending)
                log.info("input closed")
                return
            for item in parser.feed(data):
                if isinstance(item, FrameError):
                    self.protocol.faults.warning("malformed input: %s", item.reason)
                else:
                    self.protocol.receive(item.body)
            self.protocol.send_deferred()
            self.protocol.faults.flush()

    def start_tcp(self, host: str, port: int, token: str = "") -> None:
        """Serve one client session over TCP; with a token, ``initialize`` must present it."""
        try:
            asyncio.run(self._serve_tcp(host, port, token))
        except (KeyboardInterrupt, SystemExit):
            pass
        except Exception:
            log.exception("the server loop failed")
        finally:
            self.terminate(0 if self.protocol.shutting_down else 1)

    async def _serve_tcp(self, host: str, port: int, token: str, ready: Callable[[int], None] | None = None) -> None:
        """Accept connections one at a time until an authenticated session ends."""
        finished = asyncio.Event()
        busy = False

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal busy
            peer = writer.get_extra_info("peername")
            if busy:
                log.warning("second connection from %s refused: one client at a time", peer)
                writer.close()
                return
            busy = True
            self.protocol.token, self.protocol.authenticated = token, not token
            self.protocol.set_writer(writer)  # type: ignore[arg-type]
            log.info("client connected from %s", peer)
            try:
                await self._serve_stream(lambda: _stream_reader(reader, self.protocol, self.auth_timeout_s))
            except Unauthorized:
                log.warning("connection from %s closed: not authenticated", peer)
            except (ConnectionError, TimeoutError) as exc:
                log.warning("connection from %s lost: %s", peer, exc)
            finally:
                busy = False
                writer.close()
            if self.protocol.authenticated:
                finished.set()

        server = await asyncio.start_server(connection, host, port)
        bound = server.sockets[0].getsockname()
        log.info("serving LSP on %s:%s%s", bound[0], bound[1], " (token required)" if token else "")
        if ready:
            ready(int(bound[1]))
        async with server:
            await finished.wait()

    def _client_gone(self) -> NoReturn:
        log.warning("the client closed the pipe; exiting")
        self.terminate(1)

    def terminate(self, code: int) -> NoReturn:
        """End the process now: stop the engine without waiting for a decode step, flush the log, exit."""
        if self._exiting:  # a failure while flushing the log: it is over already
            os._exit(code)
        self._exiting = True
        self.protocol.faults.flush(everything=True)
        log.info("exiting with code %d", code)
        if self.engine is not None:
            self.engine.close(timeout=0.2)
        logging.shutdown()
        os._exit(code)

    def rejected_notification(self, method: str, params: Any) -> None:
        """A notification that could not be read: an edit we lost leaves the document out of sync."""
        if method != types.TEXT_DOCUMENT_DID_CHANGE:
            return
        ident = params.get("textDocument") if isinstance(params, dict) else None
        uri = ident.get("uri") if isinstance(ident, dict) else None
        doc = self.documents.get(uri) if isinstance(uri, str) else None
        if doc is not None:
            doc.out_of_sync = "an edit with invalid parameters was dropped"
            self.protocol.faults.warning("%s is out of sync until it is reopened or fully replaced", uri)

    # ----- model lifecycle, state and status (the work is in suggest_ls.ops.operations) -----
    @property
    def completer(self) -> Completer | None:
        """The completer (created with the first loaded model)."""
        return self.ops.completer

    @property
    def engine(self) -> Any:
        """The backend serving now (an Engine or a RemoteBackend); None before loading or after an unload."""
        return self.ops.backend

    @property
    def load_info(self) -> LoadInfo | None:
        """What the serving model is and where it runs."""
        return self.ops.load_info

    @property
    def state(self) -> str:
        """loading / ready / degraded / error / disabled."""
        return self.ops.state

    @property
    def state_reason(self) -> str:
        """Why the server is in its state."""
        return self.ops.reason

    @property
    def roots(self) -> list[str]:
        """Workspace folders (searched for models/)."""
        return self.ops.roots

    @roots.setter
    def roots(self, value: list[str]) -> None:
        self.ops.roots = value

    async def load_model(self, why: str = "startup") -> dict[str, Any]:
        """Load the configured model, beside the current one when one serves, and switch to it."""
        self.ops.start_monitor()
        return await self.ops.start_load(why)

    async def reload_model(self, model: Any = None) -> dict[str, Any]:
        """``suggest/reloadModel``: switch to ``model`` (or reload the current settings) without a gap."""
        old = self.settings
        if isinstance(model, str) and model != old.model:
            self.settings = dataclasses.replace(old, model=model)
            self.ops.apply(old, self.settings, started=False)
        return await self.ops.load("suggest/reloadModel", force=True)

    def _client_follows_refresh(self) -> bool:
        """The client declared ``experimental.suggestRefresh``: it asks again on ``suggest/refresh``."""
        caps = self.client_capabilities
        experimental = caps.experimental if caps else None
        return isinstance(experimental, dict) and experimental.get(REFRESH_CAPABILITY) is True

    def _client_supports_progress(self) -> bool:
        caps = self.client_capabilities
        return bool(caps and caps.window and caps.window.work_done_progress)

    async def progress_begin(self, message: str) -> str | None:
        """Begin a work-done progress in the client (when it supports them); returns its token."""
        if not self._client_supports_progress():
            return None
        token = str(uuid.uuid4())
        try:
            await self.work_done_progress.create_async(token)
            self.work_done_progress.begin(token, types.WorkDoneProgressBegin(title="suggest-ls", message=message))
        except Exception as exc:
            log.debug("progress not available: %s", exc)
            return None
        return token

    def progress_end(self, token: Any, message: str) -> None:
        """End a progress begun by ``progress_begin``."""
        if token:
            try:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
            except Exception as exc:
                log.debug("progress end not sent: %s", exc)

    def publish_status(self, state: str, reason: str) -> None:
        """Send ``suggest/didChangeStatus``."""
        try:
            self.protocol.notify(STATUS_NOTIFICATION, {"state": state, "reason": reason})
        except Exception as exc:  # no transport yet
            log.debug("status notification not sent: %s", exc)

    def refresh_suggestion(self, uri: str, version: int) -> None:
        """Send ``suggest/refresh`` when the rest of a line answered early is ready and the document has
        not changed since: an editor asks again and gets the whole line from the cache."""
        doc = self.documents.get(uri)
        if doc is None or doc.version != version:
            return
        log.info("suggest/refresh for %s v%d", uri, version)
        try:
            self.protocol.notify(REFRESH_NOTIFICATION, {"uri": uri, "version": version})
        except Exception as exc:  # no transport any more
            log.debug("refresh notification not sent: %s", exc)

    def show(self, level: str, message: str) -> None:
        """``window/showMessage`` at ``level`` (error, warning, info)."""
        try:
            self.window_show_message(
                types.ShowMessageParams(_MESSAGE_TYPES.get(level, types.MessageType.Info), message)
            )
        except Exception as exc:
            log.debug("message not sent: %s", exc)

    def apply_settings(self, raw: Any) -> None:
        """Resolve raw client settings; swap, disable or re-enable the model when needed."""
        new, messages = resolve(raw if isinstance(raw, dict) else None, self.settings)
        for message in messages:
            log.warning("%s", message)
            self.show("warning", f"suggest-ls: {message}")
        old, self.settings = self.settings, new
        if new.log_level != old.log_level:
            apply_log_level(new.log_level, self._start_log_level)
        self.ops.apply(old, new, started=self._load_task is not None)

    def status(self) -> dict[str, Any]:
        """The server's state for ``suggest/status``."""
        return self.ops.status()

    def acceptance_command(self, uri: str, text: str, offset: int = -1) -> types.Command:
        """The command an editor runs when it accepts a suggestion (counted for the acceptance rate)."""
        offer = self.ops.acceptance.offer(uri, len(text), offset, text)
        return types.Command(
            title="suggest-ls: suggestion accepted",
            command=ACCEPTED_COMMAND,
            arguments=[{"id": offer, "uri": uri, "length": len(text)}],
        )

    # ----- completion -----
    async def suggest(self, uri: str, position: types.Position, manual: bool) -> tuple[Document, Suggestion] | None:
        """Run the completer for a position; None when the document is unknown or the position impossible."""
        self.cancel_warm(uri)
        doc = self.documents.get(uri)
        if doc is None:
            self._no_suggestion(uri, "document not open")
            return None
        if doc.out_of_sync:
            self._no_suggestion(uri, f"document out of sync ({doc.out_of_sync})")
            return None
        if len(doc) > MAX_DOCUMENT_CHARS:
            self._no_suggestion(uri, f"document too large ({len(doc)} characters)")
            return None
        try:
            offset = doc.offset(position.line, position.character, strict=True)
        except PositionError as exc:
            self._no_suggestion(uri, str(exc))
            return None
        if len(doc.line(position.line)) > MAX_LINE_CHARS:
            self._no_suggestion(uri, f"line too long ({len(doc.line(position.line))} characters)")
            return None
        completer = await self.ops.completer_for_request()
        if completer is None:
            self._no_suggestion(uri, self.state_reason or "model not loaded")
            return None
        if completer.documents is None:  # extra context: the heads of the other open documents
            completer.documents = self.document_heads
        if completer.refresh_hook is None and self._client_follows_refresh():
            completer.refresh_hook = self.refresh_suggestion
        version = doc.version
        self.protocol.watch_stale(uri, doc, version)
        req = CompletionRequest(uri, version, doc.text, offset, doc.language_id, manual)
        result = await completer.complete(req)
        if doc.version != version or self.documents.get(uri) is not doc:
            self._no_suggestion(uri, f"stale (document changed from v{version})")
            return None
        return doc, result

    # ----- warming the prompt where the user is -----
    def schedule_warm(self, uri: str, offset: int, delay_s: float) -> None:
        """Warm the prompt at ``offset`` of ``uri`` after ``delay_s`` unless the document changes or a
        request for it comes first (a newer call replaces an older one)."""
        old = self._warm_timers.pop(uri, None)
        if old is not None:
            old.cancel()
        doc = self.documents.get(uri)
        if doc is None or not self.settings.warm:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # applied outside the server's loop (tests): nothing to schedule
            return
        self._warm_timers[uri] = loop.call_later(delay_s, self._warm, uri, doc.version, offset)

    def cancel_warm(self, uri: str) -> None:
        """A request for ``uri`` arrived: no warming is scheduled there any more."""
        timer = self._warm_timers.pop(uri, None)
        if timer is not None:
            timer.cancel()

    def _warm(self, uri: str, version: int, offset: int) -> None:
        self._warm_timers.pop(uri, None)
        doc = self.documents.get(uri)
        completer = self.completer
        if doc is None or doc.version != version or doc.out_of_sync or completer is None:
            return
        if len(doc) > MAX_DOCUMENT_CHARS:
            return
        offset = min(max(0, offset), len(doc))
        completer.warm(CompletionRequest(uri, version, doc.text, offset, doc.language_id, False))

    def cursor_moved(self, uri: str, line: int, character: int) -> None:
        """The client says where the cursor is: warm the prompt there."""
        doc = self.documents.get(uri)
        if doc is None:
            return
        try:
            offset = doc.offset(line, character, strict=True)
        except PositionError as exc:
            log.debug("%s for %s: %s", CURSOR_NOTIFICATION, uri, exc)
            return
        self.schedule_warm(uri, offset, WARM_CURSOR_S)

    def change(self, uri: str, version: int, changes: list[Change]) -> None:
        """Apply a didChange: each change is a range (start line, character, end line, character) or
        None for the whole text, and the new text."""
        doc = self.documents.get(uri)
        if doc is None:
            self.protocol.faults.warning("didChange for a document that is not open: %s", uri)
            return
        single = len(changes) == 1
        warm_at = -1
        for where, text in changes:
            try:
                if where is None:
                    doc.apply(None, None, text)
                    continue
                a = doc.offset(where[0], where[1])
                b = doc.offset(where[2], where[3])
                if single:  # accepting a word or line of the suggestion shown is one insertion
                    self.ops.acceptance.edit(doc.uri, a, b - a, text)
                doc.replace(a, b, text)
                if single:  # the cursor is where the edit ends; warm there unless a request follows
                    warm_at = a + len(text)
            except PositionError as exc:
                doc.out_of_sync = f"impossible edit: {exc}"
                self.protocol.faults.warning(
                    "%s is out of sync until it is reopened or fully replaced: %s", doc.uri, exc
                )
        doc.version = version
        if warm_at >= 0:
            self.schedule_warm(uri, warm_at, WARM_EDIT_S)

    def _no_suggestion(self, uri: str, reason: str) -> None:
        """Log and count why a request got no suggestion before (or after) the completer."""
        log.info("no suggestion for %s: %s", uri, reason)
        self.recorder.add(Record(uri=uri, outcome=bounded_reason(reason)))

    def document_heads(self, chars: int = 4000) -> list[tuple[str, str]]:
        """The start of every open document, for the completer's extra context."""
        return [(uri, doc.slice(0, min(chars, len(doc)))) for uri, doc in self.documents.items()]

    def edit_range(self, doc: Document, position: types.Position, suggestion: Suggestion) -> types.Range:
        """The range a suggestion replaces: the cursor plus the closers it covers."""
        line = doc.line(position.line) if position.line < doc.line_count else ""
        start_index = doc.offset(position.line, position.character) - doc.offset(position.line, 0)
        covered = line[start_index : start_index + suggestion.replace]
        end = types.Position(position.line, position.character + units_len(covered, doc.encoding))
        return types.Range(start=position, end=end)


def create_server(model_override: str = "") -> SuggestServer:
    """Build the server with all its LSP features registered."""
    server = SuggestServer(model_override)

    @server.feature(types.INITIALIZE)
    def initialize(ls: SuggestServer, params: types.InitializeParams) -> None:
        folders = params.workspace_folders or []
        ls.roots = [_uri_path(f.uri) for f in folders]
        if params.root_uri:
            ls.roots.append(_uri_path(params.root_uri))
        ls.apply_settings(params.initialization_options)
        if params.process_id:
            ls._watch_task = asyncio.ensure_future(_watch_parent(ls, params.process_id))

    @server.feature(types.INITIALIZED)
    async def initialized(ls: SuggestServer, params: types.InitializedParams) -> None:
        ls._load_task = asyncio.ensure_future(ls.load_model())

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: SuggestServer, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        ls.documents[item.uri] = Document(
            item.uri, item.text, item.version, item.language_id, str(ls.workspace.position_encoding or "utf-16")
        )
        # Not warmed here: where the cursor is, clients that send suggest/didMoveCursor say next (a
        # guess such as the end of the file would replace a useful prompt in the document's slot).

    @server.feature(CURSOR_NOTIFICATION)
    def cursor_moved(ls: SuggestServer, params: Any) -> None:
        document, position = _field(params, "textDocument"), _field(params, "position")
        uri = _field(document, "uri") if document is not None else None
        line = _field(position, "line") if position is not None else None
        character = _field(position, "character") if position is not None else None
        if not isinstance(uri, str) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in (line, character)
        ):
            log.warning("%s needs {textDocument: {uri}, position: {line, character}}", CURSOR_NOTIFICATION)
            return
        ls.cursor_moved(uri, line, character)  # type: ignore[arg-type]

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: SuggestServer, params: types.DidChangeTextDocumentParams) -> None:
        changes: list[Change] = []
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                r = change.range
                changes.append(((r.start.line, r.start.character, r.end.line, r.end.character), change.text))
            else:
                changes.append((None, change.text))
        ls.change(params.text_document.uri, params.text_document.version, changes)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: SuggestServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.documents.pop(params.text_document.uri, None)
        ls.cancel_warm(params.text_document.uri)
        ls.ops.acceptance.forget(params.text_document.uri)
        if ls.completer:
            ls.completer.forget(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: SuggestServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        manual = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        got = await ls.suggest(params.text_document.uri, params.position, manual)
        if got is None or not got[1].text:
            return types.InlineCompletionList(items=[])
        doc, suggestion = got
        item = types.InlineCompletionItem(
            insert_text=suggestion.text,
            range=ls.edit_range(doc, params.position, suggestion),
            command=ls.acceptance_command(
                params.text_document.uri, suggestion.text, doc.offset(params.position.line, params.position.character)
            ),
        )
        return types.InlineCompletionList(items=[item])

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=[".", "(", "="], resolve_provider=False),
    )
    async def completion(ls: SuggestServer, params: types.CompletionParams) -> types.CompletionList:
        manual = params.context is None or params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        got = await ls.suggest(params.text_document.uri, params.position, manual)
        if got is None or not got[1].text:
            return types.CompletionList(is_incomplete=True, items=[])
        doc, suggestion = got
        first = suggestion.text.split("\n", 1)[0].strip() or suggestion.text.strip()
        item = types.CompletionItem(
            label=first[:80],
            kind=types.CompletionItemKind.Text,
            detail="suggest-ls",
            filter_text=doc.line(params.position.line)[
                : doc.offset(params.position.line, params.position.character) - doc.offset(params.position.line, 0)
            ]
            + suggestion.text,
            text_edit=types.TextEdit(range=ls.edit_range(doc, params.position, suggestion), new_text=suggestion.text),
            insert_text_format=types.InsertTextFormat.PlainText,
            sort_text="0",
            command=ls.acceptance_command(params.text_document.uri, suggestion.text),
        )
        return types.CompletionList(is_incomplete=True, items=[item])

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: SuggestServer, params: types.DidChangeConfigurationParams) -> None:
        ls.apply_settings(params.settings)

    @server.feature(STATUS_METHOD)
    def status(ls: SuggestServer, params: Any) -> dict[str, Any]:
        return ls.status()

    @server.feature(RELOAD_METHOD)
    async def reload_model(ls: SuggestServer, params: Any) -> dict[str, Any]:
        return await ls.reload_model(_field(params, "model"))

    @server.command(ACCEPTED_COMMAND)
    def accepted(ls: SuggestServer, *args: Any) -> bool:
        offer = _field(args[0], "id") if args else None
        return isinstance(offer, str) and ls.ops.acceptance.accept(offer)

    @server.feature(PARTIAL_ACCEPT_NOTIFICATION)
    def partially_accepted(ls: SuggestServer, params: Any) -> None:
        offer, length = _field(params, "id"), _field(params, "acceptedLength")
        if isinstance(offer, str) and isinstance(length, int) and not isinstance(length, bool):
            ls.ops.acceptance.accept_partially(offer, length)
        else:
            log.warning("%s needs {id: string, acceptedLength: integer}", PARTIAL_ACCEPT_NOTIFICATION)

    @server.feature(DOCUMENT_STATE_METHOD)
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

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: SuggestServer, params: Any) -> None:
        if ls.engine:
            # stop between decode steps; answer within 0.3 s even if a step runs longer (exit then ends it)
            await asyncio.to_thread(ls.engine.close, 0.3)

    @server.feature(types.EXIT)
    def exit_(ls: SuggestServer, params: Any) -> None:
        ls.terminate(0 if ls.protocol.shutting_down else 1)

    return server


def apply_log_level(level: str, default: int) -> None:
    """The ``logLevel`` setting: the root logger's level ('' gives back ``default``, --log-level's)."""
    root = logging.getLogger()
    value = getattr(logging, level.upper(), None) if level else default
    if isinstance(value, int):
        root.setLevel(value)
        logging.getLogger("pygls").setLevel(logging.DEBUG if value <= logging.DEBUG else logging.WARNING)
        log.log(max(value, logging.INFO), "log level: %s", logging.getLevelName(value).lower())


def _field(params: Any, name: str) -> Any:
    """A field of custom-method params, whether pygls gives a dict or an object."""
    if isinstance(params, dict):
        return params.get(name)
    return getattr(params, name, None)


def _uri_path(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def bounded_reason(reason: str) -> str:
    """A reason without its numbers (versions, sizes, positions): outcome counters stay bounded."""
    return re.sub(r"\d+", "N", re.sub(r"\s*\([^()]*\d[^()]*\)$", "", reason))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _watch_parent(ls: SuggestServer, pid: int, poll_s: float = 1.0) -> None:
    """Exit when the editor process that started us is gone (``processId`` from initialize)."""
    fd = -1
    try:
        fd = os.pidfd_open(pid)  # readable when the process exits; immune to pid reuse
    except ProcessLookupError:
        pass
    except (AttributeError, OSError):
        fd = -2
    if fd == -1 or not _alive(pid):
        log.warning("parent process %d is not running; exiting", pid)
        ls.terminate(1)
    if fd >= 0:
        gone = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(fd, gone.set)
        try:
            await gone.wait()
        finally:
            loop.remove_reader(fd)
            os.close(fd)
    else:
        while _alive(pid):
            await asyncio.sleep(poll_s)
    log.warning("parent process %d is gone; exiting", pid)
    ls.terminate(1)


class _PipeWriter(StdoutWriter):
    """The protocol's stdout; a broken pipe means the editor is gone, so the server ends."""

    def __init__(self, stdout: Any, gone: Callable[[], NoReturn]) -> None:
        super().__init__(stdout)
        self._gone = gone

    def write(self, data: bytes) -> None:
        """Write one message, or end the process when nobody reads any more."""
        try:
            super().write(data)
        except BrokenPipeError:
            self._gone()

    def write_or_raise(self, data: bytes) -> None:
        """Write one message; a closed pipe raises (for the log, which then writes to stderr)."""
        super().write(data)


class _PipeInput(asyncio.Protocol):
    """stdin as the event loop reads it (no thread hand-off per chunk); it also tells whether input is
    waiting to be handled, here or still in the pipe."""

    MAX_CHUNKS = 64  # reading pauses while this many chunks wait

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.chunks: deque[bytes] = deque()
        self.closed = False
        self.transport: asyncio.ReadTransport | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        if len(self.chunks) >= self.MAX_CHUNKS and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self) -> bytes:
        """The next chunk; b"" at the end of input."""
        while not self.chunks:
            if self.closed:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if len(self.chunks) < self.MAX_CHUNKS // 2 and self.transport is not None and not self.closed:
            self.transport.resume_reading()
        return self.chunks.popleft()

    def pending(self) -> bool:
        """Whether input has arrived that is not handled yet (here, or readable in the pipe)."""
        if self.chunks:
            return True
        try:
            return bool(select.select([self.fd], [], [], 0)[0])
        except (OSError, ValueError):
            return False


async def _pipe_reader(stream: Any) -> _PipeInput | None:
    """A pipe or socket read by the event loop; None for other input (a file, a terminal, an
    in-memory stream), which ``_thread_reader`` serves."""
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return None
    pipe = _PipeInput(fd)
    try:
        await asyncio.get_running_loop().connect_read_pipe(lambda: pipe, stream)
    except (OSError, ValueError) as exc:
        log.info("stdin read by a thread: %s", exc)
        return None
    return pipe


def _thread_reader(stream: Any, chunk: int = 1 << 16) -> Callable[[], Awaitable[bytes]]:
    """Read a blocking stream in a daemon thread (it never holds up the exit), at most 64 chunks ahead."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
    read1 = getattr(stream, "read1", stream.read)

    def pump() -> None:
        while True:
            try:
                data = read1(chunk)
            except (OSError, ValueError):
                data = b""
            try:
                asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
            except Exception:  # the loop is closed: the server is ending
                return
            if not data:
                return

    threading.Thread(target=pump, name="suggest-ls-stdin", daemon=True).start()
    return queue.get


def _stream_reader(
    reader: asyncio.StreamReader, protocol: SuggestProtocol, auth_timeout: float
) -> Callable[[], Awaitable[bytes]]:
    """Chunks from a TCP stream; an unauthenticated client must speak within ``auth_timeout``."""

    async def read() -> bytes:
        if protocol.authenticated:
            return await reader.read(1 << 16)
        try:
            return await asyncio.wait_for(reader.read(1 << 16), auth_timeout)
        except TimeoutError as exc:
            raise Unauthorized from exc

    return read


__all__ = ["SECTION", "ClientLog", "SuggestServer", "create_server"]
