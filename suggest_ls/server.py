"""The LSP boundary: the only module that knows pygls and lsprotocol."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from suggest_ls import __version__
from suggest_ls.completer import Completer, CompletionRequest, Suggestion
from suggest_ls.document import Document, PositionError, units_len
from suggest_ls.engine import Engine, EngineConfig, LoadInfo
from suggest_ls.models import ModelError, resolve_model
from suggest_ls.prompt import ModelInfo, detect_template
from suggest_ls.settings import SECTION, Settings, resolve
from suggest_ls.stats import Recorder

log = logging.getLogger(__name__)
STATUS_METHOD = "suggest/status"
STATUS_NOTIFICATION = "suggest/didChangeStatus"


class _Rejected:
    """A request whose parameters did not fit the protocol's types; answered with an error."""

    def __init__(self, msg_id: Any, method: str, error: JsonRpcException) -> None:
        self.id = msg_id
        self.method = method
        self.error = error


class SuggestProtocol(LanguageServerProtocol):
    """Answers requests with malformed parameters (InvalidParams) instead of dropping them."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        """Structure a message; a request that fails becomes a ``_Rejected``."""
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "id" in data and "method" in data and isinstance(data["id"], (int, str)):
                return _Rejected(data["id"], str(data.get("method")), exc)
            raise

    def handle_message(self, message: Any) -> None:
        """Answer rejected requests; hand the rest to pygls."""
        if isinstance(message, _Rejected):
            log.warning("invalid params for %s (id %r): %s", message.method, message.id, message.error.message)
            self._send_response(message.id, error=message.error.to_response_error())
            return
        super().handle_message(message)


class SuggestServer(LanguageServer):
    """Holds the documents, the settings and the completer; converts LSP types to plain data."""

    def __init__(self, model_override: str = "") -> None:
        super().__init__("suggest-ls", __version__, protocol_cls=SuggestProtocol)
        self.documents: dict[str, Document] = {}
        self.settings = Settings()
        self.model_override = model_override
        self.recorder = Recorder()
        self.completer: Completer | None = None
        self.engine: Engine | None = None
        self.load_info: LoadInfo | None = None
        self.state = "loading"
        self.state_reason = ""
        self.roots: list[str] = []
        self._load_task: asyncio.Future[None] | None = None
        self._watch_task: asyncio.Future[None] | None = None

    # ----- model lifecycle -----
    def engine_config(self) -> EngineConfig:
        """The engine configuration from the current settings (raises ModelError)."""
        s = self.settings
        choice = resolve_model(s.model or self.model_override, roots=self.roots)
        log.info("model: %s (from %s)", choice.path, choice.source)
        return EngineConfig(
            model_path=choice.path,
            context_size=s.context_size,
            parallel=s.parallel,
            threads=s.threads,
            gpu_layers=s.gpu_layers,
            batch_window_ms=s.batch_window_ms,
        )

    async def load_model(self) -> None:
        """Load (or reload) the model in the background, reporting progress to the client."""
        self.set_state("loading", "loading the model")
        token: str | None = None
        if self._client_supports_progress():
            token = str(uuid.uuid4())
            try:
                await self.work_done_progress.create_async(token)
                self.work_done_progress.begin(
                    token, types.WorkDoneProgressBegin(title="suggest-ls", message="loading model")
                )
            except Exception as exc:
                log.debug("progress not available: %s", exc)
                token = None
        started = time.perf_counter()
        engine: Engine | None = None
        try:
            config = await asyncio.to_thread(self.engine_config)
            engine = Engine(config).start()
            info = await asyncio.wrap_future(engine.ready)
        except (ModelError, OSError) as exc:
            if engine is not None:
                engine.close()
            message = f"suggest-ls: model not loaded: {exc}"
            log.error("%s", message)
            self.set_state("error", str(exc))
            self.window_show_message(types.ShowMessageParams(types.MessageType.Error, message))
            if token:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(message="model not loaded"))
            return
        old = self.engine
        self.engine, self.load_info = engine, info
        template = detect_template(info.model, self.settings.template)
        self.completer = Completer(engine, template, self.settings, self.recorder)
        if old is not None:
            old.close()
        elapsed = (time.perf_counter() - started) * 1000
        log.info("ready: %s, template %s, %.0f ms", info.device, template.name, elapsed)
        self.set_state("ready" if self.settings.enabled else "disabled", f"{Path(info.path).name} on {info.device}")
        if token:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=f"ready ({info.device})"))

    def _client_supports_progress(self) -> bool:
        caps = self.client_capabilities
        return bool(caps and caps.window and caps.window.work_done_progress)

    def set_state(self, state: str, reason: str = "") -> None:
        """Change the server state and tell the client."""
        self.state, self.state_reason = state, reason
        try:
            self.protocol.notify(STATUS_NOTIFICATION, {"state": state, "reason": reason})
        except Exception as exc:  # no transport yet
            log.debug("status notification not sent: %s", exc)

    def apply_settings(self, raw: Any) -> None:
        """Resolve raw client settings; reload the model when a model setting changed."""
        new, messages = resolve(raw if isinstance(raw, dict) else None, self.settings)
        for message in messages:
            log.warning("%s", message)
            self.window_show_message(types.ShowMessageParams(types.MessageType.Warning, f"suggest-ls: {message}"))
        old, self.settings = self.settings, new
        if self.completer is not None:
            self.completer.settings = new
            self.completer.template = detect_template(
                self.load_info.model if self.load_info else ModelInfo(), new.template
            )
        reload_keys = ("model", "context_size", "parallel", "threads", "gpu_layers", "batch_window_ms")
        if self.state != "loading" and any(getattr(old, k) != getattr(new, k) for k in reload_keys):
            self._load_task = asyncio.ensure_future(self.load_model())
        elif self.state in ("ready", "disabled"):
            self.set_state("ready" if new.enabled else "disabled", self.state_reason)

    def status(self) -> dict[str, Any]:
        """The server's state for ``suggest/status``."""
        info = self.load_info
        engine = self.engine
        return {
            "state": self.state,
            "reason": self.state_reason,
            "version": __version__,
            "model": Path(info.path).name if info else None,
            "quantization": info.quantization if info else None,
            "device": info.device if info else None,
            "gpuLayers": info.gpu_layers if info else 0,
            "offload": info.offload_reason if info else None,
            "template": self.completer.template.name if self.completer else None,
            "tokensPerSecond": round(engine.tokens_per_second(), 1) if engine else 0.0,
            "latency": self.recorder.latency(),
            "requests": self.recorder.requests,
            "cacheHits": self.recorder.cache_hits,
            "outcomes": dict(self.recorder.outcomes),
            "recentReasons": self.recorder.reasons(),
        }

    # ----- completion -----
    async def suggest(self, uri: str, position: types.Position, manual: bool) -> tuple[Document, Suggestion] | None:
        """Run the completer for a position; None when the document is unknown or the position impossible."""
        doc = self.documents.get(uri)
        if doc is None:
            log.info("no suggestion for %s: document not open", uri)
            return None
        try:
            offset = doc.offset(position.line, position.character, strict=True)
        except PositionError as exc:
            log.info("no suggestion for %s: %s", uri, exc)
            return None
        if self.completer is None:
            log.info("no suggestion for %s: %s", uri, self.state_reason or "model not loaded")
            return None
        version = doc.version
        req = CompletionRequest(uri, version, doc.text, offset, doc.language_id, manual)
        result = await self.completer.complete(req)
        if doc.version != version or self.documents.get(uri) is not doc:
            log.info("no suggestion for %s: stale (document changed from v%d)", uri, version)
            return None
        return doc, result

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

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: SuggestServer, params: types.DidChangeTextDocumentParams) -> None:
        doc = ls.documents.get(params.text_document.uri)
        if doc is None:
            log.warning("didChange for a document that is not open: %s", params.text_document.uri)
            return
        for change in params.content_changes:
            try:
                if isinstance(change, types.TextDocumentContentChangePartial):
                    r = change.range
                    doc.apply((r.start.line, r.start.character), (r.end.line, r.end.character), change.text)
                else:
                    doc.apply(None, None, change.text)
            except PositionError as exc:
                log.warning("didChange with an impossible range in %s ignored: %s", doc.uri, exc)
        doc.version = params.text_document.version

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: SuggestServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.documents.pop(params.text_document.uri, None)
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
        )
        return types.CompletionList(is_incomplete=True, items=[item])

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: SuggestServer, params: types.DidChangeConfigurationParams) -> None:
        ls.apply_settings(params.settings)

    @server.feature(STATUS_METHOD)
    def status(ls: SuggestServer, params: Any) -> dict[str, Any]:
        return ls.status()

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: SuggestServer, params: Any) -> None:
        if ls.engine:
            ls.engine.close(timeout=0.5)

    return server


def _uri_path(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


async def _watch_parent(ls: SuggestServer, pid: int) -> None:
    """Exit when the editor process that started us is gone."""
    while True:
        await asyncio.sleep(2.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.warning("parent process %d is gone; exiting", pid)
            if ls.engine:
                ls.engine.close(timeout=0.5)
            os._exit(0)
        except PermissionError:
            pass


__all__ = ["SECTION", "SuggestServer", "create_server"]
