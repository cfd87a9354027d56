import pytest

from suggest_ls.document import Document, PositionError, units_len


def test_offsets_and_positions_round_trip_with_non_ascii():
    doc = Document("u", "a😀b\nç中x\r\nlast")
    assert doc.line_count == 3
    assert doc.offset(0, 3) == 2  # the emoji is two UTF-16 units
    assert doc.position(2) == (0, 3)
    assert doc.offset(1, 2) == len("a😀b\n") + 2
    assert doc.line(1) == "ç中x"
    assert doc.offset(2, 4) == len(doc.text)


@pytest.mark.parametrize(("encoding", "units"), [("utf-16", 3), ("utf-8", 5), ("utf-32", 2)])
def test_position_encodings(encoding, units):
    doc = Document("u", "a😀b", encoding=encoding)
    assert doc.offset(0, units) == 2
    assert units_len("a😀", encoding) == units


def test_incremental_edits():
    doc = Document("u", "def f():\n    pass\n")
    doc.apply((1, 4), (1, 8), "return 1")
    assert doc.text == "def f():\n    return 1\n"
    doc.apply((0, 6), (0, 6), "x")
    assert doc.text == "def f(x):\n    return 1\n"
    doc.apply(None, None, "new")
    assert doc.text == "new"


def test_positions_past_the_end_clamp_unless_strict():
    doc = Document("u", "ab\ncd")
    assert doc.offset(0, 99) == 2
    assert doc.offset(9, 0) == len(doc.text)
    with pytest.raises(PositionError):
        doc.offset(9, 0, strict=True)
    with pytest.raises(PositionError):
        doc.offset(0, 3, strict=True)
    with pytest.raises(PositionError):
        doc.offset(-1, 0)


def test_reversed_range_is_an_error_and_changes_nothing():
    doc = Document("u", "hello")
    with pytest.raises(PositionError):
        doc.apply((0, 4), (0, 1), "x")
    assert doc.text == "hello"
