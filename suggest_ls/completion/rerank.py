"""Judging a generated line, with second opinions: reranking sampled candidates by how likely they
make the code after the cursor, and other first tokens when a line breaks the code. Each extra
engine job goes through ``run``, which answers None once a newer request has superseded the one
being answered."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from suggest_ls.backends.contract import GenRequest, GenResult, StopRule
from suggest_ls.completion import syntax
from suggest_ls.completion.clean import DUPLICATES, Cleaned, clean, clean_result
from suggest_ls.completion.context import Cursor
from suggest_ls.completion.plan import Plan
from suggest_ls.completion.request import CompletionRequest
from suggest_ls.settings import Settings

log = logging.getLogger(__name__)
SAMPLE_TEMPERATURE = 0.8  # candidates for reranking
FOLLOW_LINES = 2  # non-blank lines after the cursor that rank the candidates
FOLLOW_CHARS = 240

Run = Callable[[GenRequest], Awaitable[GenResult | None]]


async def judge(
    run: Run,
    settings: Settings,
    req: CompletionRequest,
    p: Plan,
    result: GenResult,
    timing: dict[str, float | int],
    sample: bool,
) -> tuple[Cleaned, float] | None:
    """A generation's text cleaned, with its confidence: with ``sample``, reranked among sampled
    lines (a single line with code after it); from another start where it breaks or repeats the code.
    None when superseded meanwhile."""
    cleaned = clean_result(result, p.block, p.cursor, p.rule)
    confidence = result.min_prob
    fits = False  # known to keep the code well-formed (reranking checks its candidates)
    if sample and not p.block and follow(p.cursor, 0):
        ranked = await rerank(run, settings, req, p.cursor, p.rule, p.gen, cleaned, timing)
        if ranked is None:
            return None
        cleaned, confidence, fits = ranked
    # a line that breaks the code, or that repeats the code after the cursor: another start may fit
    repeats = p.checking and not cleaned.text and cleaned.reason.startswith(DUPLICATES)
    if repeats or (
        p.checking and cleaned.text and not fits and syntax.breaks(req.text, req.offset, cleaned.text, cleaned.replace)
    ):
        why = cleaned.reason if repeats else syntax.BREAKS
        return await alternative(run, settings, req, p.cursor, p.rule, p.gen, result, timing, why)
    return cleaned, confidence


async def rerank(
    run: Run,
    settings: Settings,
    req: CompletionRequest,
    cursor: Cursor,
    rule: StopRule,
    gen: GenRequest,
    greedy: Cleaned,
    timing: dict[str, float | int],
) -> tuple[Cleaned, float, bool] | None:
    """Sample more lines and keep the one under which the code after the cursor is likeliest.

    The score is log p(line + the next lines | prompt): InCoder's left-to-right reranking. The
    confidence is the share of samples (greedy included) that wrote the chosen line; the flag says
    the line was checked and keeps the code well-formed (Python). None when superseded.
    """
    votes: dict[str, int] = {}
    found: dict[str, Cleaned] = {}
    checking = settings.syntax_check and syntax.checks(req.language, req.uri)

    def fits(c: Cleaned) -> bool:
        return not (checking and syntax.breaks(req.text, req.offset, c.text, c.replace))

    if greedy.text and fits(greedy):
        votes[greedy.text], found[greedy.text] = 1, greedy
    for i in range(settings.candidates):
        sample = replace(gen, temperature=SAMPLE_TEMPERATURE, seed=i + 1)
        result = await run(sample)
        if result is None:
            return None
        add_timing(timing, result)
        cleaned = clean(result.text, cursor, rule)
        if cleaned.text and fits(cleaned):
            votes[cleaned.text] = votes.get(cleaned.text, 0) + 1
            found.setdefault(cleaned.text, cleaned)
    total = settings.candidates + 1
    if len(found) <= 1:
        best = next(iter(found.values()), greedy)
        return best, votes.get(best.text, 0) / total, bool(found) and checking
    scores: dict[str, float] = {}
    for text, cleaned in found.items():
        score_req = GenRequest(
            key=gen.key,
            prompt=gen.prompt + text + follow(cursor, cleaned.replace),
            max_tokens=0,
            score_from=len(gen.prompt),
        )
        result = await run(score_req)
        if result is None:
            return None
        add_timing(timing, result)
        scores[text] = result.score
    best_text = max(scores, key=lambda t: scores[t])
    log.debug("reranked %d candidates: %s", len(scores), sorted(scores.values(), reverse=True))
    return found[best_text], votes[best_text] / total, checking


async def alternative(
    run: Run,
    settings: Settings,
    req: CompletionRequest,
    cursor: Cursor,
    rule: StopRule,
    gen: GenRequest,
    first: GenResult,
    timing: dict[str, float | int],
    why: str = syntax.BREAKS,
) -> tuple[Cleaned, float] | None:
    """A suggestion that does not break the code, from the likeliest other first tokens; None when superseded.

    Each try continues the cached prompt with one of the first generation's alternatives (greedy);
    when none fits, the answer is empty for ``why`` (the first line's fault).
    """
    for start, prob in first.alternatives[: settings.alternatives]:
        started = bool(start.strip())
        forced = replace(
            gen,
            prompt=gen.prompt + start,
            max_tokens=max(1, gen.max_tokens - 1),
            rule=replace(rule, line_started=rule.line_started or started),
            alternatives=0,
        )
        result = await run(forced)
        if result is None:
            return None
        add_timing(timing, result, "alternative")
        cleaned = clean_result(replace(result, text=start + result.text), rule.multiline, cursor, rule)
        if cleaned.text and not syntax.breaks(req.text, req.offset, cleaned.text, cleaned.replace):
            log.debug("alternative start %r fits (p=%.3f)", start, prob)
            return cleaned, min(prob, result.min_prob)
    return Cleaned(reason=why), 0.0


def follow(cursor: Cursor, replace: int) -> str:
    """The code after a suggestion that replaces ``replace`` characters: the rest of the line and the
    next few non-blank lines (what a good suggestion should make likely)."""
    rest = cursor.suffix[replace:]
    out: list[str] = []
    count = 0
    for i, line in enumerate(rest.split("\n")):
        out.append(line)
        if i and line.strip():
            count += 1
        if count >= FOLLOW_LINES:
            break
    text = "\n".join(out)[:FOLLOW_CHARS]
    return text if text.strip() else ""


def add_timing(timing: dict[str, float | int], result: GenResult, kind: str = "rerank") -> None:
    """Add a reranking or alternative job's work to a request's figures (apart from the first generation's)."""
    timing[f"{kind}_jobs"] = timing.get(f"{kind}_jobs", 0) + 1
    timing[f"{kind}_tokens"] = timing.get(f"{kind}_tokens", 0) + result.evaluated_tokens + result.generated_tokens
    timing["engine_ms"] = timing.get("engine_ms", 0) + result.total_ms
