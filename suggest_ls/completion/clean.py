"""Post-processing: turn raw model text into the suggestion shown, or a reason to show nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass

from suggest_ls.backends.contract import ABSTAIN, GenResult, StopRule
from suggest_ls.completion.context import Cursor

_PAIRS = {")": "(", "]": "[", "}": "{"}
_OPENERS = set(_PAIRS.values())
_BRACKETS = re.compile(r"[()\[\]{}\"'`\n]")
DUPLICATES = "duplicates "  # the start of the reasons for a line that repeats the code after it
CAPPED = "line cut by the token cap"
# Generation stops at these per language (a new top-level definition or a fence ends any suggestion).
_FENCE = ("\n```",)
LANGUAGE_STOPS: dict[str, tuple[str, ...]] = {
    "python": ("\nif __name__", "\n#!"),
    "py": ("\nif __name__", "\n#!"),
    "markdown": (),
}


def language_stops(language: str) -> tuple[str, ...]:
    """Stop strings for a language (LSP id or file extension)."""
    return _FENCE + LANGUAGE_STOPS.get(language.lower(), ())


def _indent_unit(text: str) -> str:
    """The indentation the text uses: a tab, or the smallest step of leading spaces (default 4)."""
    widths: list[int] = []
    for line in text.split("\n")[-200:]:
        lead = line[: len(line) - len(line.lstrip(" \t"))]
        if not line.strip() or not lead:
            continue
        if lead.startswith("\t"):
            return "\t"
        widths.append(len(lead))
    step = min((w for w in widths if w > 0), default=4)
    return " " * (step if step in (2, 3, 4, 8) else 4)


def fix_indentation(text: str, context: str) -> str:
    """Re-indent lines that start with tabs in a spaces file (or spaces in a tabs file)."""
    if not any(line[:1] in (" ", "\t") for line in text.split("\n")):
        return text  # nothing indented (most suggestions inside a line): no need to learn the file's unit
    unit = _indent_unit(context)
    out: list[str] = []
    for line in text.split("\n"):
        body = line.lstrip(" \t")
        lead = line[: len(line) - len(body)]
        if unit == "\t" and "    " in lead:
            lead = lead.replace("    ", "\t")
        elif unit != "\t" and "\t" in lead:
            lead = lead.replace("\t", unit)
        out.append(lead + body)
    return "\n".join(out)


@dataclass(frozen=True)
class Cleaned:
    """The text to insert and how many characters after the cursor it replaces, or a reason."""

    text: str = ""
    replace: int = 0
    reason: str = ""


def _next_code_line(suffix: str) -> str | None:
    """The first non-blank line after the cursor's line."""
    pos = suffix.find("\n")
    while pos >= 0:
        end = suffix.find("\n", pos + 1)
        line = suffix[pos + 1 : end if end >= 0 else len(suffix)]
        if line.strip():
            return line
        pos = end
    return None


def _previous_code_line(prefix: str) -> str | None:
    """The last non-blank line before the cursor's line."""
    end = prefix.rfind("\n")
    while end >= 0:
        start = prefix.rfind("\n", 0, end) + 1
        line = prefix[start:end]
        if line.strip():
            return line
        end = start - 1
    return None


# A piece of at least 4 characters with a letter in it written three times in a row, or one of at
# least 12 written twice where the line ends inside a third copy or right after the second: a model
# looping inside a line ("100 * total / total + 100 * total / total + 100 * total"). Code repeats a
# piece twice and goes on ("buf, ctx->prefix, ctx->prefix_len", "(int) (p - b), (int) (p - b), b"):
# that is not a loop.
_LOOP = re.compile(r"(?=(.{4,}?)\1\1)|(?=(.{12,}?)\2)")


def repeats_itself(line: str) -> bool:
    """Whether a line repeats a piece of itself back to back, as a looping model writes."""
    for m in _LOOP.finditer(line):
        piece = m.group(1) or m.group(2) or ""
        if not any(ch.isalpha() for ch in piece):
            continue
        if m.group(1) or piece.startswith(line[m.start() + 2 * len(piece) :]):
            return True
    return False


def _meaningful(line: str) -> bool:
    """A line worth comparing for repeats: not just closers or a keyword like ``else:``."""
    return len(line) >= 6 and any(ch.isalnum() for ch in line)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _balance(before: str, text: str) -> str:
    """Cut ``text`` at its first closer that matches nothing open in ``before`` + ``text``."""
    stack: list[str] = []
    quote = ""
    for ch in _BRACKETS.findall(before, max(0, len(before) - 2000)):  # only the characters that matter
        if quote:
            quote = "" if ch == quote or ch == "\n" else quote
        elif ch in "\"'`":
            quote = ch
        elif ch in _OPENERS:
            stack.append(ch)
        elif ch in _PAIRS and stack and stack[-1] == _PAIRS[ch]:
            stack.pop()
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote or ch == "\n" else quote
        elif ch in "\"'`":
            quote = ch
        elif ch in _OPENERS:
            stack.append(ch)
        elif ch in _PAIRS:
            if not stack or stack[-1] != _PAIRS[ch]:
                return text[:i]
            stack.pop()
    return text


def clean(raw: str, cursor: Cursor, rule: StopRule) -> Cleaned:
    """Cut, trim and check the raw generation against the text around the cursor."""
    text = raw
    for s in rule.stop:
        text = text.split(s, 1)[0]
    if ABSTAIN in text:
        text = text.split(ABSTAIN, 1)[0]
        if not text.strip():
            return Cleaned(reason="abstained (NEXT_TOKEN)")
    text = text.replace("\r\n", "\n")
    line_prefix = cursor.line_prefix
    at_indent = line_prefix.strip() == ""
    if at_indent:
        text = text.lstrip("\n")
        if line_prefix:
            first, sep, rest = text.partition("\n")
            text = first.lstrip(" \t") + sep + rest
    elif text.startswith("\n"):
        return Cleaned(reason="model ended the line")
    if line_prefix.endswith((" ", "\t")):
        text = text.lstrip(" \t") if "\n" not in text[:1] else text
    if rule.multiline:
        kept: list[str] = []
        for i, line in enumerate(text.split("\n")):
            if i and line.strip() and _indent(line) <= rule.base_indent:
                break
            if i >= rule.max_lines:
                break
            if kept and line.strip() and line.strip() == kept[-1].strip():
                break
            kept.append(line)
        text = "\n".join(kept).rstrip()
        following = _next_code_line(cursor.suffix)
        if following is not None:
            lines = text.split("\n")
            for i, line in enumerate(lines):
                if i and line.strip() == following.strip():
                    text = "\n".join(lines[:i]).rstrip()
                    break
    else:
        text = text.split("\n", 1)[0].rstrip()
    text = _balance(cursor.prefix, text).rstrip() if not rule.multiline else text
    if not text.strip():
        return Cleaned(reason="empty after cleaning")
    text = fix_indentation(text, cursor.prefix + cursor.suffix)
    line_suffix = cursor.line_suffix
    replace = 0
    tail = line_suffix.rstrip()
    if tail and text.strip() == tail.strip():
        return Cleaned(reason="duplicates the text after the cursor")
    if tail and text.endswith(tail):
        replace = len(line_suffix)
    elif tail and tail.startswith(text.strip()):
        return Cleaned(reason="duplicates the text after the cursor")
    next_line = _next_code_line(cursor.suffix)
    if next_line is not None and at_indent and text.strip() == next_line.strip():
        return Cleaned(reason="duplicates the next line")
    if any(repeats_itself(line) for line in text.split("\n")):
        return Cleaned(reason="repeats itself")
    previous = _previous_code_line(cursor.prefix)
    first = text.split("\n", 1)[0].strip()
    if previous is not None and at_indent and first == previous.strip() and _meaningful(first):
        return Cleaned(reason="repeats the line above")
    return Cleaned(text=text, replace=replace)


def clean_result(result: GenResult, block: bool, cursor: Cursor, rule: StopRule) -> Cleaned:
    """``clean`` of a generation's whole lines; a single line cut by the token cap is never shown."""
    if not block and result.capped and "\n" not in result.text.lstrip("\n"):
        return Cleaned(reason=CAPPED)
    return clean(whole_lines(result, block), cursor, rule)


def whole_lines(result: GenResult, block: bool) -> str:
    """The generated text, without the unfinished last line of a block stopped by its budget or
    its token cap (a single line cut by the cap is no line: see ``CAPPED``)."""
    text = result.text
    if not block:
        return text
    if not (result.truncated or result.capped) or text.endswith("\n"):
        return text
    cut = text.rfind("\n")
    return text[: cut + 1] if cut > 0 and text[:cut].strip() else text
