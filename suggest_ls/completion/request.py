"""The data of the request path: a completion request, its answer, and what each document keeps
between requests (the suggestion shown, the generations still running). Plain data, no logic."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from suggest_ls.backends.contract import GenRequest, GenResult, Handle, StopRule
from suggest_ls.completion.context import Chunk, Cursor
from suggest_ls.completion.stats import Record


@dataclass(frozen=True)
class CompletionRequest:
    """A request for a suggestion at ``offset`` in ``text``."""

    uri: str
    version: int
    text: str
    offset: int
    language: str = ""
    manual: bool = False


@dataclass(frozen=True)
class Suggestion:
    """What to show (``text`` replacing ``replace`` characters after the cursor), or why not."""

    text: str = ""
    replace: int = 0
    reason: str = ""
    cached: bool = False
    record: Record | None = None
    prompt: str = ""  # what the model saw (for --explain)
    raw: str = ""  # what the model wrote, before cleaning


@dataclass
class Shown:
    """A suggestion shown (or prefetched) where the text before the cursor was ``prefix``."""

    prefix: str
    suffix: str
    text: str
    replace: int


@dataclass
class Running:
    """A generation in flight: where it was asked for and how to clean its text."""

    prefix: str
    suffix: str
    future: asyncio.Future[GenResult]
    job: Handle
    cursor: Cursor
    rule: StopRule
    adopted: bool = False  # a newer request waits for it instead of cancelling it
    continued: bool = False  # answered early with its first words (``lineBudgetMs``); its line goes on
    early: Shown | None = None  # those first words, while they are the document's shown suggestion
    gen: GenRequest | None = None  # what was asked of the engine
    generation: int = 0  # the request generation it was asked for
    adopter: int = 0  # the request generation that adopted it last


@dataclass
class DocState:
    """What the request path keeps for one open document."""

    generation: int = 0
    last_request: float = 0.0
    interval_ms: float = 150.0
    job: Handle | None = None
    superseded: asyncio.Future[None] | None = None  # resolved when a newer request arrives
    shown: Shown | None = None
    running: list[Running] = field(default_factory=list)
    prefetched: Shown | None = None
    prefetch_job: Handle | None = None
    extra: tuple[Chunk, ...] = ()
    extra_key: str = ""
    extra_at: float = 0.0
    latest: CompletionRequest | None = None  # the document's latest request
    # first words whose whole line was not kept: a request on them is answered empty at once
    withdrawn: Shown | None = None
    withdrawn_reason: str = ""
    warm_job: Handle | None = None  # evaluating the prompt at the cursor before it is asked for
