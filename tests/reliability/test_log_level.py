"""The ``logLevel`` setting changes the log level while serving; '' gives back --log-level's."""

from __future__ import annotations

from suggest_ls.harness.raw import RawServer

from .conftest import MARKER, OPTIONS


def _config(srv: RawServer, **settings) -> None:
    srv.notify("workspace/didChangeConfiguration", {"settings": {"suggestLs": {**OPTIONS, **settings}}})


def test_log_level_setting_turns_info_lines_off_and_on():
    srv = RawServer()
    try:
        srv.initialize(OPTIONS)
        uri = "file:///tmp/level.py"
        srv.open(uri, f"# {MARKER}\nx = 1\n")
        srv.inline(uri, 5, 0)  # impossible position: an info line 'no suggestion ...'
        assert "no suggestion for file:///tmp/level.py" in srv.log_text(
            wait_for="no suggestion for file:///tmp/level.py"
        )
        _config(srv, logLevel="warning")
        srv.log_text(wait_for="log level: warning")
        srv.open("file:///tmp/quiet.py", "x = 1\n")
        srv.inline("file:///tmp/quiet.py", 5, 0)
        _config(srv, logLevel="")
        text = srv.log_text(wait_for="log level: info")
        assert "no suggestion for file:///tmp/quiet.py" not in text  # at warning, info lines were off
        srv.open("file:///tmp/loud.py", "x = 1\n")
        srv.inline("file:///tmp/loud.py", 5, 0)
        assert "no suggestion for file:///tmp/loud.py" in srv.log_text(wait_for="no suggestion for file:///tmp/loud.py")
        assert MARKER not in srv.log_text()  # document text never reaches an info log
        assert srv.shutdown() == 0
    finally:
        if srv.alive():
            srv.kill()
