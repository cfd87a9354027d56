"""Under load nothing is left behind: a request the client cancels leaves no engine job running.

(The soak found this: a request waiting on a generation it adopted from the previous keystroke,
then cancelled by the client, left that generation running with nobody waiting; thousands of
them made the engine's backlog grow for minutes.)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from suggest_ls.backends.contract import BackendDefaults, ModelInfo
from suggest_ls.backends.llama.engine import Engine
from suggest_ls.completion.completer import Completer
from suggest_ls.completion.prompt import detect_template
from suggest_ls.completion.request import CompletionRequest
from suggest_ls.settings import Settings

HEAD = "".join(f"def helper_{i}(value):\n    return value * {i}\n\n" for i in range(40))


class Spy(BackendDefaults):
    """The real engine, with every submitted job kept for inspection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.jobs: list[Any] = []

    def submit(self, req: Any, done: Any) -> Any:
        job = self.engine.submit(req, done)
        self.jobs.append(job)
        return job

    def expect(self, delta: int) -> None:
        self.engine.expect(delta)


async def test_a_cancelled_request_leaves_no_engine_job_running(engine):
    spy = Spy(engine)
    settings = Settings(debounce_ms=0, temperature=0, max_tokens=48, extra_context_tokens=0)
    completer = Completer(spy, detect_template(ModelInfo()), settings)
    uri = "file:///tmp/load.py"
    text = HEAD + "def main(x):\n    return x + "
    first = asyncio.ensure_future(completer.complete(CompletionRequest(uri, 1, text, len(text), "python", True)))
    await asyncio.sleep(0.3)  # its prompt (hundreds of tokens) is being evaluated
    assert len(spy.jobs) == 1 and not spy.jobs[0].finished
    typed = text + "1"  # the next keystroke adopts the running generation ...
    second = asyncio.ensure_future(completer.complete(CompletionRequest(uri, 2, typed, len(typed), "python", True)))
    await asyncio.sleep(0.1)
    second.cancel()  # ... and the client cancels that request
    assert (await first).reason == "superseded"
    try:
        await second
    except asyncio.CancelledError:
        pass
    assert spy.jobs, "no generation was started"
    running = [job for job in spy.jobs if not job.finished and not job.cancel.is_set()]
    assert running == []


@pytest.mark.parametrize("path", ["fast", "typed"])
def test_keystrokes_leave_nothing_behind_in_the_protocol(path, monkeypatch):
    """pygls keeps the future of every notification it runs as a generator; ours are not generators.

    Well-formed didChange takes a fast path past pygls; the typed path (every didChange the fast path
    does not take, and every didOpen/didClose) goes through pygls' dispatch, where the leak was.
    """
    from suggest_ls.lsp import protocol as protocol_module
    from suggest_ls.lsp.features import create_server

    if path == "typed":
        monkeypatch.setattr(protocol_module, "plain_change", lambda params: None)

    class Sink:
        def write(self, data: bytes) -> None:
            pass

        def close(self) -> None:
            pass

    server = create_server()
    protocol = server.protocol
    protocol.set_writer(Sink())

    def send(msg: dict) -> None:
        protocol.receive(json.dumps({"jsonrpc": "2.0", **msg}).encode())

    send({"id": 1, "method": "initialize", "params": {"processId": None, "capabilities": {}}})
    item = {"uri": "file:///k.py", "languageId": "python", "version": 1, "text": ""}
    send({"method": "textDocument/didOpen", "params": {"textDocument": item}})
    before = len(protocol._request_futures)
    for version in range(2, 502):
        change = {"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "text": "x"}
        send(
            {
                "method": "textDocument/didChange",
                "params": {"textDocument": {"uri": item["uri"], "version": version}, "contentChanges": [change]},
            }
        )
    assert server.documents[item["uri"]].text == "x" * 500
    assert server.documents[item["uri"]].version == 501
    for i in range(200):
        other = {**item, "uri": f"file:///o{i}.py"}
        send({"method": "textDocument/didOpen", "params": {"textDocument": other}})
        send({"method": "textDocument/didClose", "params": {"textDocument": {"uri": other["uri"]}}})
    assert list(server.documents) == [item["uri"]]
    assert len(protocol._request_futures) - before < 5
