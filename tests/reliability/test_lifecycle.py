"""Lifecycle over stdio: the order of initialize/shutdown/exit, exit within a second mid-generation,
exit when the editor dies or closes the pipe, and no threads or children left behind."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import psutil

from suggest_ls.harness.raw import RawServer
from suggest_ls.harness.wire import CAPABILITIES

from .conftest import OPTIONS

LONG = "".join(f"def function_{i}(value):\n    return value * {i} + {i * 7}\n\n" for i in range(60))
BLOCK = LONG + "def main():\n    "
# Generous bounds for "at once" on a shared machine: the server stops the engine within 0.3 s; the
# generations these tests interrupt (2048 tokens) would take tens of seconds to finish.
SHUTDOWN_MARGIN_S = 5.0


def gone_within(srv: RawServer, seconds: float) -> int | None:
    """The exit code if the process ended within ``seconds``, else None."""
    try:
        return srv.proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return None


def busy_generating(srv: RawServer, uri: str) -> object:
    """Start a long multi-line generation and return its request id once the engine works on it."""
    srv.open(uri, BLOCK)
    msg_id = srv.request("textDocument/inlineCompletion", srv.inline_params(uri, BLOCK.count("\n"), 4))
    time.sleep(1.0)  # prompt evaluation of ~1000 tokens takes seconds on a CPU
    assert msg_id not in srv.responses, "generation finished too early to test an interruption"
    return msg_id


def test_lifecycle_order_and_shutdown_mid_generation_within_a_second():
    srv = RawServer()
    try:
        # before initialize: requests get ServerNotInitialized, notifications are dropped
        assert srv.call("suggest/status", {})["error"]["code"] == -32002
        srv.open("file:///tmp/early.py", "x = 1\n")
        # a client quirk in the capabilities (1 for true) does not lock it out
        quirky = {**CAPABILITIES, "workspace": {"configuration": 1}}
        srv.initialize(dict(OPTIONS, maxTokensMultiline=2048, multiline="always"), capabilities=quirky)
        assert "initialize accepted although its params do not fit" in srv.log_text(
            "initialize accepted although its params do not fit"
        )
        assert srv.document_state("file:///tmp/early.py") is None
        assert srv.call("initialize", {"processId": None, "capabilities": {}})["error"]["code"] == -32600
        proc = psutil.Process(srv.proc.pid)
        threads_ready = proc.num_threads()
        pending = busy_generating(srv, "file:///tmp/long.py")
        assert proc.children(recursive=True) == []
        started = time.perf_counter()
        shutdown_id = srv.request("shutdown")
        srv.wait(shutdown_id, timeout=5)
        answered = time.perf_counter() - started
        # the interrupted request was answered too (cancelled, or empty as the engine stopped), exactly once
        interrupted = srv.wait(pending, timeout=5)
        assert interrupted.get("error", {}).get("code") == -32800 or interrupted["result"]["items"] == []
        # the engine is given 0.3 s to stop; the 2048 tokens asked for would take far longer than this
        assert answered < SHUTDOWN_MARGIN_S, answered
        assert srv.call("suggest/status", {})["error"]["code"] == -32600  # nothing after shutdown
        # the engine thread ends after the decode step it was in (no wedge, nothing left running)
        deadline = time.monotonic() + 30
        while proc.num_threads() >= threads_ready and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.num_threads() < threads_ready
        srv.notify("exit")
        assert gone_within(srv, SHUTDOWN_MARGIN_S) == 0, srv.tail_log()
        assert srv.unanswered() == [] and srv.answered_twice() == []
        assert "Traceback" not in srv.log_text()
    finally:
        srv.kill()


def test_shutdown_and_exit_mid_generation_end_the_process_within_a_second():
    srv = RawServer()
    try:
        srv.initialize(dict(OPTIONS, maxTokensMultiline=2048, multiline="always"))
        pending = busy_generating(srv, "file:///tmp/long.py")
        srv.request("shutdown")
        srv.notify("exit")
        assert gone_within(srv, SHUTDOWN_MARGIN_S) == 0
        # not answered, answered cancelled, or answered empty: never the whole generation
        assert srv.responses.get(pending, {}).get("result", {"items": []})["items"] == []
    finally:
        srv.kill()


def test_exit_when_the_editor_process_dies_or_the_pipe_closes():
    editor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    srv = RawServer()
    try:
        srv.initialize(OPTIONS, process_id=editor.pid, wait_ready=False)
        assert srv.result("suggest/status", {})["state"] in ("loading", "ready")
        editor.kill()
        editor.wait()
        # a generous bound: the model may be loading on a busy CPU (no polling delay: see the pidfd test below)
        assert gone_within(srv, 15.0) == 1, srv.tail_log()
        assert f"parent process {editor.pid} is gone" in srv.log_text(f"parent process {editor.pid} is gone")
    finally:
        editor.kill()
        srv.kill()
    # an editor that is already gone at initialize: exit right away (LSP: "the server should exit")
    srv = RawServer()
    try:
        srv.initialize(OPTIONS, process_id=editor.pid, wait_ready=False)
        assert gone_within(srv, 15.0) == 1
    finally:
        srv.kill()
    # the editor closes the pipe without shutdown/exit
    srv = RawServer()
    try:
        srv.initialize(OPTIONS, wait_ready=False)
        assert srv.proc.stdin is not None
        srv.proc.stdin.close()
        assert gone_within(srv, 15.0) == 1
        assert "input closed" in srv.log_text("input closed")
    finally:
        srv.kill()


def test_exit_when_the_editor_stops_reading():
    from suggest_ls.lsp.framing import encode

    proc = subprocess.Popen(
        [sys.executable, "-m", "suggest_ls", "--stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        init = {"processId": None, "capabilities": {}, "initializationOptions": OPTIONS}
        proc.stdin.write(encode({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}))
        proc.stdin.flush()
        assert proc.stdout.readline().startswith(b"Content-Length")
        proc.stdout.close()  # the editor's end of the pipe is gone; its stdin side stays open
        proc.stdin.write(encode({"jsonrpc": "2.0", "id": 2, "method": "suggest/status", "params": {}}))
        proc.stdin.flush()
        assert proc.wait(5) == 1
    finally:
        proc.kill()


async def test_the_editor_process_is_watched_through_a_pidfd_not_by_polling():
    from suggest_ls.lsp.transport import watch_parent

    class Ended(Exception):
        pass

    class Host:
        def terminate(self, code: int) -> None:
            raise Ended(code)

    editor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        # polling once an hour: only a pidfd notices the exit before the timeout
        watch = asyncio.ensure_future(watch_parent(Host().terminate, editor.pid, poll_s=3600))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert not watch.done()
        editor.kill()
        editor.wait()
        try:
            await asyncio.wait_for(watch, 10)
        except Ended as exc:
            assert exc.args == (1,)
        else:
            raise AssertionError("the watcher returned without ending the server")
    finally:
        editor.kill()
