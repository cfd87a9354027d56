"""The raw client: a real ``suggest-ls --stdio`` subprocess spoken to in bytes, every frame read back.

For bad input, framing, floods, fuzzing and soak runs: it can send anything (broken headers, invalid
JSON), answers the server's own requests, and counts the answers to each request id so "every
request gets exactly one answer" can be checked. Synchronous: a reader thread collects the answers.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from suggest_ls.harness import wire
from suggest_ls.lsp.framing import encode


class ServerGone(RuntimeError):
    """The server process ended or stopped answering."""


class RawServer:
    """A suggest-ls subprocess spoken to in raw bytes."""

    def __init__(
        self,
        args: tuple[str, ...] = (),
        log_level: str = "info",
        env: dict[str, str] | None = None,
        workdir: str | None = None,
    ) -> None:
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="suggest-ls-raw-"))
        self.log_path = self.dir / "server.log"
        self.stderr_path = self.dir / "stderr.txt"
        cmd = wire.server_command(*args, log_file=self.log_path, log_level=log_level)
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env or dict(os.environ)
        )
        self._cond = threading.Condition()
        self._next_id = 0
        self.sent: Counter[Any] = Counter()  # request ids sent
        self.answers: Counter[Any] = Counter()  # answers received per id
        self.responses: dict[Any, dict[str, Any]] = {}
        self.arrival: dict[Any, int] = {}  # the order answers came in (for staleness checks)
        self.null_errors: list[dict[str, Any]] = []  # error answers with id null (unparsable input)
        self.notifications: list[dict[str, Any]] = []
        self.inbox = wire.Inbox()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="raw-client-reader", daemon=True)
        self._reader.start()

    # ----- reading -----
    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            data = out.read1(1 << 16)  # type: ignore[attr-defined]
            if not data:
                break
            for msg in self.inbox.feed(data):
                self._dispatch(msg)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "method" in msg and "id" in msg:  # a request from the server: answer it
            self.send(wire.reply(msg))
            return
        with self._cond:
            if "method" in msg:
                self.notifications.append(msg)
            elif msg.get("id") is None:
                self.null_errors.append(msg)
            else:
                self.answers[msg["id"]] += 1
                self.responses[msg["id"]] = msg
                self.arrival[msg["id"]] = len(self.arrival)
            self._cond.notify_all()

    # ----- writing -----
    def send_bytes(self, data: bytes) -> None:
        """Write raw bytes to the server's stdin."""
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(data)
            stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise ServerGone(f"server stdin closed: {self.tail_log()}") from exc

    def send(self, msg: dict[str, Any]) -> None:
        """Frame and send one message."""
        if "method" in msg and "id" in msg:
            with self._cond:
                self.sent[msg["id"]] += 1
        self.send_bytes(encode(msg))

    def new_id(self) -> int:
        """A fresh integer request id."""
        with self._cond:
            self._next_id += 1
            return self._next_id

    def request(self, method: str, params: Any = None, msg_id: Any = None) -> Any:
        """Send a request; return its id."""
        msg_id = self.new_id() if msg_id is None else msg_id
        self.send(wire.request(msg_id, method, params))
        return msg_id

    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification."""
        self.send(wire.notification(method, params))

    def wait(self, msg_id: Any, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the answer to ``msg_id``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self.responses:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    why = "exited" if self._closed else f"no answer to {msg_id!r} in {timeout:.0f} s"
                    raise ServerGone(f"server {why}; log tail:\n{self.tail_log()}")
                self._cond.wait(min(left, 0.5))
            return self.responses[msg_id]

    def call(self, method: str, params: Any = None, timeout: float = 60.0) -> dict[str, Any]:
        """Send a request and wait for its answer."""
        return self.wait(self.request(method, params), timeout)

    def result(self, method: str, params: Any = None, timeout: float = 60.0) -> Any:
        """Send a request and return its result (raise on an error answer)."""
        answer = self.call(method, params, timeout)
        if "error" in answer:
            raise RuntimeError(f"{method} failed: {answer['error']}")
        return answer.get("result")

    # ----- LSP helpers -----
    def initialize(
        self,
        options: dict[str, Any] | None = None,
        process_id: int | None = None,
        wait_ready: bool = True,
        capabilities: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """initialize + initialized, then wait until the model is loaded."""
        result = self.result("initialize", wire.initialize_params(options, capabilities, process_id))
        self.notify("initialized", {})
        if wait_ready:
            self.wait_ready()
        return result  # type: ignore[no-any-return]

    def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Poll ``suggest/status`` until the model is no longer loading."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.result("suggest/status", {})
            if status["state"] != "loading":
                return status  # type: ignore[no-any-return]
            time.sleep(0.05)
        raise ServerGone("model did not load")

    def open(self, uri: str, text: str, version: int = 1, language: str = "python") -> None:
        """didOpen."""
        item = {"uri": uri, "languageId": language, "version": version, "text": text}
        self.notify("textDocument/didOpen", {"textDocument": item})

    def change(self, uri: str, version: int, changes: list[dict[str, Any]]) -> None:
        """didChange with the given content changes."""
        self.notify(
            "textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": changes}
        )

    def inline_params(self, uri: str, line: int, character: int, invoked: bool = True) -> dict[str, Any]:
        """Parameters of an inline completion request."""
        return {
            "textDocument": {"uri": uri},
            "position": {"line": line, "character": character},
            "context": {"triggerKind": 1 if invoked else 2},
        }

    def inline(
        self, uri: str, line: int, character: int, invoked: bool = True, timeout: float = 60.0
    ) -> dict[str, Any]:
        """An inline completion answer (the whole response message)."""
        return self.call(wire.INLINE, self.inline_params(uri, line, character, invoked), timeout)

    def document_state(self, uri: str) -> dict[str, Any] | None:
        """The server's hash of a document (``suggest/documentState``)."""
        return self.result("suggest/documentState", {"uri": uri})  # type: ignore[no-any-return]

    # ----- checks and teardown -----
    def unanswered(self) -> list[Any]:
        """Request ids sent that have no answer yet."""
        with self._cond:
            return [i for i in self.sent if self.answers[i] == 0]

    def answered_twice(self) -> list[Any]:
        """Request ids that got more answers than they were sent."""
        with self._cond:
            return [i for i, n in self.answers.items() if n > self.sent.get(i, 0)]

    def alive(self) -> bool:
        """The process is still running."""
        return self.proc.poll() is None

    def log_text(self, wait_for: str = "", timeout: float = 5.0) -> str:
        """The server's log so far; with ``wait_for``, once it holds that text (or after ``timeout``).

        The server writes its log from a thread, and a request's log line after its answer.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self.log_path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            if not wait_for or wait_for in text or time.monotonic() > deadline:
                return text
            time.sleep(0.02)

    def tail_log(self, n: int = 30) -> str:
        """The last lines of the server log and of its stderr."""
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return "\n".join(self.log_text().splitlines()[-n:] + err.splitlines()[-n:])

    def shutdown(self, timeout: float = 10.0) -> int:
        """shutdown + exit; return the exit code."""
        if self.alive():
            try:
                self.wait(self.request("shutdown"), timeout)
                self.notify("exit")
            except ServerGone:
                pass
        return self.join(timeout)

    def join(self, timeout: float = 10.0) -> int:
        """Wait for the process to end (kill it after ``timeout``)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._stderr.close()
        return code

    def kill(self) -> None:
        """Kill the process."""
        if self.alive():
            self.proc.kill()
        self.join()
