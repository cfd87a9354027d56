"""Whether a suggestion keeps the code around it well-formed (Python: the enclosing definition must parse).

A suggestion breaks the code only when some neutral filler (``pass``, ``if True:``, ``0``…) at the
same place keeps it parseable: code the user left broken elsewhere proves nothing.
"""

from __future__ import annotations

import ast
import re
import warnings

LANGUAGES = frozenset({"python", "py", "python3"})
MAX_REGION_LINES = 400
MAX_REGION_CHARS = 24_000
_TOP_DEF = re.compile(r"(async\s+def|def|class)\b|@")
_CONTINUES = re.compile(r"(else|elif|except|finally)\b|[)\]}#]")
_LINE_FILLS = ("pass", "if True:")
_MID_FILLS = ("", "0", "0:", "0)", "0]", "0}")


BREAKS = "breaks the code around it"


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


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def region(text: str, offset: int) -> tuple[int, int] | None:
    """The top-level statement around ``offset``: from the last column-0 ``def``/``class`` (with its
    decorators) before it to the next column-0 statement after it; None when longer than
    ``MAX_REGION_LINES`` lines either way."""
    line_start = text.rfind("\n", 0, offset) + 1
    start = -1
    pos = line_start
    for _ in range(MAX_REGION_LINES):
        if pos == 0:
            start = 0
            break
        prev = text.rfind("\n", 0, pos - 1) + 1
        if _TOP_DEF.match(text, prev):
            start = prev
            while start > 0:  # decorators above belong to the definition
                up = text.rfind("\n", 0, start - 1) + 1
                if not text.startswith("@", up):
                    break
                start = up
            break
        pos = prev
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
        ch = text[pos : pos + 1]
        if ch and not ch.isspace() and not _CONTINUES.match(text, pos):
            end = pos
            break
        pos = nxt + 1
    if end < 0 or end - start > MAX_REGION_CHARS:
        return None
    return start, end


def breaks(text: str, offset: int, insert: str, replace: int) -> str:
    """Why putting ``insert`` at ``offset`` (over ``replace`` characters) breaks the code, or ""."""
    bounds = region(text, offset)
    if bounds is None:
        return ""
    head, tail = text[bounds[0] : offset], text[offset : bounds[1]]
    if _parses(head + insert + tail[replace:]):
        return ""
    line_start = head.rfind("\n") + 1
    line_prefix = head[line_start:]
    if not line_prefix.strip():
        lines_before = [ln for ln in head[:line_start].split("\n") if ln.strip()]
        lines_after = [ln for ln in tail.split("\n")[1:] if ln.strip()]
        indents = {_indent(insert), line_prefix}
        if lines_before:
            indents.add(_indent(lines_before[-1]))
        if lines_after:
            indents.add(_indent(lines_after[0]))
        fills = [head[:line_start] + ind + fill for ind in sorted(indents) for fill in _LINE_FILLS]
    else:
        fills = [head + fill for fill in _MID_FILLS]
    if any(_parses(f + tail) for f in fills):
        return BREAKS
    return ""
