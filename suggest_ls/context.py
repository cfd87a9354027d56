"""The text around the cursor: when to complete, which window to send, one line or a block."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
