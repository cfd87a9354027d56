"""Drafting from the job's own text: tokens that followed the last earlier occurrence of its latest n-gram.

With ``draft_tokens`` > 0 a job generating alone feeds these after its next token in the same
decode step and keeps those the model agrees with (code repeats itself: names, argument lists).
"""

from __future__ import annotations

from suggest_ls.backends.llama.loading import EngineConfig
from suggest_ls.backends.llama.slots import Job


def find_draft(context: list[int], n: int, k: int, window: int = 4096) -> list[int]:
    """Up to ``k`` tokens that followed the latest earlier occurrence of the last ``n`` tokens."""
    if k <= 0 or n <= 0 or len(context) <= n:
        return []
    tail = context[-n:]
    first = tail[0]
    stop = max(-1, len(context) - n - 1 - window)
    for i in range(len(context) - n - 1, stop, -1):
        if context[i] == first and context[i : i + n] == tail:
            return context[i + n : i + n + k]
    return []


def drafts_for(cfg: EngineConfig, job: Job, room: int) -> list[int]:
    """Tokens to verify after the job's next token (at most ``room``), looked up in its own prompt and output."""
    k = min(cfg.draft_tokens, room, job.budget - len(job.generated) - 1)
    if k <= 0:
        return []
    if job.drafted >= 4 * cfg.draft_tokens and job.accepted * 2 < job.drafted:
        return []  # this job's drafts keep failing: plain decoding is cheaper
    return find_draft(job.tokens + job.generated, cfg.draft_ngram, k)
