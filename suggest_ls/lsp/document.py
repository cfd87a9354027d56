"""Text documents held by the server: incremental edits and UTF-16 positions, with no LSP types."""

from __future__ import annotations

import re

import numpy as np

_NEWLINE = re.compile(r"\r\n|\r|\n")
_VECTOR_SPAN = 1 << 16
CHUNK_CHARS = 1 << 16
CACHE_CHARS = 1 << 20  # below this the joined text is kept up to date on every edit


def line_starts(span: str, base: int = 0) -> np.ndarray:
    """Offsets (plus ``base``) just after each line break (CR, LF or CRLF) in ``span``."""
    if len(span) < _VECTOR_SPAN:
        return np.fromiter((m.end() + base for m in _NEWLINE.finditer(span)), dtype=np.int64)
    if span.isascii():
        codes = np.frombuffer(span.encode("ascii"), dtype=np.uint8)
    else:
        codes = np.frombuffer(span.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    lf = codes == 10
    cr = codes == 13
    cr[:-1] &= ~lf[1:]  # a CR directly before an LF is part of a CRLF: the LF ends that line
    return np.flatnonzero(lf | cr).astype(np.int64) + (base + 1)


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


class Document:
    """One open document: its text in chunks (an edit copies a chunk, not the document), line starts, version."""

    def __init__(
        self,
        uri: str,
        text: str,
        version: int = 0,
        language_id: str = "",
        encoding: str = "utf-16",
        chunk: int = CHUNK_CHARS,
    ) -> None:
        self.uri = uri
        self.version = version
        self.language_id = language_id
        self.encoding = encoding
        self.out_of_sync = ""  # why the text may differ from the client's ('' when in sync)
        self._chunk = max(1, chunk)
        self._set(text)

    def __repr__(self) -> str:
        return f"Document({self.uri!r}, {len(self)} chars, v{self.version})"

    def __len__(self) -> int:
        return self._length

    def _set(self, text: str) -> None:
        n = self._chunk
        self._chunks = [text[i : i + n] for i in range(0, len(text), n)] or [""]
        self._length = len(text)
        self._cache: str | None = text if len(text) < CACHE_CHARS else None
        self._bounds()
        self._starts = np.concatenate(([0], line_starts(text))).astype(np.int64)

    def _bounds(self) -> None:
        sizes = np.fromiter((len(c) for c in self._chunks), dtype=np.int64, count=len(self._chunks))
        self._offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)

    @property
    def text(self) -> str:
        """The whole text (joined once after edits, then cached)."""
        if self._cache is None:
            self._cache = "".join(self._chunks)
        return self._cache

    def slice(self, lo: int, hi: int) -> str:
        """``text[lo:hi]`` without joining the whole document."""
        lo, hi = max(0, lo), min(hi, self._length)
        if self._cache is not None or hi <= lo:
            return self.text[lo:hi]
        first = int(np.searchsorted(self._offsets, lo, side="right")) - 1
        last = int(np.searchsorted(self._offsets, hi - 1, side="right")) - 1
        base = int(self._offsets[first])
        joined = "".join(self._chunks[first : last + 1])
        return joined[lo - base : hi - base]

    @property
    def line_count(self) -> int:
        """Number of lines (a trailing newline starts an empty last line)."""
        return len(self._starts)

    def line(self, n: int) -> str:
        """Text of line ``n`` without its line ending."""
        start = int(self._starts[n])
        last = n + 1 >= len(self._starts)
        end = self._length if last else int(self._starts[n + 1])
        text = self.slice(start, end)
        return text if last else text.rstrip("\r\n")

    def offset(self, line: int, character: int, *, strict: bool = False) -> int:
        """String offset of an LSP position; past-the-end positions clamp unless ``strict``."""
        if line < 0 or character < 0:
            raise PositionError(f"negative position {line}:{character}")
        if line >= self.line_count:
            if strict:
                raise PositionError(f"line {line} past end ({self.line_count} lines)")
            return self._length
        text = self.line(line)
        if strict and character > units_len(text, self.encoding):
            raise PositionError(f"character {character} past end of line {line}")
        return int(self._starts[line]) + units_to_index(text, character, self.encoding)

    def position(self, offset: int) -> tuple[int, int]:
        """LSP position (line, character in code units) of a string offset."""
        offset = max(0, min(offset, self._length))
        line = int(np.searchsorted(self._starts, offset, side="right")) - 1
        return line, units_len(self.slice(int(self._starts[line]), offset), self.encoding)

    def apply(self, start: tuple[int, int] | None, end: tuple[int, int] | None, new_text: str) -> None:
        """Apply one content change; ``start is None`` replaces the whole text (and ends an out-of-sync state)."""
        if start is None or end is None:
            self._set(new_text)
            self.out_of_sync = ""
            return
        self.replace(self.offset(*start), self.offset(*end), new_text)

    def replace(self, a: int, b: int, new_text: str) -> None:
        """Replace the text between string offsets ``a`` and ``b``."""
        if b < a:
            raise PositionError(f"range end {self.position(b)} before start {self.position(a)}")
        self._replace(a, b, new_text)
        self._reindex(a, b, len(new_text) - (b - a))

    def _replace(self, a: int, b: int, new_text: str) -> None:
        """Replace ``[a, b)`` inside the chunks that hold it."""
        offsets = self._offsets
        first = int(np.searchsorted(offsets, a, side="right")) - 1
        last = max(first, int(np.searchsorted(offsets, b, side="right")) - 1)
        if last > first and b == int(offsets[last]):
            last -= 1  # ``b`` is the very start of a chunk: that chunk is untouched
        base = int(offsets[first])
        old = "".join(self._chunks[first : last + 1])
        merged = old[: a - base] + new_text + old[b - base :]
        n = self._chunk
        pieces = [merged[i : i + n] for i in range(0, len(merged), n)] if len(merged) > 2 * n else [merged]
        self._chunks[first : last + 1] = [p for p in pieces if p] or (
            [""] if len(self._chunks) == last - first + 1 else []
        )
        self._length += len(new_text) - (b - a)
        if self._cache is not None and self._length < CACHE_CHARS:
            self._cache = self._cache[:a] + new_text + self._cache[b:]
        else:
            self._cache = None
        self._bounds()

    def _reindex(self, a: int, b: int, delta: int) -> None:
        """Update the line starts after ``[a, b)`` was replaced: rescan the touched lines, shift the rest."""
        starts = self._starts
        first = max(0, int(np.searchsorted(starts, a, side="right")) - 2)  # a CR before ``a`` may now meet an LF
        after = int(np.searchsorted(starts, b + 1, side="right"))  # the first line start safely past the edit
        lo = int(starts[first])
        hi = int(starts[after]) + delta if after < len(starts) else self._length
        tail = starts[after + 1 :] + delta if delta else starts[after + 1 :]
        self._starts = np.concatenate((starts[: first + 1], line_starts(self.slice(lo, hi), lo), tail))
