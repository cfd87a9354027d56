"""The async client: a server subprocess driven from asyncio, every request timestamped.

For benchmarks and scheduler tests where timing matters: requests go out without waiting for
earlier ones (an editor keeps typing), each call records when it was sent and answered, and
notifications are kept with their arrival time. The server's own requests are answered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from suggest_ls.harness import wire
from suggest_ls.lsp.framing import encode


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


class LspClient:
    """A server subprocess driven over stdio."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.calls: dict[int, Call] = {}
        self.notifications: list[tuple[float, str, Any]] = []
        self.inbox = wire.Inbox()
        self._next = 0
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def spawn(cls, argv: list[str], env: dict[str, str] | None = None, stderr: Any = None) -> LspClient:
        """Start the server command (``wire.server_command`` for suggest-ls) and attach a client to it."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr if stderr is not None else asyncio.subprocess.DEVNULL,
            env=env,
            limit=1 << 24,  # a big read buffer: the client never holds the server back
        )
        return cls(proc)

    async def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            try:
                data = await out.read(1 << 16)
            except ConnectionError:
                return
            if not data:
                return
            now = time.perf_counter()
            for msg in self.inbox.feed(data):
                self._dispatch(msg, now)

    def _dispatch(self, msg: dict[str, Any], now: float) -> None:
        if "method" in msg:
            if "id" in msg:  # a request from the server: answer it
                self._write(wire.reply(msg))
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
        self._write(wire.request(call.id, method, params))
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
        self._write(wire.notification(method, params))

    async def initialize(
        self,
        options: dict[str, Any] | None = None,
        capabilities: dict[str, Any] | None = None,
        process_id: int | None = None,
        timeout: float = 120.0,
    ) -> Any:
        """initialize + initialized; the server's initialize result."""
        params = wire.initialize_params(options, capabilities, process_id)
        result = await self.request("initialize", params, timeout=timeout)
        self.notify("initialized", {})
        return result

    async def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Poll ``suggest/status`` until the model is no longer loading; that status."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.request("suggest/status", {}, timeout=60)
            if status and status.get("state") != "loading":
                return status  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise TimeoutError(f"the model did not load in {timeout:.0f} s")
            await asyncio.sleep(0.1)

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
