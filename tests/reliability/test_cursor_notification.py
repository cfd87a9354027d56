"""``suggest/didMoveCursor``: where the user is, so the server warms the prompt there; bad params
are logged and ignored, and an edit the client follows with a request warms nothing."""

from __future__ import annotations

import time

from .conftest import FUNC, MARKER, serving

CODE = f"# {MARKER}\nimport os\n\n\ndef walk(root):\n    found = []\n    for d, _, names in os.walk(root):\n        found += names\n    return found\n"


def _warm(server) -> dict:
    return server.result("suggest/status", {})["warm"]


def _wait_warm(server, count: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        warm = _warm(server)
        if warm["done"] + warm["stopped"] >= count:
            return warm
        time.sleep(0.1)
    raise AssertionError(f"no warm job: {_warm(server)}\n{server.tail_log()}")


def test_the_cursor_warms_the_prompt_there(server):
    before = _warm(server)
    server.open("file:///tmp/cursor.py", CODE)
    server.notify(
        "suggest/didMoveCursor",
        {"textDocument": {"uri": "file:///tmp/cursor.py"}, "position": {"line": 5, "character": 4}},
    )
    warm = _wait_warm(server, before["done"] + before["stopped"] + 1)
    assert warm["tokens"] > before["tokens"]


def test_bad_cursor_params_are_logged_and_ignored(server):
    before = _warm(server)
    for params in (
        None,
        {"textDocument": {"uri": 3}, "position": {"line": 0, "character": 0}},
        {"textDocument": {"uri": "file:///tmp/none.py"}, "position": {"line": 0, "character": 0}},  # not open
        {"textDocument": {"uri": "file:///tmp/cursor.py"}, "position": {"line": 999, "character": 0}},  # impossible
        {"textDocument": {"uri": "file:///tmp/cursor.py"}, "position": {"line": True, "character": 0}},
    ):
        server.notify("suggest/didMoveCursor", params)
    assert "suggest/didMoveCursor needs" in server.log_text(wait_for="suggest/didMoveCursor needs")
    time.sleep(0.5)
    assert _warm(server) == before  # nothing warmed for any of them
    serving(server)


def test_an_edit_followed_by_a_request_warms_nothing(server):
    uri = "file:///tmp/typed.py"
    server.open(uri, f"# {MARKER}\n{FUNC}")
    time.sleep(0.6)
    before = _warm(server)
    server.change(
        uri, 2, [{"range": {"start": {"line": 2, "character": 11}, "end": {"line": 2, "character": 11}}, "text": "a"}]
    )
    assert "result" in server.inline(uri, 2, 12, invoked=False)
    time.sleep(0.8)  # past the edit's warm delay: the request made it moot
    assert _warm(server) == before


def test_an_edit_no_request_follows_warms_where_it_ends(server):
    uri = "file:///tmp/edited.py"
    server.open(uri, CODE)
    time.sleep(0.3)
    before = _warm(server)
    at = {"line": 8, "character": 4}
    server.change(uri, 2, [{"range": {"start": at, "end": at}, "text": "n"}])
    warm = _wait_warm(server, before["done"] + before["stopped"] + 1)
    assert warm["tokens"] > before["tokens"]
