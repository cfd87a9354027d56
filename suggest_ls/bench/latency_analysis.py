"""``bench latency``'s analysis: one replay's samples (what was sent, what came back, the server's
records) → its figures (round trips, last keystrokes, keystroke to suggestion, stale and unanswered
answers, model runs, tokens evaluated), and the rounds of one server pooled into a summary.

Pure functions over plain data, so they are tested without a server (tests/unit/test_latency_analysis.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from suggest_ls.bench.common import pcts
from suggest_ls.completion.deadline import PENDING
from suggest_ls.harness.client import Call
from suggest_ls.harness.typist import Keystroke, Source

CROSSED_MS = 1.0  # an answer this close to the next keystroke may have crossed it in flight


@dataclass
class Sent:
    """One replayed keystroke and the completion request that followed it."""

    key: Keystroke
    version: int
    typed_at: float
    call: Call


@dataclass
class Refresh:
    """A request sent again on ``suggest/refresh`` for a document (by index) at a version."""

    doc: int
    version: int
    call: Call


def analyse(
    kind: str,
    sent: list[Sent],
    records: list[dict[str, Any]],
    sources: list[Source],
    count_tokens: Any,
    refreshes: list[Refresh] | None = None,
) -> dict[str, Any]:
    """The raw samples and counts of one round from what the client saw and what the server recorded."""
    by_version: dict[tuple[Any, Any], dict[str, Any]] = {}
    for rec in records:  # the request's own record; a refresh's or a finished line's come after it
        by_version.setdefault((rec.get("uri"), rec.get("version")), rec)
    typed_times: dict[int, list[float]] = {}
    for s in sent:
        typed_times.setdefault(s.key.doc, []).append(s.typed_at)
    rtt_all: list[float] = []
    rtt_last: list[float] = []
    to_suggestion: list[float] = []
    shown = stale = unanswered = errors = last_shown = 0
    error_examples: set[str] = set()
    stale_examples: list[dict[str, Any]] = []
    crossed = 0
    by_refresh, refresh_stale = _refreshed_lines(refreshes or [], typed_times)
    to_whole_line: list[float] = []
    to_any: list[float] = []  # burst end to the first suggestion on screen, answered or refreshed
    overhead: list[float] = []
    pipeline: list[float] = []  # the part of the overhead inside the completer (the rest: protocol, transport)
    for s in sent:
        call = s.call
        if call.answered <= 0:
            unanswered += 1
            continue
        if call.error:
            errors += 1
            error_examples.add(str(call.error.get("message", call.error))[:200])
        rtt_all.append(call.rtt_ms)
        items = (call.result or {}).get("items") if isinstance(call.result, dict) else None
        later = any(call.sent < t < call.answered for t in typed_times[s.key.doc])
        if items:
            if later:
                stale += 1
                typed = min(t for t in typed_times[s.key.doc] if call.sent < t < call.answered)
                if (call.answered - typed) * 1000 < CROSSED_MS:
                    crossed += 1
                if len(stale_examples) < 5:  # how close the keystroke came to the answer's arrival
                    rec = by_version.get((sources[s.key.doc].uri, s.version), {})
                    stale_examples.append(
                        {
                            "version": s.version,
                            "typed_before_answer_ms": round((call.answered - typed) * 1000, 2),
                            "outcome": str(rec.get("outcome", "")),
                            "early": bool(rec.get("early")),
                        }
                    )
            else:
                shown += 1
        if s.key.pause_after:
            rtt_last.append(call.rtt_ms)
            refreshed = by_refresh.get((s.key.doc, s.version))
            if refreshed is not None:
                to_whole_line.append((refreshed - s.typed_at) * 1000)
            if items and not later:
                last_shown += 1
                to_suggestion.append((call.answered - s.typed_at) * 1000)
                to_any.append(to_suggestion[-1])
            elif refreshed is not None:
                to_any.append(to_whole_line[-1])
        r = by_version.get((sources[s.key.doc].uri, s.version))
        if r and _ran(r) and not str(r.get("outcome", "")).startswith(("superseded", "cancel")):
            engine = float(r.get("debounce_ms", 0.0)) + float(r.get("engine_ms", 0.0))
            overhead.append(call.rtt_ms - engine)
            pipeline.append(float(r.get("total_ms", 0.0)) - engine)
    runs = [r for r in records if _ran(r) and r.get("version", 0) > 1]
    return {
        "counts": {
            "keystrokes": len(sent),
            "burst_ends": sum(1 for s in sent if s.key.pause_after),
            "answered": len(rtt_all),
            "unanswered": unanswered,
            "errors": errors,
            "shown": shown,
            "stale": stale,
            # of those, answers the client got less than CROSSED_MS after it typed: already on their
            # way when the keystroke was sent (an editor drops them by the document version)
            "stale_crossed_in_flight": crossed,
            "burst_ends_with_suggestion": last_shown,
            "model_runs": len(runs),
            "drafted_tokens": sum(int(r.get("drafted_tokens", 0)) for r in runs),
            "accepted_tokens": sum(int(r.get("accepted_tokens", 0)) for r in runs),
            "first_words": sum(1 for r in records if r.get("early")),
            "refresh_asks": len(refreshes or []),
            "refresh_whole_lines": sum(1 for a in refreshes or [] if a.call.answered > 0 and _items(a.call)),
            "refresh_stale": refresh_stale,
            # answered empty while the line was still being written (``lineDeadlineMs``)
            "pending": sum(1 for r in records if r.get("outcome") == PENDING),
            "burst_ends_with_suggestion_after_refresh": len(to_any),
        },
        "lists": {
            "rtt_all": rtt_all,
            "rtt_last": rtt_last,
            "to_suggestion": to_suggestion,
            "to_whole_line": to_whole_line,
            "to_any": to_any,
            "overhead": overhead,
            "pipeline": pipeline,
            "evaluated": [float(r["evaluated_tokens"]) for r in runs if "evaluated_tokens" in r],
            "generated": [float(r.get("generated_tokens", 0)) for r in runs],
        },
        "outcomes": _outcomes(records),
        "over_bound": _over_bound(sent, records, sources, count_tokens),
        "error_examples": sorted(error_examples)[:5],
        "stale_examples": stale_examples,
    }


def _refreshed_lines(
    refreshes: list[Refresh], typed_times: dict[int, list[float]]
) -> tuple[dict[tuple[int, int], float], int]:
    """When the whole line a refresh brought arrived, by (document, version), and how many refresh
    answers a later keystroke made stale."""
    by_refresh: dict[tuple[int, int], float] = {}
    stale = 0
    for again in refreshes:
        if again.call.answered <= 0 or not _items(again.call):
            continue
        if any(again.call.sent < t < again.call.answered for t in typed_times.get(again.doc, [])):
            stale += 1
        else:
            by_refresh.setdefault((again.doc, again.version), again.call.answered)
    return by_refresh, stale


def _outcomes(records: list[dict[str, Any]]) -> dict[str, int]:
    """The server's outcomes after the warm-up request (every superseded kind counted as one)."""
    outcomes: dict[str, int] = {}
    for r in records:
        if r.get("version", 0) > 1:
            o = str(r.get("outcome", ""))
            o = "superseded" if o.startswith("superseded") else o
            outcomes[o] = outcomes.get(o, 0) + 1
    return outcomes


def summarise(kind: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's figures over all rounds (samples pooled)."""
    counts: dict[str, int] = {}
    lists: dict[str, list[float]] = {}
    outcomes: dict[str, int] = {}
    over = {"checked": 0, "over": 0, "examples": []}  # type: dict[str, Any]
    errors: list[str] = []
    stale_examples: list[dict[str, Any]] = []
    for raw in rounds:
        for k, v in raw["counts"].items():
            counts[k] = counts.get(k, 0) + v
        for k, v in raw["lists"].items():
            lists.setdefault(k, []).extend(v)
        for k, v in raw["outcomes"].items():
            outcomes[k] = outcomes.get(k, 0) + v
        over["checked"] += raw["over_bound"]["checked"]
        over["over"] += raw["over_bound"]["over"]
        over["examples"] = (over["examples"] + raw["over_bound"].get("examples", []))[:5]
        errors = sorted(set(errors) | set(raw["error_examples"]))[:5]
        stale_examples = (stale_examples + raw.get("stale_examples", []))[:5]
    return {
        "server": kind,
        "rounds": len(rounds),
        **counts,
        "error_examples": errors,
        "stale_examples": stale_examples,
        "server_ms_all": pcts(lists["rtt_all"]),
        "server_ms_last_keystroke": pcts(lists["rtt_last"]),
        "keystroke_to_suggestion_ms": pcts(lists["to_suggestion"]),
        # the burst ends whose line came by suggest/refresh: keystroke to the whole line on screen
        "keystroke_to_refreshed_line_ms": pcts(lists["to_whole_line"]),
        # every burst end that showed something: keystroke to its first suggestion, answered or refreshed
        "keystroke_to_first_suggestion_ms": pcts(lists["to_any"]),
        "model_runs_per_keystroke": round(counts["model_runs"] / max(1, counts["keystrokes"]), 3),
        "tokens_evaluated_per_completion": pcts(lists["evaluated"]),
        "tokens_generated_per_completion": pcts(lists["generated"]),
        "completions_over_token_bound": over,
        "server_overhead_ms": pcts(lists["overhead"], 2),
        "completer_pipeline_ms": pcts(lists["pipeline"], 2),
        "outcomes": outcomes,
        # with --read-s: per round and document, its first keystroke to its first suggestion
        "cold_first_suggestion_ms": [raw.get("cold_first_suggestion_ms") for raw in rounds],
        "_rtt_last": lists["rtt_last"],
        "_rtt_all": lists["rtt_all"],
    }


def first_suggestion_ms(sent: list[Sent], refreshes: list[Refresh], docs: int) -> list[float | None]:
    """Per document: from its first keystroke to the first suggestion shown on it (an answer with an
    item, or one fetched on suggest/refresh); None when none came."""
    out: list[float | None] = []
    for d in range(docs):
        mine = [s for s in sent if s.key.doc == d]
        if not mine:
            out.append(None)
            continue
        start = mine[0].typed_at
        times = [s.call.answered for s in mine if s.call.answered and s.call.answered > 0 and _items(s.call)]
        times += [r.call.answered for r in refreshes if r.doc == d and r.call.answered and _items(r.call)]
        out.append(round((min(times) - start) * 1000, 1) if times else None)
    return out


def _items(call: Call) -> list[Any]:
    """The items of an inline completion answer."""
    result = call.result
    return list(result.get("items") or []) if isinstance(result, dict) else []


def _ran(record: dict[str, Any]) -> bool:
    """Whether the request reached the model (suggest-ls: admitted to a slot; a remote backend, which
    does not report prompt tokens: it generated some)."""
    return (
        bool(record.get("ran")) or int(record.get("prompt_tokens", 0)) > 0 or int(record.get("generated_tokens", 0)) > 0
    )


def _over_bound(
    sent: list[Sent], records: list[dict[str, Any]], sources: list[Source], count_tokens: Any
) -> dict[str, Any]:
    """Completions that evaluated more than the new text's tokens + generated + 8 (KV reuse misses)."""
    if count_tokens is None:
        return {"checked": 0, "over": 0}
    inserted: dict[tuple[int, int], str] = {(s.key.doc, s.version): s.key.text for s in sent}
    doc_of = {src.uri: i for i, src in enumerate(sources)}
    runs = sorted(
        (r for r in records if r.get("prompt_tokens", 0) > 0 and r.get("uri") in doc_of and "evaluated_tokens" in r),
        key=lambda r: (r["uri"], r.get("version", 0)),
    )
    checked = over = 0
    examples: list[dict[str, int]] = []
    previous: dict[str, int] = {}
    for r in runs:
        doc = doc_of[r["uri"]]
        v = int(r.get("version", 0))
        if r["uri"] in previous and v > 1:
            new_text = "".join(inserted.get((doc, x), "") for x in range(previous[r["uri"]] + 1, v + 1))
            bound = count_tokens(new_text) + int(r.get("generated_tokens", 0)) + 8
            checked += 1
            if int(r["evaluated_tokens"]) > bound:
                over += 1
                if len(examples) < 5:
                    examples.append({"version": v, "evaluated": int(r["evaluated_tokens"]), "bound": bound})
        previous[r["uri"]] = v
    return {"checked": checked, "over": over, "examples": examples}
