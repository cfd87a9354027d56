"""The contract between the completion layer and every backend (in-process llama.cpp, remote, switchable).

Plain frozen data only: a ``GenRequest`` goes in, a ``GenResult`` comes back through the ``done``
callback, on whatever thread the backend finishes on. ``StopRule`` and ``should_stop`` say when a
backend may stop generating early; ``ModelInfo`` is what a model says about itself for prompting.
``Backend`` is what every backend offers (``BackendDefaults`` gives its optional part) and
``Handle`` what a submitted job does, so callers never probe for a capability.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

ABSTAIN = "NEXT_TOKEN"  # what the rules prompt tells a model to write when it is unsure
IDLE = -1  # the priority of warming jobs (see ``GenRequest.priority``)


@dataclass(frozen=True)
class ModelInfo:
    """What the GGUF says about itself, as far as prompting cares."""

    name: str = ""
    architecture: str = ""
    fim_prefix: str = ""
    fim_suffix: str = ""
    fim_middle: str = ""
    eos: str = ""


@dataclass(frozen=True)
class StopRule:
    """When generation may stop early: after one line, or when a block ends."""

    multiline: bool = False
    max_lines: int = 12
    base_indent: int = 0
    line_started: bool = True
    stop: tuple[str, ...] = ()


def should_stop(text: str, rule: StopRule) -> bool:
    """Whether the generated ``text`` already holds everything ``clean`` could keep."""
    for s in rule.stop:
        if s in text:
            return True
    if ABSTAIN in text:
        return True
    if not rule.multiline:
        return "\n" in (text if rule.line_started else text.lstrip(" \t\r\n"))
    lines = text.split("\n")
    if len(lines) > rule.max_lines + 1:
        return True
    done = [ln for ln in lines[1:] if ln.strip()]
    return any(_indent(ln) <= rule.base_indent for ln in done)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


@dataclass(frozen=True)
class GenRequest:
    """One generation: prompt text, budget and stop rule; ``key`` gives slot affinity."""

    key: str
    prompt: str
    max_tokens: int = 48
    temperature: float = 0.0
    rule: StopRule = StopRule()
    priority: int = 0  # below 0: idle (see ``is_idle``)
    # Quality levers (optional): a seed mixed into sampling, so samples of one prompt differ; and
    # ``score_from``, a character offset in the prompt: the log-probability of the prompt's tokens
    # after it is returned as ``score`` (with ``max_tokens=0``, scoring only: nothing is generated).
    seed: int = 0
    score_from: int = -1
    # Generation budget: stop once this many ms have passed since the first token and a first line
    # is complete (0: none); the text so far comes back as done, with ``truncated`` set.
    budget_ms: float = 0.0
    # Other ways to start: the ``alternatives`` likeliest tokens (besides the one taken) at the first
    # step that writes more than whitespace, returned as text to continue the prompt with.
    alternatives: int = 0


@dataclass(frozen=True)
class GenResult:
    """Text generated for one request with its timings and token counts."""

    text: str
    outcome: str  # done | cancelled | error
    error: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    evaluated_tokens: int = 0
    generated_tokens: int = 0
    queue_ms: float = 0.0
    ttft_ms: float = 0.0
    total_ms: float = 0.0
    first_prob: float = 1.0
    # the geometric mean and the least of the probabilities of the tokens sampled (the last included)
    line_prob: float = 1.0
    min_prob: float = 1.0
    slot: int = -1
    steps: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    score: float = 0.0
    scored_tokens: int = 0
    shifted_tokens: int = 0  # of ``cached_tokens``, those reused from further on in the cache
    truncated: bool = False  # stopped by the request's generation budget
    capped: bool = False  # stopped by ``max_tokens``, not by a stop rule or the end of text: its last line is cut
    # (text so far + another token, its probability), likeliest first; see ``GenRequest.alternatives``
    alternatives: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class LoadInfo:
    """What was loaded and where it runs."""

    model: ModelInfo
    path: str
    size_bytes: int
    n_layers: int
    gpu_layers: int
    device: str
    offload_reason: str
    load_ms: float
    n_ctx: int
    parallel: int
    threads: int
    quantization: str
    # prompt tokens evaluated per second, measured at load (a 64-token prompt chunk); 0: not measured
    prefill_tps: float = 0.0


class Handle(Protocol):
    """A submitted job: setting ``cancel`` stops it at the next decode step (a remote job's connection
    closes at once); while it runs, ``text()`` is what it generated so far and ``min_prob`` the least
    probability of its tokens so far (1.0 before any, or when the backend cannot tell)."""

    @property
    def cancel(self) -> threading.Event: ...

    @property
    def min_prob(self) -> float: ...

    def text(self) -> str: ...


class Backend(Protocol):
    """What the completer and the model swap need from any backend.

    ``submit``, ``expect`` and ``close`` are each backend's own; ``BackendDefaults`` gives the rest
    to backends that lack them. ``stats``: counters for the status (``threads``: the decode threads
    now, where a backend has any).
    """

    @property
    def stats(self) -> Mapping[str, Any]: ...

    def submit(self, req: GenRequest, done: Callable[[GenResult], None]) -> Handle:
        """Queue a request; ``done`` is called exactly once, from whatever thread finishes it."""

    def expect(self, delta: int) -> None:
        """Requests about to arrive (waiting out their debounce): ``delta`` more, or fewer when negative."""

    def close(self, timeout: float = 2.0) -> None:
        """Answer every job still queued and free what the backend holds."""

    def tokens_per_second(self, window_s: float = 10.0) -> float:
        """Generation speed over the last ``window_s`` seconds (0.0: unknown)."""

    def scores(self) -> bool:
        """Whether it can score a prompt's tail (``GenRequest.score_from``, for reranking)."""

    def cap_threads(self, threads: int) -> None:
        """At most ``threads`` decode threads per step from now on (0 lifts the cap)."""

    def adopt_thread_choice(self, other: Backend) -> None:
        """Start from ``other``'s verdict on how many threads decode fastest (both run on the same cores)."""

    def view(self) -> dict[str, Any] | None:
        """What ``suggest/status`` shows of it beyond ``LoadInfo`` (None: nothing)."""


class BackendDefaults:
    """The optional part of ``Backend`` for a backend that lacks it: no figures, no threads of its own,
    nothing to show or free; it can score prompts (as an in-process model always can)."""

    stats: Mapping[str, Any] = MappingProxyType({})

    def close(self, timeout: float = 2.0) -> None:
        """Nothing to free."""

    def tokens_per_second(self, window_s: float = 10.0) -> float:
        """Unknown."""
        return 0.0

    def scores(self) -> bool:
        """Prompts can be scored."""
        return True

    def cap_threads(self, threads: int) -> None:
        """No threads to cap."""

    def adopt_thread_choice(self, other: Backend) -> None:
        """No threads to choose."""

    def view(self) -> dict[str, Any] | None:
        """Nothing beyond ``LoadInfo``."""
        return None
