import pytest

from suggest_ls.server import _plain_change

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
