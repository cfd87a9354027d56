"""Text documents held by the server: incremental edits and UTF-16 positions, with no LSP types."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

_NEWLINE = re.compile(r"\r\n|\r|\n")


def _unit(ch: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(ch.encode("utf-8", errors="surrogatepass"))
    if encoding == "utf-32":
        return 1
    return 2 if ord(ch) > 0xFFFF else 1


def units_len(text: str, encoding: str = "utf-16") -> int:
    """Length of ``text`` in code units of the negotiated position encoding."""
    if text.isascii() or encoding == "utf-32":
        return len(text)
    return sum(_unit(ch, encoding) for ch in text)


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units."""
    return units_len(text, "utf-16")


def units_to_index(line: str, units: int, encoding: str = "utf-16") -> int:
    """Index into ``line`` of the offset ``units`` (in the encoding's code units), clamped to the line."""
    if units <= 0:
        return 0
    if line.isascii() or encoding == "utf-32":
        return min(units, len(line))
    count = 0
    for i, ch in enumerate(line):
        if count >= units:
            return i
        count += _unit(ch, encoding)
    return len(line)


class PositionError(ValueError):
    """A position that cannot be in the document."""


@dataclass
class Document:
    """One open document: its text, version and a cache of line starts."""

    uri: str
    text: str
    version: int = 0
    language_id: str = ""
    encoding: str = "utf-16"
    _starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._index()

    def _index(self) -> None:
        self._starts = [0] + [m.end() for m in _NEWLINE.finditer(self.text)]

    @property
    def line_count(self) -> int:
        """Number of lines (a trailing newline starts an empty last line)."""
        return len(self._starts)

    def line(self, n: int) -> str:
        """Text of line ``n`` without its line ending."""
        start = self._starts[n]
        end = self._starts[n + 1] if n + 1 < len(self._starts) else len(self.text)
        text = self.text[start:end]
        return text.rstrip("\r\n") if n + 1 < len(self._starts) else text

    def offset(self, line: int, character: int, *, strict: bool = False) -> int:
        """String offset of an LSP position; past-the-end positions clamp unless ``strict``."""
        if line < 0 or character < 0:
            raise PositionError(f"negative position {line}:{character}")
        if line >= self.line_count:
            if strict:
                raise PositionError(f"line {line} past end ({self.line_count} lines)")
            return len(self.text)
        text = self.line(line)
        if strict and character > units_len(text, self.encoding):
            raise PositionError(f"character {character} past end of line {line}")
        return self._starts[line] + units_to_index(text, character, self.encoding)

    def position(self, offset: int) -> tuple[int, int]:
        """LSP position (line, character in code units) of a string offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._starts, offset) - 1
        return line, units_len(self.text[self._starts[line] : offset], self.encoding)

    def apply(self, start: tuple[int, int] | None, end: tuple[int, int] | None, new_text: str) -> None:
        """Apply one content change; ``start is None`` replaces the whole text."""
        if start is None or end is None:
            self.text = new_text
        else:
            a = self.offset(*start)
            b = self.offset(*end)
            if b < a:
                raise PositionError(f"range end {end} before start {start}")
            self.text = self.text[:a] + new_text + self.text[b:]
        self._index()
