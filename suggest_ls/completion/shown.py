"""Typing through a shown suggestion: while what the user types is the start of the suggestion shown
(or prefetched), its rest is the answer, without a model run; and the document once it is accepted."""

from __future__ import annotations

from dataclasses import replace

from suggest_ls.completion.clean import Cleaned
from suggest_ls.completion.request import CompletionRequest, DocState, Shown, Suggestion

TYPE_THROUGH_CHARS = 128


def typed_on(shown: Shown | None, req: CompletionRequest) -> str | None:
    """What was typed since ``shown`` was asked for, while ``req`` is still on it (a start of its text,
    the same text after the cursor); None when it is not."""
    if shown is None or not req.text.startswith(shown.prefix) or req.offset < len(shown.prefix):
        return None
    typed = req.text[len(shown.prefix) : req.offset]
    if len(typed) > TYPE_THROUGH_CHARS or not shown.text.startswith(typed):
        return None
    if req.text[req.offset : req.offset + len(shown.suffix)] != shown.suffix:
        return None
    return typed


def remainder(shown: Shown | None, req: CompletionRequest) -> Suggestion | None:
    """What is left of ``shown`` after the characters typed since it was shown (same text after the cursor)."""
    typed = typed_on(shown, req)
    if shown is None or typed is None or not shown.text[len(typed) :].strip():
        return None
    return Suggestion(shown.text[len(typed) :], shown.replace, cached=True)


def type_through(state: DocState, req: CompletionRequest) -> Suggestion | None:
    """The rest of the shown (or prefetched) suggestion when the user typed its start, without a model run."""
    hit = remainder(state.shown, req)
    if hit is not None:
        return hit
    hit = remainder(state.prefetched, req)
    if hit is not None:
        state.shown, state.prefetched = state.prefetched, None
        return hit
    shown = state.shown
    if state.prefetch_job is not None and (shown is None or not req.text.startswith(shown.prefix)):
        state.prefetch_job.cancel.set()  # the user went elsewhere: the prefetch is of no use
        state.prefetch_job = None
    return None


def accepted(req: CompletionRequest, shown: Cleaned) -> CompletionRequest:
    """The request after ``shown`` is accepted where ``req`` asked (and Enter, when it completes its
    line): where the next suggestion is prefetched."""
    after = req.text[req.offset + shown.replace :]
    insert = shown.text
    if not after.split("\n", 1)[0].strip():  # it completes its line: the next key is Enter
        insert += "\n" + _next_indent(req.text[: req.offset] + shown.text)
    text = req.text[: req.offset] + insert + after
    return replace(req, text=text, offset=req.offset + len(insert), manual=False)


def _next_indent(before: str) -> str:
    """The indentation an editor gives the line after ``before`` (one step deeper after a block opener)."""
    line = before[before.rfind("\n") + 1 :]
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    if line.rstrip().endswith((":", "{", "(", "[")):
        indent += "\t" if indent.startswith("\t") else "    "
    return indent
