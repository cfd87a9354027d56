"""The language server: the open documents, the settings and the model's state (through
``suggest_ls.ops.operations``), suggestions for a position, warming the prompt where the user is,
and the LSP methods it answers (``create_server``)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import uuid
from typing import Any, NoReturn

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from suggest_ls import __version__
from suggest_ls.backends.contract import LoadInfo
from suggest_ls.completion.completer import MAX_DOCUMENT_CHARS, MAX_LINE_CHARS, Completer, CompletionRequest, Suggestion
from suggest_ls.completion.stats import Record, Recorder
from suggest_ls.lsp import transport
from suggest_ls.lsp.clientlog import ClientLog, apply_log_level
from suggest_ls.lsp.convert import Change, bounded_reason, param_field, uri_path
from suggest_ls.lsp.document import Document, PositionError, units_len
from suggest_ls.lsp.protocol import SuggestProtocol
from suggest_ls.ops.operations import Operations
from suggest_ls.settings import Settings, resolve

log = logging.getLogger(__name__)
STATUS_NOTIFICATION = "suggest/didChangeStatus"
REFRESH_NOTIFICATION = "suggest/refresh"  # a whole line waits where first words were shown: ask again
REFRESH_CAPABILITY = "suggestRefresh"  # in the client's experimental capabilities: it follows them
# Delays before warming the prompt at a place (suggest_ls.completion.completer.Completer.warm): a request
# arriving meanwhile makes it moot.
WARM_CURSOR_S, WARM_EDIT_S = 0.15, 0.4
_MESSAGE_TYPES = {"error": types.MessageType.Error, "warning": types.MessageType.Warning}
# The inline item's command: arguments [{"id", "uri", "length"}]; editors run it when the item is accepted.
ACCEPTED_COMMAND = "suggestLs.accepted"
# Partial acceptance (word/line at a time): params {"id", "acceptedLength"}.
PARTIAL_ACCEPT_NOTIFICATION = "suggest/didPartiallyAccept"
DOCUMENT_STATE_METHOD = "suggest/documentState"
CURSOR_NOTIFICATION = "suggest/didMoveCursor"
STATUS_METHOD = "suggest/status"
RELOAD_METHOD = "suggest/reloadModel"


class SuggestServer(LanguageServer):
    """Holds the documents, the settings and the completer; converts LSP types to plain data."""

    protocol: SuggestProtocol
    # A TCP client that must authenticate speaks within this (tests shorten it).
    auth_timeout_s = transport.AUTH_TIMEOUT_S

    def __init__(self, model_override: str = "") -> None:
        super().__init__("suggest-ls", __version__, protocol_cls=SuggestProtocol)
        self.protocol.host = self
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
        transport.run_stdio(self, stdin, stdout)

    def start_tcp(self, host: str, port: int, token: str = "") -> None:
        """Serve one client session over TCP; with a token, ``initialize`` must present it."""
        transport.run_tcp(self, host, port, token)

    def watch_parent(self, pid: int) -> None:
        """End the server when the editor process ``pid`` is gone."""
        self._watch_task = asyncio.ensure_future(transport.watch_parent(self.terminate, pid))

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

    def start_loading(self) -> None:
        """Load the model the settings name (once the client is initialized)."""
        self._load_task = asyncio.ensure_future(self.load_model())

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

    # ----- documents -----
    def open(self, uri: str, text: str, version: int, language_id: str) -> None:
        """A didOpen: the document in the position encoding negotiated with the client."""
        self.documents[uri] = Document(
            uri, text, version, language_id, str(self.workspace.position_encoding or "utf-16")
        )
        # Not warmed here: where the cursor is, clients that send suggest/didMoveCursor say next (a
        # guess such as the end of the file would replace a useful prompt in the document's slot).

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

    def close(self, uri: str) -> None:
        """A didClose: the document, its warming, its shown suggestion and its completer state go."""
        self.documents.pop(uri, None)
        self.cancel_warm(uri)
        self.ops.acceptance.forget(uri)
        if self.completer:
            self.completer.forget(uri)

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

    def document_heads(self, chars: int = 4000) -> list[tuple[str, str]]:
        """The start of every open document, for the completer's extra context."""
        return [(uri, doc.slice(0, min(chars, len(doc)))) for uri, doc in self.documents.items()]

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

    def _no_suggestion(self, uri: str, reason: str) -> None:
        """Log and count why a request got no suggestion before (or after) the completer."""
        log.info("no suggestion for %s: %s", uri, reason)
        self.recorder.add(Record(uri=uri, outcome=bounded_reason(reason)))

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
    """Stop the engine between decode steps."""
    if ls.engine:
        # answer within 0.3 s even if a step runs longer (exit then ends it)
        await asyncio.to_thread(ls.engine.close, 0.3)


def exit_(ls: SuggestServer, params: Any) -> None:
    """End the process: code 0 after ``shutdown``, else 1."""
    ls.terminate(0 if ls.protocol.shutting_down else 1)


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


def edit_range(doc: Document, position: types.Position, suggestion: Suggestion) -> types.Range:
    """The range a suggestion replaces: the cursor plus the closers it covers."""
    line = doc.line(position.line) if position.line < doc.line_count else ""
    start_index = doc.offset(position.line, position.character) - doc.offset(position.line, 0)
    covered = line[start_index : start_index + suggestion.replace]
    end = types.Position(position.line, position.character + units_len(covered, doc.encoding))
    return types.Range(start=position, end=end)


async def inline_completion(ls: SuggestServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    """The suggestion as one inline item (none when there is no suggestion)."""
    manual = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    got = await ls.suggest(params.text_document.uri, params.position, manual)
    if got is None or not got[1].text:
        return types.InlineCompletionList(items=[])
    doc, suggestion = got
    item = types.InlineCompletionItem(
        insert_text=suggestion.text,
        range=edit_range(doc, params.position, suggestion),
        command=acceptance_command(
            ls, params.text_document.uri, suggestion.text, doc.offset(params.position.line, params.position.character)
        ),
    )
    return types.InlineCompletionList(items=[item])


async def completion(ls: SuggestServer, params: types.CompletionParams) -> types.CompletionList:
    """The suggestion as one completion item, for clients without inline completion."""
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
        text_edit=types.TextEdit(range=edit_range(doc, params.position, suggestion), new_text=suggestion.text),
        insert_text_format=types.InsertTextFormat.PlainText,
        sort_text="0",
        command=acceptance_command(ls, params.text_document.uri, suggestion.text),
    )
    return types.CompletionList(is_incomplete=True, items=[item])


def did_change_configuration(ls: SuggestServer, params: types.DidChangeConfigurationParams) -> None:
    """Apply the new settings (a model swap, disable or re-enable included)."""
    ls.apply_settings(params.settings)


def status(ls: SuggestServer, params: Any) -> dict[str, Any]:
    """The server's state for ``suggest/status``."""
    return ls.ops.status()


async def reload_model(ls: SuggestServer, params: Any) -> dict[str, Any]:
    """Switch to ``params.model`` (or reload the current settings)."""
    return await ls.reload_model(param_field(params, "model"))


def create_server(model_override: str = "") -> SuggestServer:
    """Build the server with all its LSP features registered."""
    server = SuggestServer(model_override)
    server.feature(types.INITIALIZE)(initialize)
    server.feature(types.INITIALIZED)(initialized)
    server.feature(types.SHUTDOWN)(shutdown)
    server.feature(types.EXIT)(exit_)
    server.feature(types.TEXT_DOCUMENT_DID_OPEN)(did_open)
    server.feature(types.TEXT_DOCUMENT_DID_CHANGE)(did_change)
    server.feature(types.TEXT_DOCUMENT_DID_CLOSE)(did_close)
    server.feature(DOCUMENT_STATE_METHOD)(document_state)
    server.feature(CURSOR_NOTIFICATION)(cursor_moved)
    server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(inline_completion)
    server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=[".", "(", "="], resolve_provider=False),
    )(completion)
    server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(did_change_configuration)
    server.feature(STATUS_METHOD)(status)
    server.feature(RELOAD_METHOD)(reload_model)
    server.command(ACCEPTED_COMMAND)(accepted)
    server.feature(PARTIAL_ACCEPT_NOTIFICATION)(partially_accepted)
    return server
