"""Hypothesis strategies and properties shared by ``suggest-ls bench fuzz`` and the tests.

``document_property``: random edit sequences applied to ``Document`` and to the reference model
agree on text, lines and positions. ``framing_property``: messages split at random chunk
boundaries with garbage in between come out of ``FrameParser`` whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from suggest_ls.harness.reference import ref_apply, ref_lines, ref_offset, ref_units
from suggest_ls.harness.wire import frame
from suggest_ls.lsp.document import Document
from suggest_ls.lsp.framing import FrameError, FrameParser

ALPHABET = [
    "a",
    "b",
    "z",
    " ",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "é",
    "中",
    "😀",
    "𝔘",
    "\u2028",
    "\x85",
    "\x00",
    "\ud800",
    "\x0c",
]

texts = st.lists(st.sampled_from(ALPHABET), max_size=60).map("".join)


@st.composite
def positions(draw: Any, text: str, encoding: str = "utf-16") -> tuple[int, int]:
    """A position on a character boundary, sometimes past the end of its line or of the document."""
    lines = ref_lines(text)
    line = draw(st.integers(0, len(lines)))
    if line >= len(lines) or draw(st.integers(0, 9)) == 0:
        return line, draw(st.integers(0, 80))
    start, end = lines[line]
    i = draw(st.integers(start, end))
    return line, ref_units(text[start:i], encoding)


@st.composite
def edit_sequences(draw: Any, encoding: str = "utf-16") -> tuple[str, list[tuple[Any, Any, str]]]:
    """An initial text and a list of valid edits (ordered ranges; ``None`` ranges replace everything)."""
    text = draw(texts)
    current = text
    edits: list[tuple[Any, Any, str]] = []
    for _ in range(draw(st.integers(1, 12))):
        new = draw(texts)
        if draw(st.integers(0, 15)) == 0:
            edits.append((None, None, new))
            current = new
            continue
        p, q = draw(positions(current, encoding)), draw(positions(current, encoding))
        if ref_offset(current, p[0], p[1], encoding) > ref_offset(current, q[0], q[1], encoding):
            p, q = q, p
        edits.append((p, q, new))
        current = ref_apply(current, p, q, new, encoding)
    return text, edits


def check_document(text: str, edits: list[tuple[Any, Any, str]], encoding: str, chunk: int = 1 << 16) -> None:
    """Document and the reference agree on text, lines and positions after every edit."""
    doc = Document("u", text, encoding=encoding, chunk=chunk)
    current = text
    for p, q, new in edits:
        doc.apply(p, q, new)
        current = new if p is None else ref_apply(current, p, q, new, encoding)
        lines = ref_lines(current)
        assert doc.line_count == len(lines)
        assert doc._starts.tolist() == [s for s, _ in lines]
        for n, (s, e) in enumerate(lines):
            assert doc.line(n) == current[s:e]
            assert doc.offset(n, ref_units(current[s:e], encoding)) == e
        assert doc.slice(1, len(current) - 1) == current[1:-1]
        assert doc.text == current, (doc.text, current)


def document_property(encoding: str = "utf-16") -> Callable[..., None]:
    """The document target as a hypothesis test function (tiny chunks exercise chunk boundaries)."""

    @given(edit_sequences(encoding), st.sampled_from([1, 2, 3, 7, 1 << 16]))
    def run(case: tuple[str, list[tuple[Any, Any, str]]], chunk: int) -> None:
        check_document(case[0], case[1], encoding, chunk)

    return run


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
bodies = json_values.map(lambda v: json.dumps(v).encode())
garbage = st.binary(max_size=40).map(lambda b: b.replace(b":", b""))


@given(st.lists(st.tuples(garbage, bodies), min_size=1, max_size=8), st.lists(st.integers(1, 64), min_size=1))
def framing_property(items: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    """Garbage between frames is reported and dropped; every frame after it comes out whole."""
    stream = b"".join(g + b"\r\n" + frame(body) for g, body in items)
    parser = FrameParser()
    out: list[Any] = []
    i = k = 0
    while i < len(stream):
        n = cuts[k % len(cuts)]
        out += parser.feed(stream[i : i + n])
        i, k = i + n, k + 1
    frames = [x.body for x in out if not isinstance(x, FrameError)]
    assert frames == [body for _, body in items]
    assert not parser.incomplete
