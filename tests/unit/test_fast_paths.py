import pytest
from lsprotocol import types
from pygls.protocol import default_converter

from suggest_ls.server import _plain_change, _plain_inline_result

RANGE = {"start": {"line": 1, "character": 2}, "end": {"line": 1, "character": 4}}


def params(*changes: object, uri: object = "file:///a.py", version: object = 3) -> dict[str, object]:
    return {"textDocument": {"uri": uri, "version": version}, "contentChanges": list(changes)}


def test_well_formed_changes_become_plain_values() -> None:
    got = _plain_change(params({"range": RANGE, "rangeLength": 2, "text": "ab"}, {"text": "whole"}))
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
    assert _plain_change(bad) is None


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
    assert _plain_inline_result(result) == default_converter().unstructure(result)


def test_other_results_are_left_to_the_converter() -> None:
    assert _plain_inline_result(types.InlineCompletionList(items=[_item(filter_text="x")])) is None
    snippet = types.InlineCompletionItem(insert_text=types.StringValue("x$0"))
    assert _plain_inline_result(types.InlineCompletionList(items=[snippet])) is None
    assert _plain_inline_result({"items": []}) is None
