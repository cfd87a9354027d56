"""A small asyncio LSP client for the benchmarks: a server subprocess, timestamped requests.

It speaks JSON-RPC with Content-Length framing over the subprocess's stdin/stdout, sends
requests without waiting for them (an editor keeps typing), stamps when each was sent and
answered, and replies ``null`` to the server's own requests (progress, configuration).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Call:
    """One request: when it went out, when (and how) it was answered."""

    id: int
    method: str
    sent: float
    answered: float = 0.0
    result: Any = None
    error: dict[str, Any] | None = None
    done: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def rtt_ms(self) -> float:
        """Round trip in milliseconds (0 while unanswered)."""
        return (self.answered - self.sent) * 1000 if self.answered else 0.0


def encode(message: dict[str, Any]) -> bytes:
    """Frame one JSON-RPC message."""
    body = json.dumps(message, separators=(",", ":")).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class LspClient:
    """A server subprocess driven over stdio."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.calls: dict[int, Call] = {}
        self.notifications: list[tuple[float, str, Any]] = []
        self._next = 0
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def spawn(cls, argv: list[str], env: dict[str, str] | None = None, stderr: Any = None) -> LspClient:
        """Start the server command and attach a client to it."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr if stderr is not None else asyncio.subprocess.DEVNULL,
            env=env,
            limit=1 << 24,
        )
        return cls(proc)

    async def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            try:
                header = await out.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            length = 0
            for line in header.decode("ascii", "replace").split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            try:
                body = await out.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            now = time.perf_counter()
            try:
                msg = json.loads(body)
            except ValueError:
                continue
            self._dispatch(msg, now)

    def _dispatch(self, msg: dict[str, Any], now: float) -> None:
        if "method" in msg:
            if "id" in msg:  # a request from the server: answer it
                self._write({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            else:
                self.notifications.append((now, msg["method"], msg.get("params")))
            return
        call = self.calls.get(msg.get("id", -1))
        if call is None or call.answered:
            return
        call.answered = now
        call.result = msg.get("result")
        call.error = msg.get("error")
        if not call.done.done():
            call.done.set_result(call.result)

    def _write(self, message: dict[str, Any]) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            return
        stdin.write(encode(message))

    def send(self, method: str, params: Any = None) -> Call:
        """Send a request now and return its call record (not waiting for the answer)."""
        self._next += 1
        call = Call(self._next, method, time.perf_counter())
        self.calls[call.id] = call
        self._write({"jsonrpc": "2.0", "id": call.id, "method": method, "params": params})
        return call

    async def request(self, method: str, params: Any = None, timeout: float = 600.0) -> Any:
        """Send a request and wait for its result."""
        call = self.send(method, params)
        await asyncio.wait_for(asyncio.shield(call.done), timeout)
        if call.error:
            raise RuntimeError(f"{method} failed: {call.error}")
        return call.result

    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification."""
        self._write({"jsonrpc": "2.0", "method": method, "params": params})

    async def drain(self) -> None:
        """Wait until what was written has been handed to the pipe."""
        if self.proc.stdin is not None:
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()

    async def close(self, timeout: float = 10.0) -> int:
        """Shut down and exit the server politely; kill it if it does not go."""
        with contextlib.suppress(Exception):
            await self.request("shutdown", None, timeout=timeout)
        self.notify("exit")
        await self.drain()
        try:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            rc = await self.proc.wait()
        self._reader.cancel()
        return rc
