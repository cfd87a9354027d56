"""An endless stream of garbage: the server keeps serving and its log stays small (rate-limited, counted)."""

from __future__ import annotations

import random
import re

from suggest_ls.harness.raw import RawServer
from suggest_ls.lsp.lograte import LogLimiter

from .conftest import OPTIONS, serving

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ", re.MULTILINE)


def test_megabytes_of_garbage_log_a_bounded_number_of_lines():
    srv = RawServer()
    try:
        srv.initialize(OPTIONS)
        lines_before = len(LOG_LINE.findall(srv.log_text()))
        rng = random.Random(18)
        chunk = 64 * 1024
        for _ in range(4 * 1024 * 1024 // chunk):  # 4 MB of random bytes (a line break every ~256 bytes)
            srv.send_bytes(rng.randbytes(chunk).replace(b"Content-Length", b"Content-Lenxth"))
        srv.send_bytes(b"\r\n")
        for _ in range(2000):  # well framed, but not JSON: each is answered with a parse error
            srv.send_bytes(b"Content-Length: 9\r\n\r\n{not json")
        item = serving(srv, "file:///tmp/after-flood.py")  # and then a real request is served
        assert item["insertText"]
        assert len(srv.null_errors) == 2000
        assert srv.shutdown() == 0
        log = srv.log_text()
        lines = LOG_LINE.findall(log)
        assert len(lines) - lines_before < 120, srv.tail_log(60)
        # what was left out is counted
        counts = {
            kind: sum(int(n) for n in re.findall(rf"(\d+) more lines like '{re.escape(kind)}' suppressed", log))
            for kind in ("malformed input: %s", "message of %d bytes not parsed: %s")
        }
        assert counts["malformed input: %s"] > 1000, counts
        assert counts["message of %d bytes not parsed: %s"] == 2000 - 20, counts
    finally:
        srv.kill()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_limiter_lets_a_burst_through_per_window_and_counts_the_rest(caplog):
    import logging

    clock = Clock()
    log = logging.getLogger("tests.floods")
    limiter = LogLimiter(log, burst=3, window_s=10.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="tests.floods"):
        for i in range(50):
            limiter.warning("bad %d", i)
        limiter.warning("other")
        assert [r.getMessage() for r in caplog.records] == ["bad 0", "bad 1", "bad 2", "other"]
        clock.now = 5.0
        limiter.flush()  # the window is not over: nothing yet
        assert len(caplog.records) == 4
        clock.now = 10.0
        limiter.warning("bad %d", 99)  # a new window: the count first, then the line
        assert [r.getMessage() for r in caplog.records][4:] == [
            "47 more lines like 'bad %d' suppressed in 10 s",
            "bad 99",
        ]
        assert caplog.records[4].levelno == logging.WARNING
        for i in range(5):
            limiter.warning("bad %d", i)
        limiter.flush(everything=True)
        assert caplog.records[-1].getMessage() == "3 more lines like 'bad %d' suppressed in 0 s"
        assert limiter.suppressed_total == 50
