"""clientlog.ClientLog: records become window/logMessage frames written by the event loop, bounded."""

from __future__ import annotations

import asyncio
import json
import logging
import threading

from suggest_ls.lsp.clientlog import ClientLog
from suggest_ls.lsp.framing import Frame, FrameParser


class Fallback(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def record(level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord("suggest_ls.test", level, __file__, 1, msg, None, None)


def messages(written: list[bytes]) -> list[dict]:
    frames = FrameParser().feed(b"".join(written))
    return [json.loads(f.body) for f in frames if isinstance(f, Frame)]


async def test_records_from_any_thread_are_written_by_the_loop_with_their_level():
    fallback = Fallback()
    handler = ClientLog(fallback)
    handler.handle(record(logging.INFO, "before the client"))  # no client yet: stderr
    assert [r.getMessage() for r in fallback.records] == ["before the client"]
    loop_thread = threading.get_ident()
    written: list[bytes] = []
    writers: set[int] = set()

    def write(data: bytes) -> None:
        writers.add(threading.get_ident())
        written.append(data)

    handler.attach(write)
    levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
    worker = threading.Thread(target=lambda: [handler.handle(record(lv, f"line {lv}")) for lv in levels])
    worker.start()
    worker.join()
    assert written == []  # nothing is written outside the loop
    for _ in range(100):
        if len(messages(written)) == len(levels):
            break
        await asyncio.sleep(0.01)
    got = messages(written)
    assert [m["method"] for m in got] == ["window/logMessage"] * 5
    assert [m["params"]["type"] for m in got] == [4, 3, 2, 1, 1]  # Log, Info, Warning, Error, Error
    assert got[1]["params"]["message"] == "suggest_ls.test: line 20"
    assert writers == {loop_thread}
    assert len(fallback.records) == 1


async def test_a_client_that_lags_gets_a_bounded_queue_and_a_count():
    handler = ClientLog(Fallback())
    written: list[bytes] = []
    handler.attach(written.append)
    for i in range(ClientLog.MAX_PENDING + 500):  # on the loop: none is written before it runs again
        handler.handle(record(logging.INFO, f"line {i}"))
    await asyncio.sleep(0.05)
    got = messages(written)
    assert len(got) == ClientLog.MAX_PENDING + 1
    assert got[-1]["params"] == {
        "type": 2,
        "message": "suggest_ls.lsp.clientlog: 500 log lines dropped (the client lagged)",
    }


async def test_a_closed_pipe_sends_the_rest_to_the_fallback():
    fallback = Fallback()
    handler = ClientLog(fallback)

    def broken(data: bytes) -> None:
        raise BrokenPipeError

    handler.attach(broken)
    handler.handle(record(logging.WARNING, "lost with the pipe"))
    await asyncio.sleep(0.05)
    assert not handler.attached
    handler.handle(record(logging.WARNING, "after"))
    assert [r.getMessage() for r in fallback.records] == ["after"]
