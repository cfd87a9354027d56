import pytest

from suggest_ls.lsp.document import Document, PositionError, units_len


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


def test_out_of_sync_ends_with_a_full_replacement():
    doc = Document("u", "abc")
    doc.out_of_sync = "impossible edit"
    doc.apply((0, 1), (0, 2), "x")
    assert doc.out_of_sync
    doc.apply(None, None, "fresh")
    assert doc.out_of_sync == "" and doc.text == "fresh"


@pytest.mark.parametrize(
    ("text", "start", "end", "new", "expected"),
    [
        ("a\r\nb", (0, 1), (0, 1), "", "a\r\nb"),  # nothing changes
        ("a\rb", (1, 0), (1, 0), "\n", "a\r\nb"),  # a CR meets an LF: two lines, not three
        ("a\r\nb", (0, 1), (1, 0), "\r", "a\rb"),  # replace the whole CRLF by a CR
        ("x\n\n\ny", (1, 0), (3, 0), "", "x\ny"),
        ("😀\r\n中", (0, 2), (1, 1), "\r", "😀\r"),
    ],
)
def test_line_index_after_edits_around_line_breaks(text, start, end, new, expected):
    doc = Document("u", text)
    doc.apply(start, end, new)
    assert doc.text == expected
    assert doc._starts.tolist() == Document("u", expected)._starts.tolist()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
def test_random_edit_sequences_match_a_reference_model(encoding):
    """A small sample of `suggest-ls bench fuzz --targets document` (same property)."""
    from hypothesis import settings

    from suggest_ls.harness.properties import document_property

    settings(max_examples=40, deadline=None, database=None, derandomize=True)(document_property(encoding))()


def test_a_50_mb_document_takes_edits_quickly():
    import time

    line = "x = compute(alpha, beta)  # 😀 comment\n"
    text = line * (50_000_000 // len(line))
    started = time.perf_counter()
    doc = Document("u", text)  # indexes every line once
    indexing = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(20):
        doc.apply((1000 * i, 4), (1000 * i, 11), "recompute")
    per_edit = (time.perf_counter() - started) / 20
    assert doc.line(1) == line.rstrip("\n") and doc.line(19_000).startswith("x = recompute(")
    assert doc._starts[-1] == len(doc.text)
    # an edit does not index the document again: a fraction of indexing it once (measured here)
    assert per_edit < indexing / 4, (per_edit, indexing)
