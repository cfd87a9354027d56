"""Bad input over the real stdio protocol, in raw bytes, against one server subprocess.

Each case gets the right LSP error or an empty result with a logged reason; after each the server
still answers, and at the end every request has had exactly one answer and the info-level log
holds no document text.
"""

from __future__ import annotations

import json
import time

import psutil

from suggest_ls.harness.raw import RawServer
from suggest_ls.harness.reference import ref_apply, sha
from suggest_ls.harness.wire import INLINE, frame

from .conftest import FUNC, MARKER, serving


def raw_request(srv: RawServer, obj: dict, msg_id) -> dict:
    """Send a hand-built request (counted for the exactly-once check) and wait for its answer."""
    srv.sent[msg_id] += 1
    srv.send_bytes(frame(json.dumps(obj).encode()))
    return srv.wait(msg_id)


def null_error(srv: RawServer, raw: bytes) -> dict:
    """Send ``raw`` and return the id-less error answer it must produce."""
    before = len(srv.null_errors)
    srv.send_bytes(raw)
    srv.result("suggest/status", {})  # a barrier: everything before it was read
    assert len(srv.null_errors) == before + 1, srv.null_errors
    return srv.null_errors[-1]["error"]


def status_ok(srv: RawServer) -> None:
    """The server still reads and answers."""
    assert srv.result("suggest/status", {})["state"] == "ready"


def test_malformed_framing_is_dropped_and_the_stream_recovers(server):
    broken = [
        b"garbage without a header\r\n",
        b"Content-Length: abc\r\n\r\n",
        b"Content-Length: -5\r\n\r\n",
        b'{"jsonrpc":"2.0","id":1,"method":"x"}\r\n',  # a body without headers
        b"X-Custom: 1\r\n\r\n",  # headers without Content-Length
        b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"Content-Length: 99999999999999999999\r\n\r\n",
        b"\x00\xff\xfe\x80 binary junk\r\n",
        b"A" * 20_000 + b"\r\n",  # an overlong header line
        b'{"jsonrpc":"2.0"}',  # no line break: glued to the next header
    ]
    for raw in broken:
        server.send_bytes(raw)
        status_ok(server)
    for reason in (
        "outside any message",
        "invalid Content-Length",
        "without Content-Length",
        "conflicting",
        "longer than",
    ):  # the log is written from a thread: wait for each line (under load it comes late)
        assert reason in server.log_text(wait_for=reason, timeout=30.0), reason
    # lenient where it costs nothing: LF-only lines, any header case, a Content-Type, byte-by-byte delivery
    msg_id = server.new_id()
    body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "suggest/status", "params": {}}).encode()
    raw = b"content-length: %d\nContent-Type: application/vscode-jsonrpc; charset=utf-8\n\n" % len(body) + body
    server.sent[msg_id] += 1
    for i in range(len(raw)):
        server.send_bytes(raw[i : i + 1])
    assert server.wait(msg_id)["result"]["state"] == "ready"


def test_bad_json_and_bad_messages_get_the_json_rpc_errors(server):
    assert null_error(server, frame(b'{"not json": ' + MARKER.encode()))["code"] == -32700
    assert null_error(server, frame(b"[" * 200_000))["code"] == -32700  # nested too deeply
    assert null_error(server, frame(b"[1, 2]"))["code"] == -32600  # batches are not LSP
    assert null_error(server, frame(b'"just a string"'))["code"] == -32600
    assert null_error(server, frame(b'{"jsonrpc":"2.0","id":{"a":1},"method":"suggest/status"}'))["code"] == -32600
    i = server.new_id()
    assert raw_request(server, {"id": i, "method": "suggest/status"}, i)["error"]["code"] == -32600  # no jsonrpc
    i = server.new_id()
    assert raw_request(server, {"jsonrpc": "1.0", "id": i, "method": "suggest/status"}, i)["error"]["code"] == -32600
    i = server.new_id()
    assert raw_request(server, {"jsonrpc": "2.0", "id": i, "method": 42}, i)["error"]["code"] == -32600
    i = server.new_id()
    answer = raw_request(server, {"jsonrpc": "2.0", "id": i, "method": "suggest/status", "params": "x"}, i)
    assert answer["error"]["code"] == -32600
    # a notification method sent as a request is still answered
    i = server.new_id()
    params = {"textDocument": {"uri": "file:///tmp/n.py", "languageId": "python", "version": 1, "text": MARKER}}
    answer = raw_request(server, {"jsonrpc": "2.0", "id": i, "method": "textDocument/didOpen", "params": params}, i)
    assert answer["error"]["code"] == -32600
    status_ok(server)


def test_unknown_methods(server):
    assert server.call("foo/bar", {"x": MARKER})["error"]["code"] == -32601
    assert server.call("$/unknownRequest", {})["error"]["code"] == -32601
    server.notify("foo/bar", {"x": 1})  # unknown notifications are ignored
    server.notify("$/unknownNotification", {})
    assert server.call("suggest/status")["result"]["state"] == "ready"  # no params at all is fine too


def test_wrong_parameter_types_are_invalid_params(server):
    uri = "file:///tmp/types.py"
    server.open(uri, f"# {MARKER}\n{FUNC}")
    good = server.inline_params(uri, 2, 11)
    bad = [
        {**good, "position": {"line": MARKER, "character": 0}},
        {**good, "position": {"line": 1.5, "character": 0}},
        {**good, "position": {"line": True, "character": 0}},
        {**good, "textDocument": {"uri": 5}},
        {**good, "context": {"triggerKind": "automatic"}},
        {"textDocument": {"uri": uri}},
        [1, 2, 3],
        {},
    ]
    for params in bad:
        answer = server.call(INLINE, params)
        assert answer["error"]["code"] == -32602, (params, answer)
        assert "invalid params" in answer["error"]["message"]
    assert server.call("textDocument/completion", {"textDocument": {"uri": uri}})["error"]["code"] == -32602
    # a didOpen whose text is not a string is dropped with a logged reason, not stringified
    item = {"uri": "file:///tmp/numtext.py", "languageId": "python", "version": 1, "text": 12345}
    server.notify("textDocument/didOpen", {"textDocument": item})
    assert server.document_state("file:///tmp/numtext.py") is None
    assert "textDocument/didOpen with invalid params dropped" in server.log_text(
        "textDocument/didOpen with invalid params dropped"
    )


def test_positions_past_the_end_or_negative(server):
    uri = "file:///tmp/short.py"
    server.open(uri, f"x = 1  # {MARKER}\n")
    for line, character in [(40, 0), (0, 400), (1, 1)]:
        assert server.inline(uri, line, character)["result"]["items"] == []
    for line, character in [(-1, 0), (0, -3), (2**40, 0)]:
        assert server.inline(uri, line, character)["error"]["code"] == -32602
    assert "past end" in server.log_text("past end")


def test_documents_never_opened(server):
    uri = "file:///never/opened.py"
    assert server.inline(uri, 0, 0)["result"]["items"] == []
    answer = server.call(
        "textDocument/completion", {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}}
    )
    assert answer["result"]["items"] == []
    server.change(uri, 2, [{"text": "x"}])
    server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert server.document_state(uri) is None
    assert f"no suggestion for {uri}: document not open" in server.log_text(
        f"no suggestion for {uri}: document not open"
    )
    assert f"didChange for a document that is not open: {uri}" in server.log_text(
        f"didChange for a document that is not open: {uri}"
    )


def test_impossible_edits_mark_the_document_out_of_sync_until_replaced(server):
    uri = "file:///tmp/edits.py"
    text = f"# {MARKER}\n{FUNC}"
    server.open(uri, text)
    # a range past the end is clamped, as the spec says
    server.change(
        uri, 2, [{"range": {"start": {"line": 9, "character": 0}, "end": {"line": 9, "character": 5}}, "text": "\n"}]
    )
    text = ref_apply(text, (9, 0), (9, 5), "\n")
    state = server.document_state(uri)
    assert state["sha256"] == sha(text) and state["version"] == 2 and not state["outOfSync"]
    # a reversed range cannot be applied: no suggestions until the client resends the text
    server.change(
        uri, 3, [{"range": {"start": {"line": 2, "character": 4}, "end": {"line": 1, "character": 0}}, "text": "x"}]
    )
    assert "range end" in server.document_state(uri)["outOfSync"]
    assert server.inline(uri, 2, 11)["result"]["items"] == []
    assert f"no suggestion for {uri}: document out of sync" in server.log_text(
        f"no suggestion for {uri}: document out of sync"
    )
    server.change(uri, 4, [{"text": FUNC}])
    assert not server.document_state(uri)["outOfSync"]
    assert len(server.inline(uri, 1, 11)["result"]["items"]) == 1
    # an edit with a negative position is dropped by type checks: the document is out of sync again
    server.change(
        uri, 5, [{"range": {"start": {"line": -1, "character": 0}, "end": {"line": 0, "character": 0}}, "text": "y"}]
    )
    assert server.document_state(uri)["outOfSync"]
    assert "out of sync until it is reopened" in server.log_text("out of sync until it is reopened")


def test_a_50_mb_document_and_a_1_mb_line(server):
    big_uri, line_uri = "file:///tmp/big.py", "file:///tmp/longline.py"
    row = f"value = compute(alpha, beta)  # {MARKER}\n"
    big = row * (50_000_000 // len(row))
    server.open(big_uri, big)
    started = time.perf_counter()
    server.change(
        big_uri,
        2,
        [{"range": {"start": {"line": 3, "character": 8}, "end": {"line": 3, "character": 15}}, "text": "measure"}],
    )
    state = server.document_state(big_uri)
    took = time.perf_counter() - started
    assert state["length"] == len(big) and state["version"] == 2
    lines = big.count("\n")
    assert server.inline(big_uri, lines - 1, 8)["result"]["items"] == []
    assert "document too large" in server.log_text("document too large")
    server.notify("textDocument/didClose", {"textDocument": {"uri": big_uri}})
    assert took < 10, took  # an edit does not re-copy 50 MB (document.py keeps chunks)

    server.open(line_uri, "x = '" + "a" * 1_000_000 + "' + str(")
    assert server.inline(line_uri, 0, 1_000_008)["result"]["items"] == []
    assert "line too long" in server.log_text("line too long")
    serving(server, "file:///tmp/after-big.py")


def test_binary_content_and_nul_bytes(server):
    uri = "file:///tmp/binary.py"
    server.open(uri, f"# {MARKER}\ndata = '\x00\x01\x02\x7f\x1b[0m'\ndef add(a, b):\n    return ")
    assert server.inline(uri, 3, 11)["result"]["items"] == []
    assert "binary content near the cursor" in server.log_text("binary content near the cursor")


def test_invalid_utf8_is_replaced_and_served(server):
    uri = "file:///tmp/latin1.py"
    body = (
        b'{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":{"uri":"'
        + uri.encode()
        + b'","languageId":"python","version":1,"text":"# caf\xe9 \xff\xfe '
        + MARKER.encode()
        + b'\\ndef add(a, b):\\n    return "}}}'
    )
    server.send_bytes(frame(body))
    state = server.document_state(uri)
    assert state is not None and state["lines"] == 3
    assert "invalid UTF-8" in server.log_text("invalid UTF-8")
    assert "result" in server.inline(uri, 2, 11)


def test_lone_surrogates_in_text_and_uri(server):
    uri = "file:///tmp/sur\udc80rogate.py"
    text = f"# \ud800 {MARKER} \udfff\ndef add(a, b):\n    return "
    server.open(uri, text)
    assert server.document_state(uri)["sha256"] == sha(text)
    answer = server.inline(uri, 2, 11)
    assert "result" in answer
    server.change(
        uri,
        2,
        [{"range": {"start": {"line": 0, "character": 2}, "end": {"line": 0, "character": 3}}, "text": "\udbff"}],
    )
    assert server.document_state(uri)["sha256"] == sha(ref_apply(text, (0, 2), (0, 3), "\udbff"))


def test_crlf_and_mixed_line_endings(server):
    uri = "file:///tmp/crlf.py"
    server.open(uri, f"# {MARKER}\r\n\r\ndef add(a, b):\r\n    return ")
    items = server.inline(uri, 3, 11)["result"]["items"]
    assert len(items) == 1
    assert items[0]["range"]["start"] == {"line": 3, "character": 11}
    assert "\r" not in items[0]["insertText"]
    mixed = "file:///tmp/mixed.py"
    text = f"a = 1\rb = 2\n\r\n# {MARKER}\u2028still line 3\x85\ndef add(a, b):\r\n    return "
    server.open(mixed, text)
    state = server.document_state(mixed)
    assert state["lines"] == 6  # CR, LF and CRLF end lines; U+2028 and NEL do not
    assert "result" in server.inline(mixed, 5, 11)


def test_no_network_socket_is_open(server):
    proc = psutil.Process(server.proc.pid)
    assert proc.net_connections(kind="inet") == []
    assert [c for c in proc.net_connections(kind="all") if c.family.name != "AF_UNIX"] == []


def test_every_request_answered_once_and_no_document_text_in_the_log(server):
    serving(server, "file:///tmp/final.py")
    assert server.unanswered() == []
    assert server.answered_twice() == []
    assert server.alive()
    log = server.log_text()
    assert MARKER not in log
    assert "Traceback" not in log
    # reasons are counted without their numbers: the counters stay bounded over a long session
    before = server.result("suggest/status", {})["outcomes"]
    uri = "file:///tmp/numbers.py"
    server.open(uri, f"# {MARKER}\nx = 1\n")
    for line, character in ((40, 0), (41, 3), (1, 99), (1, 120)):
        assert server.inline(uri, line, character)["result"]["items"] == []
    outcomes = server.result("suggest/status", {})["outcomes"]
    assert outcomes.get("line N past end", 0) - before.get("line N past end", 0) == 2, outcomes
    key = "character N past end of line N"
    assert outcomes.get(key, 0) - before.get(key, 0) == 2, outcomes
    assert not [k for k in outcomes if any(ch.isdigit() for ch in k)], outcomes


def test_cancel_notifications_with_odd_ids(server):
    for params in [{"id": [1]}, {"id": {"a": 1}}, {}, {"id": 10**30}, {"id": "never-sent"}, {"id": None}]:
        server.notify("$/cancelRequest", params)
        status_ok(server)
    assert "$/cancelRequest without a valid id dropped" in server.log_text("$/cancelRequest without a valid id dropped")


def test_cases_the_fuzzer_found(server):
    """Each of these once crashed the server or left a request unanswered."""
    i = server.new_id()  # a notification method sent as a request with bad params: answered
    answer = raw_request(server, {"jsonrpc": "2.0", "id": i, "method": "$/cancelRequest", "params": {}}, i)
    assert answer["error"]["code"] == -32602
    server.notify("textDocument/didChange", {"textDocument": [1], "contentChanges": []})
    server.notify("$/cancelRequest", {"id": [1, 2]})
    status_ok(server)
    # one id used by two requests in flight (a client bug): both answered, nothing breaks
    uri = "file:///tmp/dup.py"
    server.open(uri, f"# {MARKER}\n{FUNC}")
    dup = server.new_id()
    server.request(INLINE, server.inline_params(uri, 2, 11), msg_id=dup)
    server.request("suggest/documentState", {"uri": uri}, msg_id=dup)
    deadline = time.monotonic() + 120
    while server.answers[dup] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.answers[dup] == 2 and server.sent[dup] == 2
    status_ok(server)
