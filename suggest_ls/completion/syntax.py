"""Whether a suggestion keeps the code around it well-formed (Python: the enclosing definition must parse).

Only the innermost ``def`` or ``class`` around the cursor is parsed (dedented), so the check stays
cheap in long files. A suggestion breaks the code only when a neutral filler (``pass`` or
``if True:``) at the same place keeps it parseable: code the user left broken elsewhere
proves nothing.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass

LANGUAGES = frozenset({"python", "py", "python3"})
MAX_REGION_LINES = 200
MAX_REGION_CHARS = 8_000
BREAKS = "breaks the code around it"
_DEF = re.compile(r"(async\s+def|def|class)\b")
_NOT_AN_END = re.compile(r"[)\]}#]")  # a closer or a comment at a lower indentation ends no block
_CONTINUES = re.compile(r"(else|elif|except|finally)\b|[)\]}#]")  # nor do these at column 0
_FILLS = ("pass", "if True:")


@dataclass(frozen=True)
class Region:
    """The definition around the cursor: ``text[start:end]``, its lines indented by ``indent`` or more."""

    start: int
    end: int
    indent: int


def checks(language: str, path: str = "") -> bool:
    """Whether suggestions for this file are checked (Python files)."""
    return language.lower() in LANGUAGES or path.endswith((".py", ".pyi"))


def _parses(source: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences and the like are not our business
            ast.parse(source)
        return True
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False


def _width(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def region(text: str, offset: int, line_indent: int) -> Region | None:
    """The innermost ``def``/``class`` (with its decorators) whose body holds the cursor's line
    (indented ``line_indent``), up to the next line indented no deeper than it; outside any
    definition, the top-level statement around the line. None when longer than ``MAX_REGION_LINES``
    lines either way."""
    line_start = text.rfind("\n", 0, offset) + 1
    floor = line_indent  # a definition must be indented less than every line between it and the cursor
    start, indent, is_def = -1, 0, False
    pos = line_start
    for _ in range(MAX_REGION_LINES):
        if pos == 0:
            start = 0
            break
        prev = text.rfind("\n", 0, pos - 1) + 1
        line = text[prev : pos - 1]
        pos = prev
        width = _width(line)
        if not line.strip() or line.startswith("#", width):
            continue
        if width < floor and _DEF.match(line, width):
            start, indent, is_def = prev, width, True
            while start > 0:  # decorators above belong to the definition
                up = text.rfind("\n", 0, start - 1) + 1
                if _width(text[up : start - 1]) != indent or not text.startswith("@", up + indent):
                    break
                start = up
            break
        floor = min(floor, width)
        if width == 0 and not _CONTINUES.match(line):  # top-level code: its statement starts here
            start = prev
            break
    if start < 0:
        return None
    end = -1
    nl = text.find("\n", offset)
    pos = len(text) if nl < 0 else nl + 1
    for _ in range(MAX_REGION_LINES):
        if pos >= len(text):
            end = len(text)
            break
        nxt = text.find("\n", pos)
        nxt = len(text) if nxt < 0 else nxt
        line = text[pos:nxt]
        width = _width(line)
        if line.strip() and width <= indent and not (_CONTINUES if not is_def else _NOT_AN_END).match(line, width):
            end = pos
            break
        pos = nxt + 1
    if end < 0 or end - start > MAX_REGION_CHARS:
        return None
    return Region(start, end, indent)


def _dedent(source: str, indent: int) -> str | None:
    """``source`` with ``indent`` columns taken off every line; None when a code line is indented less."""
    if not indent:
        return source
    out: list[str] = []
    for line in source.split("\n"):
        if line[:indent].strip():
            if not line.strip().startswith("#"):
                return None
            line = ""
        out.append(line[indent:])
    return "\n".join(out)


def _fits(source: str, indent: int) -> bool:
    flat = _dedent(source, indent)
    return flat is not None and _parses(flat)


def breaks(text: str, offset: int, insert: str, replace: int) -> str:
    """Why putting ``insert`` at ``offset`` (over ``replace`` characters) breaks the code, or "".

    Only suggestions that start a line (nothing but indentation before the cursor) are judged: that is
    where a wrong block opener or indentation breaks the code; inside a line, brackets are balanced by
    ``clean`` and a parse per keystroke would cost more than it finds.
    """
    line_start = text.rfind("\n", 0, offset) + 1
    line_prefix = text[line_start:offset]
    if line_prefix.strip():
        return ""
    first = (line_prefix + insert).split("\n", 1)[0]
    area = region(text, offset, _width(first) if first.strip() else len(line_prefix))
    if area is None:
        return ""
    head, tail = text[area.start : offset], text[offset : area.end]
    if _fits(head + insert + tail[replace:], area.indent):
        return ""
    start = len(head) - len(line_prefix)
    lines_after = [ln for ln in tail.split("\n")[1:] if ln.strip()]
    indents = {first[: _width(first)]}
    if lines_after:
        indents.add(lines_after[0][: _width(lines_after[0])])
    fills = [head[:start] + ind + fill for ind in sorted(indents) for fill in _FILLS]
    if any(_fits(f + tail, area.indent) for f in fills):
        return BREAKS
    return ""
