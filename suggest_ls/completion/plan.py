"""What to ask the model for at a cursor: the one plan (a line or a block, the stop rule, the prompt
with its extra context, the generation request) that a request, its prefetch and a warm job share."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from suggest_ls.backends.contract import IDLE, GenRequest, StopRule
from suggest_ls.completion import syntax
from suggest_ls.completion.clean import language_stops
from suggest_ls.completion.context import CHARS_PER_TOKEN, Chunk, ChunkRing, Cursor, pick_extra, wants_block
from suggest_ls.completion.prompt import Template, build_prompt
from suggest_ls.completion.request import DocState
from suggest_ls.settings import Settings

EXTRA_REFRESH_S = 120.0  # extra context is chosen again at most this often when the window moves

# A live request (while typing, or ``manual``), the suggestion after the shown one, the prompt alone.
Purpose = Literal["request", "prefetch", "warm"]


@dataclass(frozen=True)
class Plan:
    """One generation to run at a cursor, and how its text is judged."""

    cursor: Cursor
    block: bool  # a block of lines, not the rest of one line
    rule: StopRule
    checking: bool  # suggestions are syntax-checked here (``syntaxCheck``, a language with a checker)
    gen: GenRequest


def plan(
    cursor: Cursor,
    settings: Settings,
    template: Template,
    extra: tuple[Chunk, ...] = (),
    purpose: Purpose = "request",
    manual: bool = False,
) -> Plan:
    """The plan at ``cursor`` for ``purpose``: a request may have a generation budget (a block while
    typing) and alternative starts (where suggestions are checked); a prefetch and a warm job (which
    only evaluates the prompt) run at idle priority, below any live request."""
    s = settings
    block = wants_block(cursor, s.multiline)
    rule = StopRule(
        multiline=block,
        base_indent=indent_width(cursor, block),
        line_started=bool(cursor.line_prefix.strip()),
        stop=template.stop + language_stops(cursor.language),
    )
    checking = s.syntax_check and syntax.checks(cursor.language, cursor.path)
    prompt = build_prompt(cursor, template, extra)
    if purpose == "warm":  # the prompt only, at idle priority
        return Plan(
            cursor, block, rule, checking, GenRequest(key=cursor.path, prompt=prompt, max_tokens=0, priority=IDLE)
        )
    live = purpose == "request"  # a prefetch runs at idle priority, without a budget or alternatives
    gen = GenRequest(
        key=cursor.path,
        prompt=prompt,
        max_tokens=s.max_tokens_multiline if block else s.max_tokens,
        temperature=s.temperature,
        rule=rule,
        priority=0 if live else IDLE,
        budget_ms=s.generation_budget_ms if live and block and not manual else 0,
        alternatives=s.alternatives if live and checking and s.alternatives else 0,
    )
    return Plan(cursor, block, rule, checking, gen)


def indent_width(cursor: Cursor, block: bool) -> int:
    """The indentation a suggestion starts from: the line's, or for a block its opener's."""
    if not block:
        return len(cursor.indent)
    lines = cursor.prefix.split("\n")[:-1]
    opener = next((ln for ln in reversed(lines) if ln.strip()), "")
    return len(opener) - len(opener.lstrip(" \t"))


def extra_context(
    state: DocState,
    cursor: Cursor,
    budget_tokens: int,
    template: Template,
    ring: ChunkRing,
    documents: Callable[[], Iterable[tuple[str, str]]] | None,
) -> tuple[Chunk, ...]:
    """Extra context for this document (from the places worked at and the other open ``documents``),
    chosen again only when the window's head has moved and the block is older than ``EXTRA_REFRESH_S``.

    The extra block sits at the head of the prompt, so changing it costs a re-evaluation of the
    whole prompt; it stays frozen while the user types below it, also across visits to other
    documents (rebuilding it on return costs the whole block again, seconds on a CPU).
    """
    budget = int(budget_tokens * CHARS_PER_TOKEN)
    if budget <= 0 or not template.extra:
        return ()
    key = cursor.prefix[:256]
    now = time.monotonic()
    if state.extra_key and (key == state.extra_key or now - state.extra_at < EXTRA_REFRESH_S):
        # A moved window keeps the block too (for a while): the engine then moves the cached
        # code down instead of evaluating the whole prompt again.
        return state.extra
    state.extra_at = now
    chunks = ring.chunks()
    seen = {c.path for c in chunks}
    if documents is not None:
        for uri, text in documents():
            if uri != cursor.path and uri not in seen:
                chunks.append(Chunk(uri, "".join(text.splitlines(keepends=True)[: ring.lines])))
    state.extra = pick_extra(chunks, cursor.prefix + cursor.suffix, budget)
    state.extra_key = key
    return state.extra
