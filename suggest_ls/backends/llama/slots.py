"""Jobs and slots: which slot a job takes, and how much of its prompt that slot's cache already holds.

Each slot is one llama.cpp sequence. A job goes to the slot that holds the longest prefix of its
prompt (its document's own first); only the tokens after that prefix are evaluated, less the runs
of them the slot holds further on, which are moved down into place (cache reuse by shifting).
Everything here but ``Job.cancel`` is the engine thread's.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from suggest_ls.backends.contract import GenRequest, GenResult
from suggest_ls.backends.llama.loading import LoadedModel


@dataclass
class Job:
    """A request inside the engine; ``cancel`` may be set from any thread."""

    req: GenRequest
    done: Callable[[GenResult], None]
    cancel: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.perf_counter)
    admitted: float = 0.0
    first_token: float = 0.0
    tokens: list[int] = field(default_factory=list)
    todo: list[int] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)
    pieces: bytearray = field(default_factory=bytearray)
    cached: int = 0
    shifted: int = 0
    evaluated: int = 0
    budget: int = 0  # tokens it may generate: ``max_tokens``, at most half the slot's context
    first_prob: float = 1.0
    logprob: float = 0.0  # summed over the tokens sampled
    min_prob: float = 1.0
    sampled: int = 0
    next_token: int = -1
    finished: bool = False
    rng: np.random.Generator | None = None
    slot: int = -1
    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    score_start: int = -1  # index in ``tokens`` of the first scored token
    score: float = 0.0
    scored: int = 0
    truncated: bool = False
    capped: bool = False
    alternatives: tuple[tuple[str, float], ...] = ()

    def text(self) -> str:
        """Generated text so far (an incomplete UTF-8 tail is left out)."""
        return self.pieces.decode("utf-8", errors="ignore")

    def result(self, outcome: str, error: str = "") -> GenResult:
        """What the job's ``done`` callback is given when it ends now with ``outcome``."""
        end = time.perf_counter()
        admitted = self.admitted or end
        return GenResult(
            text=self.text() if outcome == "done" else "",
            outcome=outcome,
            error=error,
            prompt_tokens=len(self.tokens),
            cached_tokens=self.cached,
            evaluated_tokens=self.evaluated,
            generated_tokens=len(self.generated),
            queue_ms=(admitted - self.submitted) * 1000,
            ttft_ms=((self.first_token or end) - self.submitted) * 1000,
            total_ms=(end - self.submitted) * 1000,
            first_prob=self.first_prob,
            line_prob=math.exp(self.logprob / self.sampled) if self.sampled else 1.0,
            min_prob=self.min_prob,
            slot=self.slot,
            steps=self.steps,
            drafted_tokens=self.drafted,
            accepted_tokens=self.accepted,
            score=self.score,
            scored_tokens=self.scored,
            shifted_tokens=self.shifted,
            truncated=self.truncated,
            capped=self.capped,
            alternatives=self.alternatives,
        )


@dataclass
class Slot:
    """One llama.cpp sequence and the tokens its KV cache holds."""

    seq: int
    tokens: list[int] = field(default_factory=list)
    key: str = ""
    job: Job | None = None
    last_used: float = 0.0


def is_idle(job: Job | None) -> bool:
    """An idle job runs only while no live job does, and gives its slot up to a live one."""
    return job is not None and job.req.priority < 0


def idle_in_the_way(slots: list[Slot], live: Job) -> list[Slot]:
    """The slots of the idle jobs a live job needs out of the way: its own document's (that slot holds
    its prompt) and, when no slot is free, the oldest idle one."""
    idle = [s for s in slots if is_idle(s.job)]
    taken = [s for s in idle if s.key == live.req.key]
    if not taken and idle and all(s.job is not None for s in slots):
        taken = idle[:1]
    return taken


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def pick_slot(free: list[Slot], key: str, tokens: list[int]) -> Slot:
    """The free slot for a prompt: its document's own, else one holding most of the prompt, else the LRU.

    A slot that shares only the template's head with the prompt is not taken from another
    document: that would throw away the other document's cache to save a few tokens.
    """
    same = [s for s in free if s.key == key]
    if same:
        return max(same, key=lambda s: _common_prefix(s.tokens, tokens))
    best = max(free, key=lambda s: (_common_prefix(s.tokens, tokens), -s.last_used))
    if _common_prefix(best.tokens, tokens) * 2 >= len(tokens) > 0:
        return best
    return min(free, key=lambda s: (s.last_used, len(s.tokens)))


def place(lm: LoadedModel, job: Job, free: list[Slot], reuse_min: int) -> Slot:
    """Put ``job`` in one of the ``free`` slots, keeping what that slot's cache holds of its prompt.

    The prompt is cut to fit the slot's context beside the job's budget; ``job.todo`` is left with
    the tokens still to evaluate. ``reuse_min``: the shortest run reused by shifting (0: none).
    """
    req = job.req
    tokens = lm.tokenize(req.prompt, lm.add_bos)
    scored_tail = -1  # how many of the prompt's last tokens are scored
    if req.score_from >= 0:
        head = lm.tokenize(req.prompt[: req.score_from], lm.add_bos)
        scored_tail = len(tokens) - max(1, _common_prefix(head, tokens))
    # the prompt keeps at least half the slot's context, whatever the request asks to generate
    job.budget = max(0, min(req.max_tokens, lm.n_ctx_slot // 2))
    limit = lm.n_ctx_slot - job.budget - 1
    if len(tokens) > limit:
        head = [lm.bos] if lm.add_bos and tokens and tokens[0] == lm.bos else []
        tokens = head + tokens[len(tokens) - (limit - len(head)) :]
    if not tokens:
        tokens = [lm.bos]
    slot = pick_slot(free, req.key, tokens)
    end = len(tokens) - 1  # at least the last token is evaluated: its logits give the first token
    if scored_tail >= 0:
        job.score_start = max(1, len(tokens) - scored_tail)
        end = min(end, job.score_start - 1)  # the logits that predict the first scored token
    n = min(_common_prefix(slot.tokens, tokens), end)
    if n < len(slot.tokens) and lm.can_shift and reuse_min > 0:
        job.shifted = reuse_shifted(lm, slot, tokens, n, end, reuse_min)
        n = len(slot.tokens)
    if n > 0 and lm.n_swa > 0 and not window_kept(lm, slot.seq, n):
        n = job.shifted = 0
    if n < len(slot.tokens):
        lm.drop(slot.seq, n)
        del slot.tokens[n:]
    job.tokens = tokens
    job.todo = tokens[n:]
    job.cached = n
    job.admitted = time.perf_counter()
    seed = int.from_bytes(hashlib.blake2b(req.prompt.encode(errors="replace"), digest_size=8).digest(), "little")
    seed ^= req.seed
    job.rng = np.random.default_rng(seed)
    job.slot = slot.seq
    slot.job = job
    slot.key = req.key
    slot.last_used = job.admitted
    return slot


def window_kept(lm: LoadedModel, seq: int, n: int) -> bool:
    """Whether the sliding-window layers still hold what a token at position ``n`` attends to.

    Their cache holds the positions from its minimum on (the other layers' cache holds them
    all): llama.cpp reuses the cells of positions that fell out of the window, which after a
    shift can be the head of the prompt. A token at ``n`` attends those after ``n - n_swa``.
    """
    low = lm.L.llama_memory_seq_pos_min(lm.mem, seq)
    return 0 <= low <= max(0, n - lm.n_swa + 1)


def reuse_shifted(lm: LoadedModel, slot: Slot, tokens: list[int], n: int, end: int, reuse_min: int) -> int:
    """Reuse cached runs of the prompt found past the common prefix ``n``; returns the tokens moved.

    As llama.cpp's server does (``--cache-reuse``): walking the cache from ``n``, a run of at
    least ``reuse_min`` tokens equal to the prompt's next tokens is moved down right after what
    is kept so far (the cells between are removed, the run's positions shifted; llama.cpp
    re-rotates its keys before the next decode), and cache tokens that start no such run are
    skipped. Only prompt tokens before ``end`` are taken. What the cache holds after the last
    run is removed: on return the cache and ``slot.tokens`` hold the kept tokens only.
    The moved keys and values were computed after the tokens now removed, so the model sees a
    slightly different context than a fresh evaluation of the prompt would give.
    """
    L, mem, seq = lm.L, lm.mem, slot.seq
    cache = slot.tokens
    least = max(1, reuse_min)
    head_c = head_p = n
    moved = 0
    while head_c + least <= len(cache) and head_p + least <= end:
        if cache[head_c] != tokens[head_p]:
            head_c += 1
            continue
        m = 1
        while head_c + m < len(cache) and head_p + m < end and cache[head_c + m] == tokens[head_p + m]:
            m += 1
        if m < least:
            head_c += 1
            continue
        delta = head_c - head_p
        if not L.llama_memory_seq_rm(mem, seq, head_p, head_c):
            break  # nothing was removed: the cells from ``head_p`` on are removed below
        L.llama_memory_seq_add(mem, seq, head_c, head_c + m, -delta)
        cache[head_p : head_p + m] = cache[head_c : head_c + m]
        moved += m
        head_p += m
        head_c += m
    L.llama_memory_seq_rm(mem, seq, head_p, -1)
    del cache[head_p:]
    return moved
