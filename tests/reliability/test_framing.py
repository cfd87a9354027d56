"""The base-protocol parser on its own: resynchronisation, limits, and a sample of the fuzz run."""

from __future__ import annotations

import pytest
from hypothesis import settings

from suggest_ls.harness.properties import framing_property
from suggest_ls.lsp.framing import (
    BodyError,
    Frame,
    FrameError,
    FrameParser,
    check_message,
    decode_body,
    encode,
    request_id,
)
from tests.stubs import RecordingWriter


def parse(*chunks: bytes, **kw) -> list:
    parser = FrameParser(**kw)
    out: list = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out


def test_frames_split_anywhere_come_out_whole():
    stream = encode({"jsonrpc": "2.0", "id": 1, "method": "a"}) + encode({"jsonrpc": "2.0", "method": "b"})
    whole = parse(stream)
    assert [type(x) for x in whole] == [Frame, Frame]
    assert parse(*[stream[i : i + 1] for i in range(len(stream))]) == whole


def test_resync_after_a_body_sent_without_headers():
    out = parse(b'{"orphan": true}' + encode({"jsonrpc": "2.0", "method": "next"}))
    assert isinstance(out[0], FrameError) and "before a header" in out[0].reason
    assert out[1] == Frame(b'{"jsonrpc":"2.0","method":"next"}')


def test_an_oversized_message_is_skipped_without_being_buffered():
    parser = FrameParser(max_body=40)
    out = parser.feed(b"Content-Length: 65\r\n\r\n" + b"x" * 60)
    assert isinstance(out[0], FrameError) and "over the 40 byte limit" in out[0].reason
    assert parser.pending == 5
    out = parser.feed(b"y" * 5 + encode({"jsonrpc": "2.0", "method": "after"}))
    assert out == [Frame(b'{"jsonrpc":"2.0","method":"after"}')]


def test_a_message_cut_by_the_end_of_input_is_pending():
    parser = FrameParser()
    assert not parser.incomplete
    parser.feed(b"Content-Length: 10\r\n\r\n")
    assert parser.incomplete and parser.pending == 0
    parser.feed(b"12345")
    assert parser.incomplete and parser.pending == 5
    parser.feed(b"67890")
    assert not parser.incomplete


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"{", "invalid JSON"), (b"[" * 100_000, "nested too deeply"), (b"", "invalid JSON")],
)
def test_bodies_that_are_not_json(body, error):
    with pytest.raises(BodyError, match=error):
        decode_body(body)


def test_invalid_utf8_and_a_bom_are_tolerated():
    value, warning = decode_body(b'\xef\xbb\xbf{"text": "caf\xe9"}')
    assert value == {"text": "caf\ufffd"} and "invalid UTF-8 at byte 16" in warning


@pytest.mark.parametrize(
    ("msg", "why", "answer_id"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "m"}, "", 1),
        ({"jsonrpc": "2.0", "method": "m", "params": [1]}, "", None),
        ({"jsonrpc": "2.0", "id": "a", "result": None}, "", None),
        ([], "JSON object", None),
        ({"id": 1, "method": "m"}, "jsonrpc", 1),
        ({"jsonrpc": "2.0", "id": True, "method": "m"}, "id", None),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "m"}, "id", None),
        ({"jsonrpc": "2.0", "id": 2, "method": None}, "method", 2),
        ({"jsonrpc": "2.0", "id": 3, "method": "m", "params": 7}, "params", 3),
        ({"jsonrpc": "2.0", "id": 4}, "neither", None),
    ],
)
def test_message_checks(msg, why, answer_id):
    found = check_message(msg)
    assert (why in found) if why else found == ""
    assert request_id(msg) == answer_id


def test_garbage_between_frames_sample():
    """A small sample of `suggest-ls bench fuzz --targets framing` (same property)."""
    settings(max_examples=100, deadline=None, database=None, derandomize=True)(framing_property)()


def test_a_fault_while_handling_a_request_is_answered_with_internal_error(monkeypatch):
    """Whatever escapes pygls for one message is logged and answered; the next message is served."""
    from pygls.protocol import LanguageServerProtocol

    from suggest_ls.lsp.features import create_server

    writer = RecordingWriter()
    sent = writer.sent
    protocol = create_server().protocol
    protocol.set_writer(writer)
    protocol.initialized = True

    def explode(self, message):
        raise RuntimeError("injected")

    monkeypatch.setattr(LanguageServerProtocol, "handle_message", explode)
    protocol.receive(b'{"jsonrpc": "2.0", "id": 41, "method": "suggest/status"}')
    out = parse(b"".join(sent))
    assert len(out) == 1 and b'"id": 41' in out[0].body and b"-32603" in out[0].body
