"""Per-request records and the rolling figures built from them (latency percentiles, reasons)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

MODEL_OUTCOMES = ("shown", "cache")
# What the server logs about staleness on the way out (``bench latency`` counts these lines):
STALE_LOGGED = ": stale ("  # in every line about a suggestion emptied because its document changed first
STALE_EMPTIED = "changed before the answer went out"  # ... on its way out (held back, then checked again)
UNREAD_SEND = "sent with input still unread"  # holding a suggestion back gave up: it may go out stale
LINE_FINISHED = "line finished"  # the engine's work on a line after its first words were answered


@dataclass(frozen=True)
class Record:
    """The timings and outcome of one completion request."""

    uri: str
    outcome: str
    total_ms: float = 0.0
    queue_ms: float = 0.0
    ttft_ms: float = 0.0
    engine_ms: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    evaluated_tokens: int = 0
    generated_tokens: int = 0
    cache_hit: bool = False
    shifted_tokens: int = 0  # of ``cached_tokens``, those moved down in the cache (a window that slid)
    at: float = field(default_factory=time.time)
    version: int = -1
    debounce_ms: float = 0.0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    # Reranking (the ``candidates`` setting): extra jobs after the first generation and their tokens
    # (sampled lines generated, candidate lines and following code evaluated for scoring).
    rerank_jobs: int = 0
    rerank_tokens: int = 0
    # Other first tokens tried after the syntax check refused a suggestion (the ``alternatives`` setting).
    alternative_jobs: int = 0
    alternative_tokens: int = 0
    # How sure the model was of what was shown: the share of samples agreeing with it when candidates
    # were reranked, else the least probability of its tokens (-1: nothing was generated).
    confidence: float = -1.0
    # The first generation's token probabilities: their geometric mean and the least (-1: none).
    line_prob: float = -1.0
    min_prob: float = -1.0
    # Answered with the first words of a line still being generated (the ``lineBudgetMs`` setting).
    early: bool = False

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON."""
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def outcome_class(outcome: str) -> str:
    """A bounded label for an outcome: shown, cache, superseded, error or empty (no suggestion)."""
    if outcome in MODEL_OUTCOMES:
        return outcome
    if outcome.startswith("superseded"):
        return "superseded"
    if outcome.startswith("error"):
        return "error"
    return "empty"


@dataclass
class _Offer:
    uri: str
    length: int
    at: float
    accepted: int = 0
    partial: int = 0


@dataclass
class _Live:
    """The latest suggestion shown in a document: where it starts and how much of it is in the text."""

    offer_id: str
    offset: int
    text: str
    pos: int = 0


class Acceptance:
    """Suggestions offered to the editor and how much of each the user accepted (thread-safe)."""

    def __init__(self, keep: int = 2000) -> None:
        self._lock = threading.Lock()
        self._offers: OrderedDict[str, _Offer] = OrderedDict()
        self._keep = keep
        self._next = 0
        self.offered = 0
        self.accepted = 0
        self.partial = 0
        self.accepted_chars = 0
        self.offered_chars = 0
        self._live: dict[str, _Live] = {}

    def offer(self, uri: str, length: int, offset: int = -1, text: str = "") -> str:
        """Register a suggestion shown to the editor; returns its id for the acceptance command.

        With its ``offset`` and ``text``, edits that insert its start are seen as partial acceptance.
        """
        with self._lock:
            self._next += 1
            offer_id = f"s{self._next}"
            self._offers[offer_id] = _Offer(uri, length, time.time())
            if offset >= 0 and text:
                self._live[uri] = _Live(offer_id, offset, text)
            else:
                self._live.pop(uri, None)
            while len(self._offers) > self._keep:
                self._offers.popitem(last=False)
            self.offered += 1
            self.offered_chars += length
            return offer_id

    def accept(self, offer_id: str) -> bool:
        """Record a full acceptance; False for unknown or repeated ids."""
        with self._lock:
            offer = self._offers.get(offer_id)
            if offer is None or offer.accepted:
                return False
            got = offer.length
            self.accepted += 1
            if offer.partial:
                self.partial -= 1  # a partial acceptance completed later counts once, as accepted
            self.accepted_chars += max(0, got - offer.partial)
            offer.accepted = got
            return True

    def accept_partially(self, offer_id: str, length: int) -> bool:
        """Record that the first ``length`` characters were accepted (word or line at a time)."""
        with self._lock:
            offer = self._offers.get(offer_id)
            if offer is None or offer.accepted:
                return False
            got = max(0, min(int(length), offer.length))
            if got <= offer.partial:
                return False
            if not offer.partial:
                self.partial += 1
            self.accepted_chars += got - offer.partial
            offer.partial = got
            return True

    def edit(self, uri: str, offset: int, removed: int, inserted: str) -> bool:
        """Follow an edit of a document; True when it accepted part of the suggestion shown there.

        Editors accept a word or a line of a suggestion by inserting it in one edit (VS Code's
        Ctrl+Right has no stable API to say so): an insertion of two or more characters at the
        suggestion's next character that matches its continuation counts as partial acceptance.
        Typing it character by character moves along without counting; any other edit ends it.
        """
        with self._lock:
            live = self._live.get(uri)
            if live is None:
                return False
            rest = live.text[live.pos :]
            if removed or offset != live.offset + live.pos or not inserted or not rest.startswith(inserted):
                del self._live[uri]
                return False
            live.pos += len(inserted)
            if live.pos >= len(live.text):
                del self._live[uri]  # all of it: the editor runs the acceptance command
                return False
            if len(inserted) < 2:
                return False
        return self.accept_partially(live.offer_id, live.pos)

    def forget(self, uri: str) -> None:
        """Stop following a document (it was closed)."""
        with self._lock:
            self._live.pop(uri, None)

    def rate(self) -> float:
        """Share of offered suggestions accepted in full or in part."""
        with self._lock:
            return (self.accepted + self.partial) / self.offered if self.offered else 0.0

    def summary(self) -> dict[str, float | int]:
        """Counts and rates for ``suggest/status``."""
        rate = self.rate()
        with self._lock:
            return {
                "offered": self.offered,
                "accepted": self.accepted,
                "partiallyAccepted": self.partial,
                "rate": round(rate, 3),
                "acceptedChars": self.accepted_chars,
                "charRate": round(self.accepted_chars / self.offered_chars, 3) if self.offered_chars else 0.0,
            }


class Recorder:
    """Keeps recent records (thread-safe) and counts outcomes since start."""

    def __init__(self, keep: int = 5000) -> None:
        self._lock = threading.Lock()
        self._records: deque[Record] = deque(maxlen=keep)
        self.outcomes: Counter[str] = Counter()
        self.requests = 0
        self.cache_hits = 0
        self.listeners: list[Callable[[Record], None]] = []

    def add(self, record: Record) -> None:
        """Store one record and tell the listeners (metrics, alerts)."""
        with self._lock:
            self._records.append(record)
            self.requests += record.outcome != LINE_FINISHED  # not a request of its own
            self.outcomes[record.outcome] += 1
            if record.cache_hit:
                self.cache_hits += 1
        for listener in list(self.listeners):
            try:
                listener(record)
            except Exception:  # a broken listener must not break completion
                logging.getLogger(__name__).exception("stats listener failed")

    def decode_rate(self, seconds: float = 300.0) -> tuple[float, int]:
        """Tokens per second while generating (after the first token) over the window, and how many requests count."""
        tokens = 0
        busy = 0.0
        requests = 0
        for r in self.recent(seconds):
            if r.generated_tokens > 1 and r.engine_ms > r.ttft_ms:
                tokens += r.generated_tokens - 1
                busy += (r.engine_ms - r.ttft_ms) / 1000
                requests += 1
        return (tokens / busy if busy > 0 else 0.0), requests

    def recent(self, seconds: float = 300.0) -> list[Record]:
        """Records of the last ``seconds``."""
        cutoff = time.time() - seconds
        with self._lock:
            return [r for r in self._records if r.at >= cutoff]

    def latency(self, seconds: float = 300.0) -> dict[str, float]:
        """p50/p90/p99 of total latency over requests that reached the model or the cache."""
        values = [
            r.total_ms
            for r in self.recent(seconds)
            if r.outcome in MODEL_OUTCOMES or (r.generated_tokens and r.outcome != LINE_FINISHED)
        ]
        return {
            "p50_ms": round(percentile(values, 50), 1),
            "p90_ms": round(percentile(values, 90), 1),
            "p99_ms": round(percentile(values, 99), 1),
            "count": len(values),
        }

    def reasons(self, n: int = 10) -> list[dict[str, object]]:
        """The latest reasons a suggestion was not shown."""
        with self._lock:
            # (a finished line is the engine's work after a request was answered, not a reason)
            out = [r for r in reversed(self._records) if r.outcome not in (*MODEL_OUTCOMES, LINE_FINISHED)][:n]
        return [{"uri": r.uri, "reason": r.outcome, "at": r.at} for r in out]
