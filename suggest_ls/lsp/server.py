"""The language server: the open documents, the settings and the model's state (through
``suggest_ls.ops.operations``), suggestions for a position, and warming the prompt where the user is.
The methods it answers are registered by ``suggest_ls.lsp.features``."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from typing import Any, NoReturn

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from suggest_ls import __version__
from suggest_ls.backends.contract import LoadInfo
from suggest_ls.completion.completer import MAX_DOCUMENT_CHARS, MAX_LINE_CHARS, Completer
from suggest_ls.completion.request import CompletionRequest, Suggestion
from suggest_ls.completion.stats import Record, Recorder
from suggest_ls.lsp import transport
from suggest_ls.lsp.clientlog import ClientLog, apply_log_level
from suggest_ls.lsp.convert import Change, bounded_reason
from suggest_ls.lsp.document import Document, PositionError
from suggest_ls.lsp.protocol import SuggestProtocol
from suggest_ls.ops.operations import Operations
from suggest_ls.settings import Settings, SettingsStore

log = logging.getLogger(__name__)
STATUS_NOTIFICATION = "suggest/didChangeStatus"
REFRESH_NOTIFICATION = "suggest/refresh"  # a whole line waits where first words were shown: ask again
REFRESH_CAPABILITY = "suggestRefresh"  # in the client's experimental capabilities: it follows them
# Delays before warming the prompt at a place (suggest_ls.completion.completer.Completer.warm): a request
# arriving meanwhile makes it moot.
WARM_CURSOR_S, WARM_EDIT_S = 0.15, 0.4
_MESSAGE_TYPES = {"error": types.MessageType.Error, "warning": types.MessageType.Warning}


class SuggestServer(LanguageServer):
    """Holds the documents, the settings and the completer; converts LSP types to plain data."""

    protocol: SuggestProtocol
    # A TCP client that must authenticate speaks within this (tests shorten it).
    auth_timeout_s = transport.AUTH_TIMEOUT_S

    def __init__(self, model_override: str = "") -> None:
        super().__init__("suggest-ls", __version__, protocol_cls=SuggestProtocol)
        self.protocol.host = self
        self.documents: dict[str, Document] = {}
        # The one owner of the settings: the parts that care subscribe to it (ops, the completer, the log level).
        self.store = SettingsStore()
        self.store.subscribe(self._settings_changed)
        self.model_override = model_override
        self.recorder = Recorder()
        self.ops = Operations(self, self.recorder, self.store, model_override)
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
        self.ops.shutdown(timeout=0.2)  # the serving backend, and a remote still being waited for
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
        return await self.ops.reload_model(model)

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

    @property
    def settings(self) -> Settings:
        """The settings in force (owned by ``store``)."""
        return self.store.current

    def apply_settings(self, raw: Any) -> None:
        """Take raw client settings: the store resolves them and tells its subscribers (ops swaps,
        disables or re-enables the model when needed); ignored options are shown to the user."""
        for message in self.store.update(raw if isinstance(raw, dict) else None):
            log.warning("%s", message)
            self.show("warning", f"suggest-ls: {message}")

    def _settings_changed(self, old: Settings, new: Settings) -> None:
        if new.log_level != old.log_level:
            apply_log_level(new.log_level, self._start_log_level)

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
        read_at = self.protocol.version_when_read()
        doc = self.documents.get(uri)
        if doc is None:
            self._no_suggestion(uri, "document not open")
            return None
        # The version the request was read at: its handler runs later, after changes read with it.
        version = doc.version if read_at is None else read_at
        if doc.version != version:
            self._no_suggestion(uri, f"stale (document changed from v{version} before the request started)")
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
        if doc.version != version:  # while the model loaded
            self._no_suggestion(uri, f"stale (document changed from v{version} before the request started)")
            return None
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
