"""The scores of ``suggest-ls bench languages``: the line an answer leaves in the editor, its exact
match and edit similarity, and the figures of one arm on one language."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from suggest_ls.bench.common import pcts
from suggest_ls.bench.languages.cases import Case
from suggest_ls.bench.quality.scoring import Outcome


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of characters)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def similarity(candidate: str, reference: str) -> float:
    """Edit similarity of whitespace-trimmed lines: 1 - distance / the longer length (1 when both empty)."""
    a, b = candidate.strip(), reference.strip()
    longest = max(len(a), len(b))
    return 1.0 - levenshtein(a, b) / longest if longest else 1.0


@dataclass
class Scored:
    """One arm on one case: its answer, the line it leaves in the editor and that line's scores."""

    outcome: Outcome
    line: str = ""  # the masked line as it stands after accepting the suggestion ('' when none)
    lines: int = 0  # how many lines the suggestion inserted
    exact: bool = False
    similarity: float = 0.0
    line_ms: float = 0.0  # until the whole line was in (after suggest/refresh); the first answer is outcome.ms


def score(case: Case, outcome: Outcome, edited: str | None) -> Scored:
    """Score the document ``edited`` (the case's document with the suggestion accepted) on its line."""
    if edited is None:
        return Scored(outcome)
    start = len(case.prefix) - len(case.indent)
    end = edited.find("\n", start)
    # the masked line after the edit: the lines the suggestion inserted are what the suffix does not hold
    inserted_end = len(edited) - len(case.suffix)
    line = edited[start : end if 0 <= end < inserted_end else inserted_end]
    out = Scored(outcome, line=line, lines=edited[start:inserted_end].count("\n") + 1)
    out.exact = bool(line.strip()) and line.strip() == case.middle
    out.similarity = similarity(line, case.middle)
    return out


def summarize(scored: list[Scored]) -> dict[str, Any]:
    """Exact match, edit similarity, shown rate and latency of one arm on one language."""
    n = len(scored)
    shown = [s for s in scored if s.outcome.shown]
    reasons: dict[str, int] = {}
    for s in scored:
        if not s.outcome.shown:
            key = re.sub(r" \([0-9.]+\)$", "", s.outcome.reason) or "unknown"
            reasons[key] = reasons.get(key, 0) + 1
    return {
        "cases": n,
        "exact": round(100 * sum(s.exact for s in scored) / n, 2) if n else 0.0,
        "edit_similarity": round(100 * sum(s.similarity for s in scored) / n, 2) if n else 0.0,
        "shown": round(100 * len(shown) / n, 2) if n else 0.0,
        "exact_of_shown": round(100 * sum(s.exact for s in shown) / len(shown), 2) if shown else 0.0,
        "similarity_of_shown": round(100 * sum(s.similarity for s in shown) / len(shown), 2) if shown else 0.0,
        "latency_ms": pcts([s.outcome.ms for s in scored]),  # the first answer (it may be a line's first words)
        "line_ms": pcts([s.line_ms or s.outcome.ms for s in scored]),  # the line scored
        "tokens_evaluated": pcts([float(s.outcome.tokens_evaluated) for s in scored], 0),
        "tokens_generated": pcts([float(s.outcome.tokens_generated) for s in scored], 0),
        "not_shown": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
    }
