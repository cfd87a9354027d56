"""Network exposure: TCP binds loopback by default, a non-loopback bind needs a token that clients
present in ``initialize``, one client at a time; debug logging is the only one with document text."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from suggest_ls.harness.raw import RawServer
from suggest_ls.harness.wire import free_port
from suggest_ls.lsp.framing import Frame, FrameParser, encode
from suggest_ls.security import PrivacyFilter, is_loopback, load_token, token_matches

from .conftest import FUNC, MARKER

TOKEN = "s3cret-token-for-the-tests-0123456789"


def start_tcp(tmp_path: Path, bind: str, token: str = "", level: str = "info") -> tuple[subprocess.Popen, Path]:
    """Start ``suggest-ls --tcp`` and return the process and its log."""
    log = tmp_path / f"tcp-{time.monotonic_ns()}.log"
    env = {k: v for k, v in os.environ.items() if k != "SUGGEST_LS_TOKEN"}
    if token:
        env["SUGGEST_LS_TOKEN"] = token
    cmd = [sys.executable, "-m", "suggest_ls", "--tcp", bind, "--log-file", str(log), "--log-level", level]
    return subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL), log


def bound_port(proc: subprocess.Popen, log: Path) -> tuple[str, int]:
    """The address the server listens on (from its log)."""
    for _ in range(300):
        found = re.search(r"serving LSP on ([\d.:a-f]+):(\d+)", log.read_text() if log.exists() else "")
        if found:
            return found.group(1), int(found.group(2))
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    raise TimeoutError("server did not listen")


class TcpClient:
    """A minimal LSP client over a socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.parser = FrameParser()
        self.inbox: list[dict] = []

    def send(self, msg: dict) -> None:
        self.sock.sendall(encode(msg))

    def recv(self, msg_id: int) -> dict | None:
        """The answer to ``msg_id`` (server requests are answered); None when the connection closed."""
        while True:
            for msg in self.inbox:
                if msg.get("id") == msg_id and "method" not in msg:
                    return msg
            data = self.sock.recv(1 << 16)
            if not data:
                return None
            for item in self.parser.feed(data):
                if isinstance(item, Frame):
                    msg = json.loads(item.body)
                    if "method" in msg and "id" in msg:
                        self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
                    else:
                        self.inbox.append(msg)

    def call(self, msg_id: int, method: str, params: dict | None = None) -> dict | None:
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params or {}})
        return self.recv(msg_id)

    def closed(self) -> bool:
        """True once the server closed the connection (whatever it sent before is read and dropped)."""
        self.sock.settimeout(5)
        try:
            while self.sock.recv(1 << 16):
                pass
        except TimeoutError:
            return False  # still open
        except OSError:
            pass  # reset by the server
        return True


def init_params(token: object = None) -> dict:
    options: dict = {"temperature": 0, "debounceMs": 0, "maxTokens": 16}
    if token is not None:
        options["authToken"] = token
    return {
        "processId": None,
        "capabilities": {"textDocument": {"inlineCompletion": {}}},
        "initializationOptions": options,
    }


def run_cli(args: list[str], env: dict, monkeypatch, capsys) -> tuple[int, str]:
    """Run ``suggest-ls`` in-process (the bind checks happen before any server starts)."""
    import logging

    from suggest_ls.cli import main

    monkeypatch.delenv("SUGGEST_LS_TOKEN", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = main([*args, "--log-level", "warning"])
    finally:
        root.handlers[:], root.level = handlers, level
    return code, capsys.readouterr().err


def test_bind_rules_and_tokens(tmp_path, monkeypatch, capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("192.168.1.2")
    assert load_token(env={}) == ""
    assert load_token(env={"SUGGEST_LS_TOKEN": TOKEN}) == TOKEN
    (tmp_path / "t").write_text(TOKEN + "\n")
    assert load_token(str(tmp_path / "t"), env={}) == TOKEN
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN, TOKEN[:-1]) and not token_matches(TOKEN, None)
    assert not token_matches("", "")
    for args, env, message in [
        (["--tcp", "0.0.0.0:0"], {}, "reachable from other machines"),
        (["--tcp", "192.168.7.7:0"], {}, "reachable from other machines"),
        (["--tcp", "0.0.0.0:0", "--token-file", str(tmp_path / "missing")], {}, "cannot read the token file"),
        (["--tcp", "0.0.0.0:0"], {"SUGGEST_LS_TOKEN": "short"}, "at least 16"),
        (["--health-port", "0.0.0.0:0"], {}, "--health-port on 0.0.0.0"),
    ]:
        code, err = run_cli(args, env, monkeypatch, capsys)
        assert code == 2 and message in err, err


def test_privacy_filter_redacts_library_arguments():
    import logging

    record = logging.LogRecord(
        "pygls.protocol", logging.ERROR, "", 0, "Failed %s %s %s", (7, "x/y", {"text": MARKER}), None
    )
    PrivacyFilter().filter(record)
    assert MARKER not in record.getMessage() and "x/y" in record.getMessage()


def test_tcp_binds_loopback_by_default(tmp_path):
    proc, log = start_tcp(tmp_path, "0")
    try:
        host, _ = bound_port(proc, log)
        assert host == "127.0.0.1"
        listening = [c for c in psutil.Process(proc.pid).net_connections(kind="inet") if c.status == "LISTEN"]
        assert [c.laddr.ip for c in listening] == ["127.0.0.1"]
    finally:
        proc.kill()
        proc.wait()


def test_a_non_loopback_bind_requires_the_token_in_initialize(tmp_path):
    proc, log = start_tcp(tmp_path, "0.0.0.0:0", token=TOKEN, level="debug")
    try:
        _, port = bound_port(proc, log)
        listening = [c for c in psutil.Process(proc.pid).net_connections(kind="inet") if c.status == "LISTEN"]
        assert [c.laddr.ip for c in listening] == ["0.0.0.0"]
        # no token, a wrong token, or anything but initialize first: an error answer and the connection closes
        for first in [("initialize", init_params()), ("initialize", init_params(TOKEN[:-1])), ("suggest/status", {})]:
            client = TcpClient(port)
            answer = client.call(1, *first)
            assert answer is not None and "unauthorized" in answer["error"]["message"]
            assert client.closed()
        garbage = TcpClient(port)
        garbage.sock.sendall(b"Content-Length: 3\r\n\r\n{x}")
        assert garbage.closed()
        # the right token
        client = TcpClient(port)
        answer = client.call(1, "initialize", init_params(TOKEN))
        assert answer is not None and "capabilities" in answer["result"], answer
        client.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        # a second client while one is connected is refused
        assert TcpClient(port).closed()
        for i in range(2, 600):
            status = client.call(i, "suggest/status")
            assert status is not None
            if status["result"]["state"] != "loading":
                break
            time.sleep(0.1)
        uri = "file:///tmp/tcp.py"
        item = {"uri": uri, "languageId": "python", "version": 1, "text": f"# {MARKER}\n{FUNC}"}
        client.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": item}})
        params = {"textDocument": {"uri": uri}, "position": {"line": 2, "character": 11}, "context": {"triggerKind": 1}}
        answer = client.call(1000, "textDocument/inlineCompletion", params)
        assert answer is not None and len(answer["result"]["items"]) == 1
        assert client.call(1001, "shutdown") is not None
        client.send({"jsonrpc": "2.0", "method": "exit"})
        assert proc.wait(5) == 0
        text = log.read_text()
        assert "client authenticated" in text and "not authenticated" in text and "refused" in text
        assert MARKER in text  # debug logging does log document text ...
        assert TOKEN not in text  # ... but never the token
    finally:
        proc.kill()
        proc.wait()


def test_the_health_endpoint_binds_loopback_by_default():
    port = free_port()
    srv = RawServer(("--health-port", str(port)))  # a port alone: no host given
    try:
        deadline = time.monotonic() + 30
        listening: list = []
        while time.monotonic() < deadline:
            conns = psutil.Process(srv.proc.pid).net_connections(kind="inet")
            listening = [c for c in conns if c.status == "LISTEN"]
            if listening:
                break
            time.sleep(0.05)
        assert [(c.laddr.ip, c.laddr.port) for c in listening] == [("127.0.0.1", port)]
    finally:
        srv.kill()


def test_the_authentication_timeout_is_ten_seconds_by_default():
    from suggest_ls.lsp.features import create_server
    from suggest_ls.lsp.transport import AUTH_TIMEOUT_S

    assert AUTH_TIMEOUT_S == 10.0
    assert create_server().auth_timeout_s == AUTH_TIMEOUT_S


async def test_a_client_that_does_not_authenticate_in_time_is_disconnected(caplog):
    import asyncio
    import logging

    from suggest_ls.lsp.features import create_server
    from suggest_ls.lsp.transport import serve_tcp

    server = create_server()
    server.auth_timeout_s = 0.5  # the same path as the 10 s default, shorter
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    serving = asyncio.ensure_future(serve_tcp(server, "127.0.0.1", 0, TOKEN, ready=bound.set_result))
    try:
        port = await asyncio.wait_for(bound, 10)
        with caplog.at_level(logging.INFO, logger="suggest_ls.lsp.transport"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.perf_counter()
            assert await asyncio.wait_for(reader.read(100), 10) == b""  # closed by the server, not by us
            waited = time.perf_counter() - started
            writer.close()
            assert 0.4 <= waited < 5, waited
            assert "not authenticated" in caplog.text
            # a client that presents the token in time stays connected past the timeout
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(encode({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init_params(TOKEN)}))
            parser = FrameParser()
            got: list = []
            while not got:
                data = await asyncio.wait_for(reader.read(1 << 16), 10)
                assert data, "connection closed"
                got = [f for f in parser.feed(data) if isinstance(f, Frame)]
            assert "capabilities" in json.loads(got[0].body)["result"]
            await asyncio.sleep(1.0)  # twice the timeout
            writer.write(encode({"jsonrpc": "2.0", "id": 2, "method": "suggest/status", "params": {}}))
            got = []
            while not got:
                data = await asyncio.wait_for(reader.read(1 << 16), 10)
                assert data, "an authenticated client was disconnected"
                got = [f for f in parser.feed(data) if isinstance(f, Frame) and json.loads(f.body).get("id") == 2]
            writer.close()
    finally:
        serving.cancel()
        if server.engine is not None:
            server.engine.close()
