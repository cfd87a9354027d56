"""An independent model of the client's copy of a document, to check the server's against.

Lines split by hand (only CR, LF and CRLF end a line, as in LSP), code units counted by encoding,
ranged edits applied with the spec's clamping, and the hash ``suggest/documentState`` reports.
Nothing here shares code with ``suggest_ls.lsp.document``.
"""

from __future__ import annotations

import hashlib


def ref_lines(text: str) -> list[tuple[int, int]]:
    """(start, end-without-break) of every line; only CR, LF and CRLF end a line, as in LSP."""
    lines = []
    start = i = 0
    while i < len(text):
        ch = text[i]
        if ch in "\r\n":
            end = i
            i += 2 if text[i : i + 2] == "\r\n" else 1
            lines.append((start, end))
            start = i
        else:
            i += 1
    lines.append((start, len(text)))
    return lines


def ref_units(text: str, encoding: str) -> int:
    """Length in code units of the encoding, by encoding the text."""
    if encoding == "utf-8":
        return len(text.encode("utf-8", "surrogatepass"))
    if encoding == "utf-32":
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def ref_offset(text: str, line: int, character: int, encoding: str = "utf-16") -> int:
    """String offset of an LSP position with the spec's clamping (past the line end → line end)."""
    lines = ref_lines(text)
    if line >= len(lines):
        return len(text)
    start, end = lines[line]
    for i in range(start, end + 1):
        if ref_units(text[start:i], encoding) >= character:
            return i
    return end


def ref_apply(text: str, start: tuple[int, int], end: tuple[int, int], new: str, encoding: str = "utf-16") -> str:
    """The text after one ranged change."""
    a, b = ref_offset(text, start[0], start[1], encoding), ref_offset(text, end[0], end[1], encoding)
    return text[:a] + new + text[b:]


def sha(text: str) -> str:
    """The hash ``suggest/documentState`` reports."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
