"""A real ``suggest-ls --stdio`` subprocess driven in raw bytes (the embedded model, greedy)."""

from __future__ import annotations

import pytest

from suggest_ls.harness.raw import RawServer

OPTIONS = {"temperature": 0, "debounceMs": 0, "maxTokens": 16}
FUNC = "def add(a, b):\n    return "
MARKER = "zqx_private_marker_93"  # in every document the tests open; must never reach an info-level log


@pytest.fixture(scope="module")
def server():
    """One initialized server for a whole test module; checked for exactly-once answers at the end."""
    srv = RawServer()
    try:
        srv.initialize(OPTIONS)
        yield srv
        assert srv.alive(), srv.tail_log()
        assert srv.shutdown() == 0
        assert srv.unanswered() == []
        assert srv.answered_twice() == []
    finally:
        if srv.alive():
            srv.kill()


def serving(srv: RawServer, uri: str = "file:///tmp/healthy.py") -> dict:
    """Open a fresh plain document and get a real suggestion for it (proves the server still serves)."""
    srv.open(uri, f"# {MARKER}\n{FUNC}")
    answer = srv.inline(uri, 2, 11)
    assert "result" in answer, answer
    assert len(answer["result"]["items"]) == 1, srv.tail_log()
    return answer["result"]["items"][0]
