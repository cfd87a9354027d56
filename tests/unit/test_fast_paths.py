import pytest
from lsprotocol import types
from pygls.protocol import default_converter

from suggest_ls.lsp.convert import plain_change, plain_inline_result
from tests.stubs import RecordingWriter

RANGE = {"start": {"line": 1, "character": 2}, "end": {"line": 1, "character": 4}}


def params(*changes: object, uri: object = "file:///a.py", version: object = 3) -> dict[str, object]:
    return {"textDocument": {"uri": uri, "version": version}, "contentChanges": list(changes)}


def test_well_formed_changes_become_plain_values() -> None:
    got = plain_change(params({"range": RANGE, "rangeLength": 2, "text": "ab"}, {"text": "whole"}))
    assert got == ("file:///a.py", 3, [((1, 2, 1, 4), "ab"), (None, "whole")])


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        params({"range": RANGE, "text": 1}),
        params({"range": RANGE}),
        params({"range": {"start": {"line": True, "character": 0}, "end": RANGE["end"]}, "text": ""}),
        params({"range": {"start": {"line": -1, "character": 0}, "end": RANGE["end"]}, "text": ""}),
        params({"range": {"start": {"line": 1.0, "character": 0}, "end": RANGE["end"]}, "text": ""}),
        params({"range": {"start": {"line": 1}, "end": RANGE["end"]}, "text": ""}),
        params({"range": None, "text": ""}),
        params({"range": RANGE, "text": ""}, version="3"),
        params({"range": RANGE, "text": ""}, uri=None),
        {"textDocument": {"uri": "file:///a.py", "version": 1}, "contentChanges": {"text": ""}},
    ],
)
def test_anything_else_is_left_to_the_typed_path(bad: object) -> None:
    assert plain_change(bad) is None


def _item(**kw: object) -> types.InlineCompletionItem:
    return types.InlineCompletionItem(insert_text="x + 1)", **kw)  # type: ignore[arg-type]


RNG = types.Range(types.Position(3, 4), types.Position(3, 5))
CMD = types.Command("accepted", "suggest-ls.accepted", arguments=[{"id": "a1", "uri": "file:///a.py", "length": 6}])


@pytest.mark.parametrize(
    "result",
    [
        types.InlineCompletionList(items=[]),
        types.InlineCompletionList(items=[_item()]),
        types.InlineCompletionList(items=[_item(range=RNG, command=CMD)]),
        types.InlineCompletionList(items=[_item(command=types.Command("t", "c", tooltip="tip"))]),
    ],
)
def test_inline_results_are_written_as_the_converter_writes_them(result: types.InlineCompletionList) -> None:
    assert plain_inline_result(result) == default_converter().unstructure(result)


def test_other_results_are_left_to_the_converter() -> None:
    assert plain_inline_result(types.InlineCompletionList(items=[_item(filter_text="x")])) is None
    snippet = types.InlineCompletionItem(insert_text=types.StringValue("x$0"))
    assert plain_inline_result(types.InlineCompletionList(items=[snippet])) is None
    assert plain_inline_result({"items": []}) is None


def test_a_suggestion_waits_for_input_already_sent_and_goes_out_checked_again(caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    from suggest_ls.completion.stats import STALE_EMPTIED, UNREAD_SEND

    caplog.set_level(logging.INFO, logger="suggest_ls.lsp.protocol")

    from suggest_ls.lsp.features import create_server

    ls = create_server()
    writer = RecordingWriter()
    sent = writer.sent
    ls.protocol.set_writer(writer)

    def receive(obj: dict[str, object]) -> None:
        ls.protocol.receive(json.dumps({"jsonrpc": "2.0", **obj}).encode())

    receive({"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None, "capabilities": {}}})
    receive({"method": "initialized", "params": {}})
    uri = "file:///a.py"
    receive(
        {
            "method": "textDocument/didOpen",
            "params": {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "x = \n"}},
        }
    )
    sent.clear()
    pending = [True]
    ls.protocol.input_pending = lambda: pending[0]
    answer = types.InlineCompletionList(items=[_item()])

    def answer_for(msg_id: int) -> None:
        ls.protocol._stale_watch[msg_id] = (uri, ls.documents[uri], ls.documents[uri].version)
        ls.protocol._send_response(msg_id, answer)

    answer_for(7)  # input waits unread: held back
    assert sent == []
    change = {"range": {"start": {"line": 0, "character": 4}, "end": {"line": 0, "character": 4}}, "text": "y"}
    receive(
        {
            "method": "textDocument/didChange",
            "params": {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]},
        }
    )
    pending[0] = False
    ls.protocol.send_deferred()
    assert len(sent) == 1 and b'"id": 7' in sent[0] and b'"items": []' in sent[0]  # stale: sent empty
    logged = [r.getMessage() for r in caplog.records]
    assert any(STALE_EMPTIED in m for m in logged) and not any(UNREAD_SEND in m for m in logged)
    sent.clear()
    answer_for(8)  # nothing unread: sent at once, with its item
    assert len(sent) == 1 and b'"insertText": "x + 1)"' in sent[0]
    sent.clear()
    pending[0] = True
    answer_for(9)
    for _ in range(5):  # input keeps coming: the answer waits for a few chunks, not forever
        ls.protocol.send_deferred()
    assert len(sent) == 1 and b'"id": 9' in sent[0]
    assert any(UNREAD_SEND in r.getMessage() for r in caplog.records)  # and the log says it went out so


async def test_a_request_is_judged_at_the_version_it_was_read_at(caplog: pytest.LogCaptureFixture) -> None:
    # A change read in the same chunk of input as a request is applied before the request's handler
    # runs (a task): the request still names the document as it was, so it gets nothing.
    import asyncio
    import json
    import logging

    from suggest_ls.lsp.features import create_server

    caplog.set_level(logging.INFO, logger="suggest_ls.lsp.server")
    ls = create_server()
    writer = RecordingWriter()
    ls.protocol.set_writer(writer)

    def receive(obj: dict[str, object]) -> None:
        ls.protocol.receive(json.dumps({"jsonrpc": "2.0", **obj}).encode())

    receive({"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None, "capabilities": {}}})
    uri = "file:///a.py"
    text = "def add(a, b):\n    return \n"
    receive(
        {
            "method": "textDocument/didOpen",
            "params": {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}},
        }
    )
    position = {"line": 1, "character": 11}
    inline = {"textDocument": {"uri": uri}, "position": position, "context": {"triggerKind": 2}}
    writer.sent.clear()
    receive({"id": 5, "method": "textDocument/inlineCompletion", "params": inline})
    change = {"range": {"start": {"line": 0, "character": 14}, "end": {"line": 0, "character": 14}}, "text": "  # sum"}
    receive(
        {
            "method": "textDocument/didChange",
            "params": {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]},
        }
    )
    for _ in range(100):
        if writer.sent:
            break
        await asyncio.sleep(0.01)
    assert len(writer.sent) == 1 and b'"id": 5' in writer.sent[0] and b'"items": []' in writer.sent[0]
    logged = [r.getMessage() for r in caplog.records]
    assert any("stale (document changed from v1 before the request started)" in m for m in logged), logged
    # read after the change, the same request is judged at version 2 (and gets as far as the model)
    caplog.clear()
    writer.sent.clear()
    receive({"id": 6, "method": "textDocument/inlineCompletion", "params": inline})
    for _ in range(100):
        if writer.sent:
            break
        await asyncio.sleep(0.01)
    assert len(writer.sent) == 1 and b'"id": 6' in writer.sent[0]
    assert not any("stale" in r.getMessage() for r in caplog.records)
