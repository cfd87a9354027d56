"""Plain conversions at the LSP boundary: JSON params to plain values and typed results to JSON,
without the typed converter, plus the small readers the handlers share."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types

# One edit of a didChange: a range (start line, character, end line, character), or None for the
# whole text, and the new text.
Change = tuple[tuple[int, int, int, int] | None, str]


def plain_position(p: types.Position) -> dict[str, int]:
    """A position as the JSON the typed converter writes."""
    return {"line": p.line, "character": p.character}


def plain_inline_result(result: Any) -> dict[str, Any] | None:
    """An InlineCompletionList of plain-text items as the JSON the typed converter writes; None for
    any other result (the converter handles it)."""
    if type(result) is not types.InlineCompletionList:
        return None
    items: list[dict[str, Any]] = []
    for item in result.items:
        if type(item.insert_text) is not str or item.filter_text is not None:
            return None
        out: dict[str, Any] = {"insertText": item.insert_text}
        if item.range is not None:
            out["range"] = {"start": plain_position(item.range.start), "end": plain_position(item.range.end)}
        if item.command is not None:
            c = item.command
            out["command"] = {"title": c.title, "command": c.command}
            if c.tooltip is not None:
                out["command"]["tooltip"] = c.tooltip
            if c.arguments is not None:
                out["command"]["arguments"] = list(c.arguments)
        items.append(out)
    return {"items": items}


def plain_change(params: Any) -> tuple[str, int, list[Change]] | None:
    """didChange params as plain values when they are exactly well-formed; None leaves the message to
    the typed path, which reports what is wrong with it."""
    if type(params) is not dict:
        return None
    doc, changes = params.get("textDocument"), params.get("contentChanges")
    if type(doc) is not dict or type(changes) is not list:
        return None
    uri, version = doc.get("uri"), doc.get("version")
    if type(uri) is not str or type(version) is not int:
        return None
    out: list[Change] = []
    for change in changes:
        if type(change) is not dict or type(text := change.get("text")) is not str:
            return None
        if "range" not in change:
            out.append((None, text))
            continue
        r = change["range"]
        start, end = (r.get("start"), r.get("end")) if type(r) is dict else (None, None)
        if type(start) is not dict or type(end) is not dict:
            return None
        where = (start.get("line"), start.get("character"), end.get("line"), end.get("character"))
        if any(type(n) is not int or n < 0 or n > 0x7FFFFFFF for n in where):
            return None
        out.append((where, text))  # type: ignore[arg-type]
    return uri, version, out


def param_field(params: Any, name: str) -> Any:
    """A field of custom-method params, whether pygls gives a dict or an object."""
    if isinstance(params, dict):
        return params.get(name)
    return getattr(params, name, None)


def uri_path(uri: str) -> str:
    """The path of a ``file:`` URI; any other URI as it is."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def bounded_reason(reason: str) -> str:
    """A reason without its numbers (versions, sizes, positions): outcome counters stay bounded."""
    return re.sub(r"\d+", "N", re.sub(r"\s*\([^()]*\d[^()]*\)$", "", reason))
