"""Serving one client: stdin/stdout pipes read and written by the event loop, TCP with a token,
and the editor process watched so that the server ends with it."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import select
import stat
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol

from pygls.io_ import StdoutWriter

from suggest_ls.lsp.clientlog import ClientLog
from suggest_ls.lsp.framing import FrameError, FrameParser
from suggest_ls.lsp.protocol import SuggestProtocol, Unauthorized

log = logging.getLogger(__name__)
AUTH_TIMEOUT_S = 10.0


class Session(Protocol):
    """What serving a client needs of the server."""

    protocol: SuggestProtocol
    client_log: ClientLog | None
    auth_timeout_s: float  # a TCP client that must authenticate speaks within this

    def terminate(self, code: int) -> NoReturn:
        """End the process with ``code``."""


def run_stdio(ls: Session, stdin: Any = None, stdout: Any = None) -> NoReturn:
    """Serve one client on stdin/stdout with the hardened framing; the process ends with the session."""
    stdin = stdin or sys.stdin.buffer

    def gone() -> NoReturn:
        log.warning("the client closed the pipe; exiting")
        ls.terminate(1)

    ls.protocol.set_writer(_PipeWriter(stdout or sys.stdout.buffer, gone))
    try:
        asyncio.run(_serve_stdio(ls, stdin))
    except BrokenPipeError:
        log.warning("the client closed its end of the pipe")
    except (KeyboardInterrupt, SystemExit):
        pass
    except Exception:
        log.exception("the server loop failed")
    finally:  # never a normal interpreter exit: the stdin thread may hold its lock
        ls.terminate(0 if ls.protocol.shutting_down else 1)


async def _serve_stdio(ls: Session, stdin: Any) -> None:
    """Serve stdin: read by the event loop itself when it is a pipe or socket, else by a thread."""
    protocol = ls.protocol
    writer = protocol.writer
    if ls.client_log is not None and isinstance(writer, _PipeWriter):
        ls.client_log.attach(writer.write_or_raise)
    pipe = await _pipe_reader(stdin)
    if pipe is None:
        await serve_stream(protocol, lambda: _thread_reader(stdin))
        return
    protocol.input_pending = pipe.pending
    try:
        await serve_stream(protocol, lambda: pipe.read)
    finally:
        protocol.input_pending = None


async def serve_stream(protocol: SuggestProtocol, make_reader: Callable[[], Callable[[], Awaitable[bytes]]]) -> None:
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
                protocol.faults.warning("malformed input: %s", item.reason)
            else:
                protocol.receive(item.body)
        protocol.send_deferred()
        protocol.faults.flush()


def run_tcp(ls: Session, host: str, port: int, token: str = "") -> NoReturn:
    """Serve one client session over TCP; with a token, ``initialize`` must present it."""
    try:
        asyncio.run(serve_tcp(ls, host, port, token))
    except (KeyboardInterrupt, SystemExit):
        pass
    except Exception:
        log.exception("the server loop failed")
    finally:
        ls.terminate(0 if ls.protocol.shutting_down else 1)


async def serve_tcp(ls: Session, host: str, port: int, token: str, ready: Callable[[int], None] | None = None) -> None:
    """Accept connections one at a time until an authenticated session ends."""
    protocol = ls.protocol
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
        protocol.token, protocol.authenticated = token, not token
        protocol.set_writer(writer)  # type: ignore[arg-type]
        log.info("client connected from %s", peer)
        try:
            await serve_stream(protocol, lambda: _stream_reader(reader, protocol, ls.auth_timeout_s))
        except Unauthorized:
            log.warning("connection from %s closed: not authenticated", peer)
        except (ConnectionError, TimeoutError) as exc:
            log.warning("connection from %s lost: %s", peer, exc)
        finally:
            busy = False
            writer.close()
        if protocol.authenticated:
            finished.set()

    server = await asyncio.start_server(connection, host, port)
    bound = server.sockets[0].getsockname()
    log.info("serving LSP on %s:%s%s", bound[0], bound[1], " (token required)" if token else "")
    if ready:
        ready(int(bound[1]))
    async with server:
        await finished.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def watch_parent(terminate: Callable[[int], NoReturn], pid: int, poll_s: float = 1.0) -> None:
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
        terminate(1)
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
    terminate(1)


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
