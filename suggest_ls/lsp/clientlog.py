"""The log as the editor sees it: records sent as ``window/logMessage`` with their levels, and the
``logLevel`` setting applied to the root logger."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable

from lsprotocol import types

from suggest_ls.lsp.framing import encode

log = logging.getLogger(__name__)
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


def apply_log_level(level: str, default: int) -> None:
    """The ``logLevel`` setting: the root logger's level ('' gives back ``default``, --log-level's)."""
    root = logging.getLogger()
    value = getattr(logging, level.upper(), None) if level else default
    if isinstance(value, int):
        root.setLevel(value)
        logging.getLogger("pygls").setLevel(logging.DEBUG if value <= logging.DEBUG else logging.WARNING)
        log.log(max(value, logging.INFO), "log level: %s", logging.getLevelName(value).lower())
