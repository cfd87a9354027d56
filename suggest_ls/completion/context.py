"""The text around the cursor: when to complete, which window to send, one line or a block."""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

CLOSERS = frozenset(")]}>\"'`;:,. \t")
_WORD = re.compile(r"[\w$]")
_BLOCK_OPENER = re.compile(r"(:|\{|\(|\[|=>|\bdo|\bthen|\bbegin)\s*(#.*|//.*)?$")
CHARS_PER_TOKEN = 3.2


@dataclass(frozen=True)
class Cursor:
    """Text before and after the cursor (inside the prompt window) and what the file is."""

    prefix: str
    suffix: str
    language: str = ""
    path: str = ""

    @property
    def line_prefix(self) -> str:
        """The current line up to the cursor."""
        return self.prefix[self.prefix.rfind("\n") + 1 :]

    @property
    def line_suffix(self) -> str:
        """The current line after the cursor."""
        end = self.suffix.find("\n")
        line = self.suffix if end < 0 else self.suffix[:end]
        return line.rstrip("\r")

    @property
    def indent(self) -> str:
        """Leading whitespace of the current line."""
        line = self.line_prefix
        return line[: len(line) - len(line.lstrip())]


def cursor_from_snippet(snippet: str, language: str = "python") -> Cursor:
    """Build a cursor from text with ``$0`` marking the cursor (for tests and the CLI)."""
    prefix, _, suffix = snippet.partition("$0")
    return Cursor(prefix, suffix, language)


def should_complete(cursor: Cursor) -> str | None:
    """Return why not to complete here, or None to go on."""
    line_prefix, line_suffix = cursor.line_prefix, cursor.line_suffix
    if line_suffix and _WORD.match(line_suffix[0]) and line_prefix and _WORD.match(line_prefix[-1]):
        return "inside a word"
    if any(ch not in CLOSERS for ch in line_suffix):
        return "text after the cursor on this line"
    return None


def window(text: str, offset: int, prompt_tokens: int, suffix_share: float) -> tuple[str, str]:
    """Cut the prefix and suffix windows around ``offset`` within the token budget.

    The prefix starts at a line start that moves only in steps of half the prefix budget,
    so typing changes the tail of the prompt and the head stays cached.
    """
    if prompt_tokens <= 0:  # the automatic setting (-1) is resolved by the completer from the measured speed
        raise ValueError(f"window of {prompt_tokens} tokens")
    budget = int(prompt_tokens * CHARS_PER_TOKEN)
    suffix_chars = int(budget * suffix_share)
    prefix_chars = max(1, budget - suffix_chars)
    start = 0
    if offset > prefix_chars:
        step = max(1, prefix_chars // 2)
        start = -(-(offset - prefix_chars) // step) * step
        nl = text.find("\n", start, offset)
        start = nl + 1 if nl >= 0 else start
    end = min(len(text), offset + suffix_chars)
    if end < len(text):
        nl = text.rfind("\n", offset, end)
        end = nl + 1 if nl >= 0 else end
    return text[start:offset], text[offset:end]


def wants_block(cursor: Cursor, mode: str = "auto") -> bool:
    """Decide between a one-line and a multi-line suggestion."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    if cursor.line_prefix.strip() or cursor.line_suffix.strip():
        return False
    lines = cursor.prefix.split("\n")[:-1]
    previous = next((ln for ln in reversed(lines) if ln.strip()), "")
    if not _BLOCK_OPENER.search(previous.rstrip()):
        return False
    next_line = next((ln for ln in cursor.suffix.split("\n")[1:] if ln.strip()), "")
    previous_indent = len(previous) - len(previous.lstrip())
    next_indent = len(next_line) - len(next_line.lstrip())
    return not next_line or next_indent <= previous_indent


@dataclass(frozen=True)
class Chunk:
    """A piece of another file, or of a place edited earlier, offered to the model as extra context."""

    path: str
    text: str
    start_line: int = 0
    at: float = field(default=0.0, compare=False)


def _lines_around(text: str, offset: int, lines: int) -> tuple[int, str]:
    """About ``lines`` whole lines centred on ``offset`` and the number of the first one."""
    offset = max(0, min(offset, len(text)))
    start = text.rfind("\n", 0, offset) + 1
    for _ in range(lines // 2):
        if start == 0:
            break
        start = text.rfind("\n", 0, start - 1) + 1
    end = offset
    for _ in range(lines - lines // 2):
        found = text.find("\n", end)
        if found < 0:
            end = len(text)
            break
        end = found + 1
    return text.count("\n", 0, start), text[start:end]


def _code_lines(text: str) -> set[str]:
    """The distinct non-trivial lines of a text, stripped (for near-copy checks)."""
    return {ln.strip() for ln in text.split("\n") if len(ln.strip()) > 3}


def near_copy(chunk: str, window: str, threshold: float = 0.5) -> bool:
    """Whether most of the chunk's lines are already in the prompt window."""
    lines = _code_lines(chunk)
    if not lines:
        return True
    return len(lines & _code_lines(window)) / len(lines) >= threshold


class ChunkRing:
    """Recently edited places across documents: a small ring of chunks, de-duplicated, oldest out."""

    def __init__(self, size: int = 16, lines: int = 24) -> None:
        self.size = size
        self.lines = lines
        self._chunks: deque[Chunk] = deque()

    def __len__(self) -> int:
        return len(self._chunks)

    def chunks(self) -> list[Chunk]:
        """The chunks, newest first."""
        return list(reversed(self._chunks))

    def add(self, path: str, text: str, offset: int) -> None:
        """Remember the lines around ``offset`` (where the user is editing ``path``)."""
        first, body = _lines_around(text, offset, self.lines)
        if not body.strip():
            return
        fresh = Chunk(path, body, first, time.monotonic())
        keep = deque(
            c
            for c in self._chunks
            if not (c.path == path and abs(c.start_line - first) < self.lines) and not near_copy(c.text, body, 0.8)
        )
        keep.append(fresh)
        while len(keep) > self.size:
            keep.popleft()
        self._chunks = keep

    def forget(self, path: str) -> None:
        """Drop the chunks of a document (it was closed)."""
        self._chunks = deque(c for c in self._chunks if c.path != path)


def pick_extra(
    candidates: Iterable[Chunk], window_text: str, budget_chars: int, max_chunks: int = 4
) -> tuple[Chunk, ...]:
    """Chunks to put before the code: newest first, no near-copies of the window or of each other."""
    picked: list[Chunk] = []
    used = 0
    seen = window_text
    for chunk in candidates:
        if len(picked) >= max_chunks:
            break
        text = chunk.text if len(chunk.text) <= budget_chars - used else ""
        if not text.strip() or near_copy(text, seen):
            continue
        picked.append(chunk)
        used += len(text)
        seen += "\n" + text
    # oldest first, so the newest chunk sits closest to the code
    return tuple(reversed(picked))
