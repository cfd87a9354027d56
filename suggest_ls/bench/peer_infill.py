"""The peer baseline of ``bench latency``: llama.cpp's ``llama-server`` driven the way llama.vim drives it.

``LlamaVim`` reacts to the typist's keystrokes as llama.vim (ggml-org/llama.vim) does in insert
mode, asking ``POST /infill`` of a ``llama-server`` started with ``--cache-reuse 256``:
- a keystroke hides the hint and looks in the client's cache (250 entries, LRU) for the new text,
  or for one up to 128 characters back whose suggestion starts with what was typed since; then it
  asks, unless a request is in flight (tried again every 100 ms; requests are never cancelled),
  the cache holds this text, or more than 8 characters follow the cursor on its line;
- a request: 256 lines before the cursor line (``input_prefix``), 64 after (``input_suffix``),
  the line up to the cursor (``prompt``), ``input_extra``, ``n_predict`` 128, ``t_max_prompt_ms``
  500, ``t_max_predict_ms`` 250 (1000 for a follow-up), samplers top_k 40 / top_p 0.90 / infill,
  ``cache_prompt``, slot 0; an answer is cached and shown if it fits the text as it is now; a shown
  hint is followed by a request for the text as if it were accepted (speculative);
- extra context: 32 lines around the cursor when a document is first entered, and when the cursor
  moved over 32 lines one chunk from far above and one below; a queued chunk joins (at most 16)
  each second once the cursor rested 3 s, with a request that only evaluates it (``n_predict`` 0).

Per keystroke the same figures as the LSP servers' (``latency_analysis.analyse``): the time from the
keystroke to its answer (a hint shown for that text, from the cache or an answer; or the answer
to the request for that text, empty or arriving after a later keystroke: stale), and which
keystrokes got none. llama.vim asks nothing for most keystrokes typed while a request runs; those
inside a burst are counted as ``throttled``, burst ends without an answer as ``unanswered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suggest_ls.bench.common import Progress
from suggest_ls.bench.llama_server import post_json, start_llama_server, stop_process
from suggest_ls.harness.typist import Keystroke, Source
from suggest_ls.harness.wire import free_port

N_PREFIX = 256
N_SUFFIX = 64
N_PREDICT = 128
T_MAX_PROMPT_MS = 500
T_MAX_PREDICT_MS = 1000
T_MAX_PREDICT_FIRST_MS = 250
MAX_LINE_SUFFIX = 8
MAX_CACHE_KEYS = 250
LOOKBACK_CHARS = 128
RETRY_S = 0.1
RING_N_CHUNKS = 16
RING_CHUNK_SIZE = 64
RING_SCOPE = 1024
RING_UPDATE_S = 1.0
RING_IDLE_S = 3.0
RING_QUEUE = 16
SEP = "\u00ce"  # llama.vim's separator between the text before the cursor and after it in cache keys
RESPONSE_FIELDS = ["content", "timings/prompt_n", "timings/predicted_n", "tokens_cached", "truncated"]


@dataclass
class Context:
    """What llama.vim sends for a cursor position (``s:fim_ctx_local``)."""

    prefix: str
    middle: str
    suffix: str
    indent: int
    line_cur: str
    line_cur_suffix: str

    def key(self, prefix: str | None = None) -> str:
        """The cache key of this text (llama.vim hashes the same string)."""
        return (self.prefix if prefix is None else prefix) + self.middle + SEP + self.suffix


def local_context(lines: list[str], y: int, x: int, prev: list[str] | None = None, indent_last: int = 0) -> Context:
    """The local context at line ``y``, column ``x`` (0-based); with ``prev``, as if that suggestion
    (its lines) had been accepted there."""
    if not prev:
        line_cur = lines[y]
        cur_prefix, cur_suffix = line_cur[:x], line_cur[x:]
        before = lines[max(0, y - N_PREFIX) : y]
        if not line_cur.strip():
            indent, cur_prefix, cur_suffix = 0, "", ""
        else:
            indent = len(line_cur) - len(line_cur.lstrip())
    else:
        line_cur = lines[y] + prev[0] if len(prev) == 1 else prev[-1]
        cur_prefix, cur_suffix = line_cur, ""
        before = lines[max(0, y - N_PREFIX + len(prev) - 1) : y]
        if len(prev) > 1:
            before = [*before, lines[y] + prev[0], *prev[1:-1]]
        indent = indent_last
    after = lines[y + 1 : y + 1 + N_SUFFIX]
    return Context(
        prefix="\n".join(before) + "\n",
        middle=cur_prefix,
        suffix=cur_suffix + "\n" + "\n".join(after) + "\n",
        indent=indent,
        line_cur=line_cur,
        line_cur_suffix=cur_suffix,
    )


def render(content: str, lines: list[str], y: int, x: int) -> tuple[list[str], bool]:
    """The hint llama.vim shows for an answer's text at (y, x), and whether it can be accepted
    (``s:fim_render``: repeats of the text around the cursor are dropped)."""
    parts = content.split("\n")
    while parts and parts[-1] == "":
        parts.pop()
    can_accept = bool(parts)
    if not parts:
        parts = [""]
    line_cur = lines[y]
    if not line_cur.strip():
        lead = min(len(parts[0]) - len(parts[0].lstrip()), len(line_cur))
        line_cur, parts[0] = parts[0][:lead], parts[0][lead:]
    cur_prefix, cur_suffix = line_cur[:x], line_cur[x:]
    below = lines[y + 1 :]
    if len(parts) > 1 and parts[0] == "" and parts[1:] == below[: len(parts) - 1]:
        parts = [""]
    if len(parts) == 1 and parts[0] == cur_suffix:
        parts = [""]
    cmp = y + 1
    while cmp < len(lines) - 1 and not lines[cmp].strip():
        cmp += 1
    if cmp < len(lines) and cur_prefix + parts[0] == lines[cmp]:
        nxt = lines[cmp + 1 :]
        if (
            len(parts) == 1
            or (len(parts) == 2 and nxt and nxt[0].startswith(parts[-1]))
            or (len(parts) > 2 and parts[1:-1] == nxt[: len(parts) - 2])
        ):
            parts = [""]
    parts[-1] += cur_suffix
    if not "\n".join(parts).strip():
        can_accept = False
    return parts, can_accept


def chunk_sim(a: list[str], b: list[str]) -> float:
    """llama.vim's similarity of two chunks: shared lines over their mean length."""
    common = sum(1 for line in a if line in b)
    return 2.0 * common / max(1, len(a) + len(b))


@dataclass
class Chunk:
    """A piece of other text for ``input_extra``."""

    lines: list[str]
    filename: str
    at: float

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass
class Asked:
    """One ``/infill`` request: for which text, when, and what came back."""

    doc: int
    version: int  # the document's version when sent (-1 for a speculative request)
    sent: float
    answered: float = 0.0
    content: str | None = None
    prompt_n: int = 0
    predicted_n: int = 0
    error: str = ""


@dataclass
class Typed:
    """One keystroke and its answer, if any."""

    key: Keystroke
    version: int
    typed_at: float
    answered: float = 0.0
    shown: bool = False  # the answer was a hint with text (not an empty answer)
    via: str = ""  # "cache", "answer", "empty" or "stale"
    asked: bool = False


@dataclass
class _Doc:
    source: Source
    text: str
    cursor: int
    version: int = 1
    entered: bool = False
    modified: bool = False

    def position(self) -> tuple[list[str], int, int]:
        lines = self.text.split("\n")
        y = self.text.count("\n", 0, self.cursor)
        x = self.cursor - (self.text.rfind("\n", 0, self.cursor) + 1)
        return lines, y, x


@dataclass
class LlamaVim:
    """llama.vim's automatic FIM in insert mode, against one ``llama-server``."""

    url: str
    sources: list[Source]
    seed: int = 1
    docs: list[_Doc] = field(default_factory=list)
    current: int = 0
    cache: OrderedDict[str, str] = field(default_factory=OrderedDict)
    ring: list[Chunk] = field(default_factory=list)
    queued: list[Chunk] = field(default_factory=list)
    job: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    hint: tuple[list[str], bool] | None = None  # the hint shown: its lines and whether it can be accepted
    indent_last: int = 0
    pos_y_pick: int = -9999
    last_move: float = 0.0
    asked: list[Asked] = field(default_factory=list)
    typed: list[Typed] = field(default_factory=list)
    ring_requests: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.docs = [_Doc(s, s.initial, s.start) for s in self.sources]
        self.last_move = time.perf_counter()
        self._ring_task: asyncio.Task[None] | None = None
        self._others: set[asyncio.Task[Any]] = set()

    # --- the editor's events ---
    def enter(self, doc: int) -> None:
        """The cursor goes to another document (BufEnter picks a chunk while it is unmodified)."""
        if doc == self.current and self.docs[doc].entered:
            return
        self.current = doc
        d = self.docs[doc]
        d.entered = True
        if not d.modified:
            lines, y, _ = d.position()
            half = RING_CHUNK_SIZE // 2
            self.pick_chunk(lines[max(0, y - half) : y + half + 1], d, evict=True)

    def type(self, key: Keystroke) -> Typed:
        """One keystroke: the edit, then CursorMovedI (hide, try the cache, then ask)."""
        self.enter(key.doc)
        d = self.docs[key.doc]
        d.text = d.text[: key.offset] + key.text + d.text[key.offset :]
        d.cursor = key.offset + len(key.text)
        d.version += 1
        d.modified = True
        item = Typed(key, d.version, time.perf_counter())
        self.typed.append(item)
        self.last_move = item.typed_at
        self.hint = None
        self.try_hint()
        self.fim(is_auto=True)
        return item

    def trigger(self, doc: int) -> None:
        """A manual request at the cursor (llama.vim's trigger key): the warm-up of each document."""
        self.enter(doc)
        self.fim(is_auto=False)

    # --- s:fim_try_hint and the cache ---
    def _cache_get(self, key: str) -> str | None:
        if key not in self.cache:
            return None
        self.cache.move_to_end(key)
        return self.cache[key]

    def _cache_put(self, key: str, content: str) -> None:
        if key not in self.cache and len(self.cache) >= MAX_CACHE_KEYS:
            self.cache.popitem(last=False)
        self.cache[key] = content
        self.cache.move_to_end(key)

    def cached_for(self, ctx: Context) -> str | None:
        """The cached suggestion for this text, or one typed through (up to 128 characters back)."""
        found = self._cache_get(ctx.key())
        if found is not None:
            return found
        pm = ctx.prefix + ctx.middle
        best = 0
        for i in range(min(LOOKBACK_CHARS, len(pm))):
            removed = pm[len(pm) - 1 - i :]
            cached = self._cache_get(pm[: len(pm) - 1 - i] + SEP + ctx.suffix)
            if cached is None or not cached.startswith(removed):
                continue
            rest = cached[i + 1 :]
            if rest and (found is None or len(rest) > best):
                best = best if found is None else len(rest)
                found = rest
        return found

    def try_hint(self, via: str = "cache") -> None:
        """Show a cached suggestion at the cursor if one fits; then ask for the text after it."""
        d = self.docs[self.current]
        lines, y, x = d.position()
        content = self.cached_for(local_context(lines, y, x))
        if content is None:
            return
        self.hint = render(content, lines, y, x)
        self._note_shown(d, self.hint[1], via)
        self.fim(is_auto=True, prev=self.hint[0])

    def _note_shown(self, d: _Doc, can_accept: bool, via: str) -> None:
        """The keystroke that brought the document to its version now has its answer (if it had none)."""
        for item in reversed(self.typed):
            if item.key.doc == self.current and item.version == d.version:
                if not item.answered:
                    item.answered, item.shown = time.perf_counter(), can_accept
                    item.via = via if can_accept else "empty"
                break

    # --- llama#fim ---
    def fim(self, is_auto: bool, prev: list[str] | None = None) -> None:
        """Ask for a completion at the cursor (or as if ``prev`` were accepted there)."""
        if self.job is not None:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = asyncio.get_running_loop().call_later(RETRY_S, self._retry, prev)
            return
        self.timer = None
        d = self.docs[self.current]
        lines, y, x = d.position()
        ctx = local_context(lines, y, x, prev, self.indent_last)
        if is_auto and len(ctx.line_cur_suffix) > MAX_LINE_SUFFIX:
            return
        keys = [ctx.key()]
        trimmed = ctx.prefix
        for _ in range(3):
            trimmed = trimmed.split("\n", 1)[1] if "\n" in trimmed else ""
            if not trimmed:
                break
            keys.append(ctx.key(trimmed))
        if any(self._cache_get(k) is not None for k in keys):
            return
        self.indent_last = ctx.indent
        around = lines[max(0, y - RING_CHUNK_SIZE // 2) : y + RING_CHUNK_SIZE // 2 + 1]
        l0 = self.rng.randint(0, max(0, len(around) - RING_CHUNK_SIZE // 2))
        near = around[l0 : min(l0 + RING_CHUNK_SIZE // 2, len(around)) + 1]
        self.ring = [c for c in self.ring if chunk_sim(c.lines, near) <= 0.5]
        body = {
            "id_slot": 0,
            "input_prefix": ctx.prefix,
            "input_suffix": ctx.suffix,
            "input_extra": self._extra(),
            "prompt": ctx.middle,
            "n_predict": N_PREDICT,
            "stop": [],
            "n_indent": ctx.indent,
            "top_k": 40,
            "top_p": 0.90,
            "samplers": ["top_k", "top_p", "infill"],
            "stream": False,
            "cache_prompt": True,
            "t_max_prompt_ms": T_MAX_PROMPT_MS,
            "t_max_predict_ms": T_MAX_PREDICT_MS if prev else T_MAX_PREDICT_FIRST_MS,
            "response_fields": RESPONSE_FIELDS,
        }
        asked = Asked(self.current, -1 if prev else d.version, time.perf_counter())
        self.asked.append(asked)
        if not prev:
            for item in reversed(self.typed):
                if item.key.doc == self.current and item.version == d.version:
                    item.asked = True
                    break
        self.job = asyncio.ensure_future(self._run(asked, body, keys))
        if is_auto and abs(y - self.pos_y_pick) > RING_CHUNK_SIZE // 2:
            self.pick_chunk(lines[max(0, y - RING_SCOPE) : max(1, y - N_PREFIX)], d, evict=False)
            self.pick_chunk(lines[y + N_SUFFIX : y + N_SUFFIX + RING_CHUNK_SIZE], d, evict=False)
            self.pos_y_pick = y

    def _retry(self, prev: list[str] | None) -> None:
        self.timer = None
        self.fim(is_auto=True, prev=prev)

    async def _run(self, asked: Asked, body: dict[str, Any], keys: list[str]) -> None:
        try:
            answer = await post_json(self.url, "/infill", body)
            asked.content = str(answer.get("content", ""))
            asked.prompt_n = int(answer.get("timings/prompt_n", 0) or 0)
            asked.predicted_n = int(answer.get("timings/predicted_n", 0) or 0)
        except (OSError, RuntimeError, ValueError, TimeoutError) as exc:
            asked.error = str(exc)[:200]
            self.errors.append(asked.error)
        asked.answered = time.perf_counter()
        try:
            if asked.content is not None:
                self._on_response(asked, keys)
        finally:
            self.job = None  # on_exit: after the answer's callback (a request it makes waits 100 ms)

    def _on_response(self, asked: Asked, keys: list[str]) -> None:
        assert asked.content is not None
        for key in keys:
            self._cache_put(key, asked.content)
        d = self.docs[self.current]
        if asked.version >= 0:  # the answer to the request for a keystroke's text, whatever it shows
            self._note_answer(asked)
        if self.hint is None or not self.hint[1]:
            self.try_hint("answer")
        if asked.version == d.version and asked.doc == self.current:
            lines, y, x = d.position()
            self._note_shown(d, render(asked.content, lines, y, x)[1], "answer")

    def _note_answer(self, asked: Asked) -> None:
        for item in reversed(self.typed):
            if item.key.doc == asked.doc and item.version == asked.version:
                if not item.answered:
                    moved = self.docs[asked.doc].version != asked.version or self.current != asked.doc
                    if moved:
                        item.answered, item.shown = asked.answered, bool(asked.content and asked.content.strip())
                        item.via = "stale" if item.shown else "empty"
                break

    # --- the ring of extra context ---
    def pick_chunk(self, text: list[str], d: _Doc, evict: bool) -> None:
        """Queue a chunk of ``text`` for the extra context (``s:pick_chunk``)."""
        if len(text) < 3:
            return
        if len(text) + 1 < RING_CHUNK_SIZE:
            chunk = list(text)
        else:
            l0 = self.rng.randint(0, max(0, len(text) - RING_CHUNK_SIZE // 2))
            chunk = text[l0 : min(l0 + RING_CHUNK_SIZE // 2, len(text)) + 1]
        if any(c.lines == chunk for c in self.ring + self.queued):
            return
        for pool in (self.queued, self.ring):
            for i in range(len(pool) - 1, -1, -1):
                if chunk_sim(pool[i].lines, chunk) > 0.9:
                    if not evict:
                        return
                    del pool[i]
        if len(self.queued) == RING_QUEUE:
            self.queued.pop(0)
        self.queued.append(Chunk(chunk, Path(d.source.path).name, time.time()))

    def _extra(self) -> list[dict[str, Any]]:
        return [{"text": c.text, "time": c.at, "filename": c.filename} for c in self.ring]

    async def ring_loop(self) -> None:
        """Every second, once the cursor has rested 3 s: one queued chunk joins the extra context,
        and the server evaluates the new extra context (``s:ring_update``)."""
        while True:
            await asyncio.sleep(RING_UPDATE_S)
            if time.perf_counter() - self.last_move < RING_IDLE_S or not self.queued:
                continue
            if len(self.ring) == RING_N_CHUNKS:
                self.ring.pop(0)
            self.ring.append(self.queued.pop(0))
            body = {
                "input_prefix": "",
                "input_suffix": "",
                "input_extra": self._extra(),
                "prompt": "",
                "n_predict": 0,
                "temperature": 0.0,
                "stream": False,
                "samplers": [],
                "cache_prompt": True,
                "t_max_prompt_ms": 1,
                "t_max_predict_ms": 1,
                "response_fields": [""],
            }
            self.ring_requests += 1
            task = asyncio.ensure_future(post_json(self.url, "/infill", body))
            self._others.add(task)
            task.add_done_callback(self._others.discard)

    def start(self) -> None:
        """Start the ring's timer."""
        self._ring_task = asyncio.ensure_future(self.ring_loop())

    async def close(self) -> None:
        """Stop the timers and drop what is in flight."""
        if self.timer is not None:
            self.timer.cancel()
        for task in [self._ring_task, self.job, *self._others]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


async def replay(client: LlamaVim, keys: list[Keystroke], grace: float) -> list[float]:
    """Warm each document up (a manual request at its typing point, waited for), then type; returns
    the warm-up times. Answers are collected on the keystrokes (``client.typed``)."""
    client.start()
    warm: list[float] = []
    for doc in range(len(client.docs)):
        t = time.perf_counter()
        before = len(client.asked)
        client.trigger(doc)
        while client.job is not None or client.timer is not None:  # with the follow-up after the hint
            await asyncio.sleep(0.01)
            if time.perf_counter() - t > 600:
                break
        first = client.asked[before] if len(client.asked) > before else None
        if first is not None and first.error:  # e.g. HTTP 501: a model without fill-in-the-middle tokens
            await client.close()
            raise RuntimeError(f"llama.vim peer: /infill failed: {first.error}")
        warm.append(((first.answered if first else time.perf_counter()) - t) * 1000)
    progress = Progress("latency llama.vim", len(keys))
    t0 = time.perf_counter() + 0.2
    for i, k in enumerate(keys):
        delay = t0 + k.at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        client.type(k)
        progress.update(i + 1, f"{sum(1 for x in client.typed if x.answered)} answered")
    last, done = time.perf_counter(), -1
    while client.job is not None or client.timer is not None:  # until quiet, or no answer for `grace` s
        now_done = sum(1 for a in client.asked if a.answered)
        if now_done != done:
            done, last = now_done, time.perf_counter()
        elif time.perf_counter() - last > grace:
            break
        await asyncio.sleep(0.05)
    progress.close()
    await client.close()
    return warm


def analyse(client: LlamaVim) -> dict[str, Any]:
    """One round's samples and counts, shaped as ``latency_analysis.analyse``'s for ``latency_analysis.summarise``."""
    rtt_all: list[float] = []
    rtt_last: list[float] = []
    to_suggestion: list[float] = []
    counts = dict.fromkeys(("answered", "unanswered", "throttled", "shown", "stale", "burst_ends_with_suggestion"), 0)
    outcomes: dict[str, int] = {}
    for item in client.typed:
        if not item.answered:
            counts["unanswered" if item.key.pause_after or item.asked else "throttled"] += 1
            continue
        ms = (item.answered - item.typed_at) * 1000
        counts["answered"] += 1
        outcomes[item.via] = outcomes.get(item.via, 0) + 1
        rtt_all.append(ms)
        counts["stale" if item.via == "stale" else "shown"] += int(item.shown)
        if item.key.pause_after:
            rtt_last.append(ms)
            if item.shown and item.via != "stale":
                counts["burst_ends_with_suggestion"] += 1
                to_suggestion.append(ms)
    runs = [a for a in client.asked if a.content is not None]
    docs = len(client.docs)
    first: list[float | None] = []
    for d in range(docs):
        mine = [t for t in client.typed if t.key.doc == d]
        shown = [t.answered for t in mine if t.answered and t.shown and t.via != "stale"]
        first.append(round((min(shown) - mine[0].typed_at) * 1000, 1) if mine and shown else None)
    return {
        "counts": {
            "keystrokes": len(client.typed),
            "burst_ends": sum(1 for t in client.typed if t.key.pause_after),
            **counts,
            "errors": len(client.errors),
            "model_runs": len(client.asked),
            "speculative_requests": sum(1 for a in client.asked if a.version < 0),
            "extra_context_requests": client.ring_requests,
            "burst_ends_with_suggestion_after_refresh": len(to_suggestion),
        },
        "lists": {
            "rtt_all": rtt_all,
            "rtt_last": rtt_last,
            "to_suggestion": to_suggestion,
            "to_whole_line": [],
            "to_any": list(to_suggestion),
            "overhead": [],
            "pipeline": [],
            "evaluated": [float(a.prompt_n) for a in runs],
            "generated": [float(a.predicted_n) for a in runs],
        },
        "outcomes": outcomes,
        "over_bound": {"checked": 0, "over": 0, "examples": []},
        "error_examples": sorted(set(client.errors))[:5],
        "stale_examples": [],
        "cold_first_suggestion_ms": first,
    }


async def run_round(
    model: str, sources: list[Source], keys: list[Keystroke], grace: float, threads: int, workdir: Path
) -> tuple[dict[str, Any], list[float]]:
    """One replay against a fresh ``llama-server``: the round's raw figures and the warm-up times."""
    workdir.mkdir(parents=True, exist_ok=True)
    proc, url = await start_llama_server(model, workdir / "llama-server.log", free_port(), threads=threads)
    try:
        client = LlamaVim(url, sources)
        warm = await replay(client, keys, grace)
    finally:
        await stop_process(proc)
    return analyse(client), warm
