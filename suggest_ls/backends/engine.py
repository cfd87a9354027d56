"""The engine: one thread owns llama.cpp and decodes all jobs together in batches.

Each parallel slot is one llama.cpp sequence. A job is placed in the slot that already holds
the longest prefix of its prompt (the same document first), and only the tokens after that prefix
are evaluated, less the runs of them the slot holds further on (e.g. once the prompt's code window
has dropped its first lines): those are moved down into place (cache reuse by shifting). Every
active job advances by one token per ``llama_decode`` call. Prompts are evaluated in chunks of at
most ``prefill_chunk`` tokens a step (shortest first), so a long prompt never holds up the others
for long. Cancel flags are checked between decode steps. With
``draft_tokens`` > 0 a job generating alone also feeds tokens drafted from its own prompt (the
tokens that followed the last earlier occurrence of its latest n-gram) and keeps those the model
agrees with.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from suggest_ls.backends.contract import GenRequest, GenResult, LoadInfo, ModelInfo, should_stop
from suggest_ls.backends.device import gpu_memory, plan_offload
from suggest_ls.backends.gguf import GGUFError, block_count
from suggest_ls.backends.models import ModelError, check_gguf, load_failure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """What the engine needs to load a model."""

    model_path: Path
    context_size: int = 4096
    parallel: int = 4
    threads: int = 0
    gpu_layers: int = -1
    batch_window_ms: int = 30
    n_batch: int = 512
    prefill_chunk: int = 128
    # Idle jobs (``priority < 0``: warming a document's prompt before it is asked for) evaluate at
    # most this many prompt tokens a step, so a live request arriving meanwhile waits one short step.
    idle_chunk: int = 16
    draft_tokens: int = 0
    draft_ngram: int = 3
    # Cache reuse by shifting: runs of at least this many prompt tokens found further on in the
    # slot's cache are moved down to their new positions instead of evaluated again (0: off).
    reuse_min: int = 32
    # Measure the prompt evaluation speed at load (one 64-token chunk, then dropped): the completer
    # sizes its prompt window from it.
    probe_prefill: bool = True


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


def cpu_has_amx(system_info: str) -> bool:
    """Whether llama.cpp's CPU backend reports AMX (``AMX_INT8 = 1`` in llama_print_system_info)."""
    return "AMX_INT8 = 1" in system_info


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class ThreadTuner:
    """Keeps the CPU thread count that decodes small steps fastest right now.

    On a CPU shared with other work, llama.cpp's threads spin waiting for each other when one
    of them is descheduled, and a step on every core can be several times slower than on half
    of them. The tuner times steps of a few tokens, now and then tries the other count for a
    few steps, keeps the faster, and tries less often while the verdict holds.
    """

    SMALL = 4

    def __init__(self, cores: int, interval: int = 64, trial: int = 3, max_interval: int = 1024) -> None:
        self.choices = sorted({max(1, cores // 2), max(1, cores)})
        self.current = self.choices[-1]
        self.samples: dict[int, deque[float]] = {c: deque(maxlen=9) for c in self.choices}
        self.base_interval = self.interval = interval
        self.max_interval = max_interval
        self.trial = trial
        self.countdown = min(8, interval)  # a first look early, then every ``interval`` small steps
        self.trying: int | None = None
        self.trial_left = 0

    def adopt(self, other: ThreadTuner) -> None:
        """Start from another tuner's verdict (threads per step, how often to try the other count)."""
        if other.choices != self.choices:
            return
        self.current = other.current
        self.interval = other.interval
        self.countdown = other.countdown if other.trying is None else other.interval
        self.trying = None

    def pick(self, n_tokens: int) -> int:
        """The thread count for a step of ``n_tokens``."""
        if len(self.choices) == 1 or n_tokens > self.SMALL:
            return self.current
        if self.trying is None:
            self.countdown -= 1
            if self.countdown <= 0:
                self.trying = next(c for c in self.choices if c != self.current)
                self.trial_left = self.trial
        return self.trying if self.trying is not None else self.current

    def record(self, threads: int, n_tokens: int, seconds: float) -> None:
        """Learn from a finished step."""
        if len(self.choices) == 1 or n_tokens > self.SMALL:
            return
        self.samples[threads].append(seconds / n_tokens**0.5)
        if self.trying is None or threads != self.trying:
            return
        self.trial_left -= 1
        here_now = sorted(self.samples[self.current])
        if here_now and self.samples[threads][-1] > 2 * here_now[len(here_now) // 2]:
            self.trial_left = 0  # clearly slower: one step of evidence is enough, spare the rest
            self.samples[threads].extend([self.samples[threads][-1]] * (self.trial - 1))
        if self.trial_left > 0:
            return
        tried = sorted(list(self.samples[threads])[-self.trial :])[self.trial // 2]
        here = sorted(self.samples[self.current])
        if here and tried < 0.9 * here[len(here) // 2]:
            log.info(
                "decoding with %d threads instead of %d (%.1f vs %.1f ms a step)",
                threads,
                self.current,
                tried * 1000,
                here[len(here) // 2] * 1000,
            )
            self.current = threads
            self.interval = self.base_interval
        else:
            self.interval = min(self.max_interval, self.interval * 2)
        self.trying = None
        self.countdown = self.interval


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


class Engine:
    """Owns the model in one thread; jobs go in with ``submit`` and come out through callbacks."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.ready: Future[LoadInfo] = Future()
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._stop = False
        self._expected = 0
        self._thread = threading.Thread(target=self._run, name="suggest-ls-engine", daemon=True)
        self.stats = {"decode_calls": 0, "generated": 0, "evaluated": 0, "decode_s": 0.0, "errors": 0, "shifted": 0}
        self._recent: deque[tuple[float, int, float]] = deque(maxlen=512)
        # At most this many threads per step while set (0: no cap). Set from other threads, e.g. while a
        # second model loads beside this one, so the two do not oversubscribe the cores (model swap).
        self.thread_cap = 0

    # ----- public, any thread -----
    def start(self) -> Engine:
        """Start the engine thread; ``ready`` resolves once the model is loaded."""
        self._thread.start()
        return self

    def submit(self, req: GenRequest, done: Callable[[GenResult], None]) -> Job:
        """Queue a request; ``done`` is called exactly once from the engine thread."""
        job = Job(req, done)
        with self._cond:
            if self._stop:
                job.finished = True
                done(GenResult("", "error", "engine stopped"))
                return job
            self._pending.append(job)
            self._cond.notify()
        return job

    def expect(self, delta: int) -> None:
        """Tell the engine how many requests are about to arrive (waiting out their debounce)."""
        with self._cond:
            self._expected = max(0, self._expected + delta)
            self._cond.notify()

    def adopt_thread_choice(self, other: object) -> None:
        """Start this engine's thread tuner from another engine's verdict (both share the same cores)."""
        theirs = getattr(other, "_tuner", None) if isinstance(other, Engine) else None
        if self._tuner is not None and theirs is not None:
            self._tuner.adopt(theirs)

    def tokens_per_second(self, window_s: float = 10.0) -> float:
        """Generated tokens per second of decode time over the last ``window_s`` seconds."""
        now = time.perf_counter()
        recent = [(n, dt) for t, n, dt in list(self._recent) if now - t <= window_s]
        busy = sum(dt for _, dt in recent)
        return sum(n for n, _ in recent) / busy if busy > 0 else 0.0

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread, answer every job still queued, and free the model."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # ----- engine thread -----
    def _run(self) -> None:
        try:
            info = self._load()
        except Exception as exc:
            log.error("model load failed: %s", exc)
            self.ready.set_exception(exc if isinstance(exc, ModelError) else ModelError(str(exc)))
            self._fail_all("model not loaded")
            return
        self.ready.set_result(info)
        try:
            self._loop()
        except Exception:
            log.exception("engine thread crashed")
        finally:
            self._fail_all("engine stopped")
            self._free()

    def _fail_all(self, why: str) -> None:
        with self._cond:
            self._stop = True
            jobs = list(self._pending)
            self._pending.clear()
        jobs += [s.job for s in getattr(self, "_slots", []) if s.job]
        for job in jobs:
            self._finish(job, "error", why)

    def _load(self) -> LoadInfo:
        import llama_cpp as L
        from llama_cpp._logger import set_verbose

        set_verbose(log.isEnabledFor(logging.DEBUG))
        cfg = self.config
        check_gguf(cfg.model_path)
        t0 = time.perf_counter()
        L.llama_backend_init()
        path = str(cfg.model_path).encode()
        mparams = L.llama_model_default_params()
        try:
            n_layers = block_count(cfg.model_path)
        except GGUFError as exc:
            raise ModelError(f"{exc}: {cfg.model_path}") from exc
        size = cfg.model_path.stat().st_size
        kv_guess = 2 * cfg.context_size * cfg.parallel * n_layers * 1024
        plan = plan_offload(
            cfg.gpu_layers, n_layers, size, kv_guess, bool(L.llama_supports_gpu_offload()), gpu_memory()
        )
        log.info("offload: %s", plan.reason)
        mparams.n_gpu_layers = plan.layers
        if cpu_has_amx(L.llama_print_system_info().decode(errors="replace")):
            # llama.cpp's AMX matrix kernels (an extra CPU buffer type, picked on CPUs with AMX) crash
            # inside llama_decode with this build; without extra buffer types the AVX-512 kernels run.
            mparams.use_extra_bufts = False
            log.info("CPU has AMX: llama.cpp's AMX kernels are turned off (they crash in decoding)")
        model = L.llama_model_load_from_file(path, mparams)
        if not model and plan.layers:
            log.warning("GPU load failed; retrying on the CPU")
            mparams.n_gpu_layers = 0
            plan = plan_offload(0, n_layers, size, kv_guess, False, None)
            model = L.llama_model_load_from_file(path, mparams)
        if not model:
            raise ModelError(load_failure(cfg.model_path))
        self._model = model
        threads = cfg.threads or os.cpu_count() or 1
        cparams = L.llama_context_default_params()
        cparams.n_ctx = cfg.context_size * cfg.parallel
        cparams.n_batch = cfg.n_batch
        cparams.n_ubatch = cfg.n_batch
        cparams.n_seq_max = cfg.parallel
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.swa_full = True
        cparams.kv_unified = False
        ctx = L.llama_init_from_model(model, cparams)
        if not ctx:
            L.llama_model_free(model)
            raise ModelError("llama.cpp could not create a context (out of memory?)")
        self._ctx = ctx
        self._L: Any = L
        self._vocab = L.llama_model_get_vocab(model)
        self._mem = L.llama_get_memory(ctx)
        # Moving cached tokens to other positions needs a cache that can re-rotate its keys (for
        # Gemma 3's sliding-window layers only with the full-size SWA cache set above).
        self._can_shift = bool(L.llama_memory_can_shift(self._mem)) if hasattr(L, "llama_memory_can_shift") else False
        if cfg.reuse_min > 0 and not self._can_shift:
            log.info("this model's cache cannot shift: no cache reuse beyond the common prefix")
        self._n_swa = int(L.llama_model_n_swa(model)) if hasattr(L, "llama_model_n_swa") else 0
        self._n_vocab = L.llama_vocab_n_tokens(self._vocab)
        self._softmax_buf = np.empty(self._n_vocab, dtype=np.float32)  # the engine thread's scratch
        self._n_ctx_slot = L.llama_n_ctx_seq(ctx) if hasattr(L, "llama_n_ctx_seq") else cfg.context_size
        self._batch = L.llama_batch_init(cfg.n_batch, 0, 1)
        self._tuner = ThreadTuner(threads) if not cfg.threads else None
        self._threads = threads
        self._slots = [Slot(i) for i in range(cfg.parallel)]
        self._add_bos = bool(L.llama_vocab_get_add_bos(self._vocab))
        self._bos = L.llama_vocab_bos(self._vocab)

        def token_text(tok: int) -> str:
            if tok < 0:
                return ""
            raw = L.llama_vocab_get_text(self._vocab, tok)
            return raw.decode("utf-8", errors="replace") if raw else ""

        model_info = ModelInfo(
            name=self._meta("general.name"),
            architecture=self._meta("general.architecture"),
            fim_prefix=token_text(L.llama_vocab_fim_pre(self._vocab)),
            fim_suffix=token_text(L.llama_vocab_fim_suf(self._vocab)),
            fim_middle=token_text(L.llama_vocab_fim_mid(self._vocab)),
            eos=token_text(L.llama_vocab_eos(self._vocab)),
        )
        prefill_tps = self._probe_prefill() if cfg.probe_prefill else 0.0
        desc = ctypes.create_string_buffer(256)
        L.llama_model_desc(model, desc, 256)
        device = "CPU"
        if plan.layers:
            mem = gpu_memory()
            device = f"CUDA ({mem.name})" if mem else "GPU"
        info = LoadInfo(
            model=model_info,
            path=str(cfg.model_path),
            size_bytes=size,
            n_layers=n_layers,
            gpu_layers=min(plan.layers, n_layers + 1),
            device=device,
            offload_reason=plan.reason,
            load_ms=(time.perf_counter() - t0) * 1000,
            n_ctx=self._n_ctx_slot,
            parallel=cfg.parallel,
            threads=threads,
            quantization=desc.value.decode(errors="replace"),
            prefill_tps=prefill_tps,
        )
        log.info(
            "loaded %s (%s) in %.0f ms on %s, %d/%d layers offloaded; prompt evaluation %.0f tokens/s",
            model_info.name or cfg.model_path.name,
            info.quantization,
            info.load_ms,
            device,
            info.gpu_layers,
            n_layers + 1,
            prefill_tps,
        )
        return info

    PROBE_TOKENS = 64

    def _probe_prefill(self) -> float:
        """Prompt tokens per second: one chunk of code evaluated in sequence 0, then removed."""
        L = self._L
        tokens = self.tokenize("def f(x):\n    return x + 1\n" * 16, self._add_bos)[: self.PROBE_TOKENS]
        if len(tokens) < 8:
            return 0.0
        batch = self._batch
        rc, dt = 0, 0.0
        for run in (tokens[:4], tokens):  # the first touches the weights (memory-mapped), untimed
            for i, tok in enumerate(run):
                self._put(batch, i, tok, i, 0, i == len(run) - 1)
            batch.n_tokens = len(run)
            t0 = time.perf_counter()
            rc = L.llama_decode(self._ctx, batch)
            dt = time.perf_counter() - t0
            L.llama_memory_seq_rm(self._mem, 0, 0, -1)
            if rc != 0:
                return 0.0
        return len(tokens) / dt if dt > 0 else 0.0

    def _meta(self, key: str) -> str:
        buf = ctypes.create_string_buffer(512)
        n = self._L.llama_model_meta_val_str(self._model, key.encode(), buf, 512)
        return buf.value.decode("utf-8", errors="replace") if n >= 0 else ""

    def _free(self) -> None:
        L = getattr(self, "_L", None)
        if L is None:
            return
        L.llama_batch_free(self._batch)
        L.llama_free(self._ctx)
        L.llama_model_free(self._model)
        self._L = None

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        """Tokenize with special tokens parsed (FIM markers are tokens)."""
        L = self._L
        data = text.encode("utf-8", errors="replace")
        cap = len(data) + 8
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, True)
        if n < 0:
            cap = -n
            buf = (L.llama_token * cap)()
            n = L.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, True)
        return list(buf[:n])

    def _piece(self, tok: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._L.llama_token_to_piece(self._vocab, tok, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._L.llama_token_to_piece(self._vocab, tok, buf, -n, 0, False)
        return buf.raw[:n]

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                self._reap_cancelled()
                active = any(s.job for s in self._slots)
                if not active and not self._pending:
                    self._cond.wait(0.5)
                    continue
                if not active and self._pending and self._expected > 0 and self.config.batch_window_ms:
                    age = time.perf_counter() - self._pending[0].submitted
                    wait = self.config.batch_window_ms / 1000 - age
                    if wait > 0 and len(self._pending) < len(self._slots):
                        self._cond.wait(wait)
                        continue
                self._admit()
            if any(s.job for s in self._slots):
                try:
                    self._step()
                except Exception:  # a fault inside one step fails its jobs, not the engine
                    log.exception("decode step failed")
                    self._recover(-1)

    def _admit(self) -> None:
        """Move pending jobs into free slots (called with the lock held)."""
        keep: deque[Job] = deque()
        pending = sorted(self._pending, key=lambda j: -j.req.priority)
        self._pending.clear()
        for job in pending:
            if job.cancel.is_set():
                self._finish(job, "cancelled")
                continue
            if not is_idle(job):
                self._yield_idle(job)
            free = [s for s in self._slots if s.job is None]
            if not free:
                keep.append(job)
                continue
            try:
                self._place(job, free)
            except Exception as exc:
                log.exception("could not start a job")
                self._finish(job, "error", str(exc))
        self._pending.extend(keep)

    def _yield_idle(self, live: Job) -> None:
        """Stop idle jobs a live job needs out of the way: its own document's (that slot holds its
        prompt) and, when no slot is free, the oldest idle one. What they evaluated stays cached."""
        idle = [s for s in self._slots if is_idle(s.job)]
        taken = [s for s in idle if s.key == live.req.key]
        if not taken and idle and all(s.job is not None for s in self._slots):
            taken = idle[:1]
        for slot in taken:
            job = slot.job
            assert job is not None
            slot.job = None
            self._finish(job, "cancelled")

    def _place(self, job: Job, free: list[Slot]) -> None:
        req = job.req
        tokens = self.tokenize(req.prompt, self._add_bos)
        scored_tail = -1  # how many of the prompt's last tokens are scored
        if req.score_from >= 0:
            head = self.tokenize(req.prompt[: req.score_from], self._add_bos)
            scored_tail = len(tokens) - max(1, _common_prefix(head, tokens))
        # the prompt keeps at least half the slot's context, whatever the request asks to generate
        job.budget = max(0, min(req.max_tokens, self._n_ctx_slot // 2))
        limit = self._n_ctx_slot - job.budget - 1
        if len(tokens) > limit:
            head = [self._bos] if self._add_bos and tokens and tokens[0] == self._bos else []
            tokens = head + tokens[len(tokens) - (limit - len(head)) :]
        if not tokens:
            tokens = [self._bos]
        slot = pick_slot(free, req.key, tokens)
        end = len(tokens) - 1  # at least the last token is evaluated: its logits give the first token
        if scored_tail >= 0:
            job.score_start = max(1, len(tokens) - scored_tail)
            end = min(end, job.score_start - 1)  # the logits that predict the first scored token
        n = min(_common_prefix(slot.tokens, tokens), end)
        if n < len(slot.tokens) and self._can_shift and self.config.reuse_min > 0:
            job.shifted = self._reuse_shifted(slot, tokens, n, end)
            n = len(slot.tokens)
        if n > 0 and self._n_swa > 0 and not self._window_kept(slot.seq, n):
            n = job.shifted = 0
        self.stats["shifted"] += job.shifted
        if n < len(slot.tokens):
            self._L.llama_memory_seq_rm(self._mem, slot.seq, n, -1)
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

    def _window_kept(self, seq: int, n: int) -> bool:
        """Whether the sliding-window layers still hold what a token at position ``n`` attends to.

        Their cache holds the positions from its minimum on (the other layers' cache holds them
        all): llama.cpp reuses the cells of positions that fell out of the window, which after a
        shift can be the head of the prompt. A token at ``n`` attends those after ``n - n_swa``.
        """
        low = self._L.llama_memory_seq_pos_min(self._mem, seq)
        return 0 <= low <= max(0, n - self._n_swa + 1)

    def _reuse_shifted(self, slot: Slot, tokens: list[int], n: int, end: int) -> int:
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
        L, mem, seq = self._L, self._mem, slot.seq
        cache = slot.tokens
        least = max(1, self.config.reuse_min)
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

    def _reap_cancelled(self) -> None:
        for slot in self._slots:
            job = slot.job
            if job and job.cancel.is_set():
                slot.job = None
                self._finish(job, "cancelled")

    def _step(self) -> None:
        """One ``llama_decode``: a token (plus drafts) per generating job, then prompt chunks."""
        L = self._L
        batch = self._batch
        cap = self.config.n_batch
        n = 0
        outputs: list[tuple[Slot, int, list[int]]] = []  # slot, index of its first logits, drafts fed
        # Drafts ride along only when one job generates: on a CPU a step of a few more tokens costs
        # little next to its weight reads, but several jobs already fill the step.
        live = any(s.job and not is_idle(s.job) for s in self._slots)
        runnable = [s for s in self._slots if s.job and not (live and is_idle(s.job))]
        lone = sum(1 for s in runnable if s.job and not s.job.todo and s.job.next_token >= 0) == 1
        for slot in runnable:
            job = slot.job
            if job and not job.todo and job.next_token >= 0:
                drafts = self._drafts(job, cap - n - 1) if lone else []
                fed = [job.next_token, *drafts]
                for tok in fed:
                    self._put(batch, n, tok, len(slot.tokens), slot.seq, True)
                    slot.tokens.append(tok)
                    n += 1
                outputs.append((slot, n - len(fed), drafts))
                job.evaluated += len(fed)
                job.drafted += len(drafts)
                job.next_token = -1
        scoring: list[tuple[Job, int, int]] = []  # job, batch index, the token its logits predict
        budget = min(cap - n, max(1, self.config.prefill_chunk if live else self.config.idle_chunk))
        prefilling = sorted((s for s in runnable if s.job and s.job.todo), key=lambda s: len(s.job.todo))  # type: ignore[union-attr]
        for slot in prefilling:
            job = slot.job
            assert job is not None
            take = min(len(job.todo), budget)
            if take <= 0:
                break
            chunk, job.todo = job.todo[:take], job.todo[take:]
            for i, tok in enumerate(chunk):
                last = not job.todo and i == take - 1
                at = len(slot.tokens)
                scored = job.score_start >= 0 and job.score_start <= at + 1 < len(job.tokens)
                self._put(batch, n, tok, at, slot.seq, last or scored)
                if scored:
                    scoring.append((job, n, job.tokens[at + 1]))
                slot.tokens.append(tok)
                if last:
                    outputs.append((slot, n, []))
                n += 1
            job.evaluated += take
            budget -= take
        if n == 0:
            return
        batch.n_tokens = n
        threads = self._tuner.pick(n) if self._tuner else (self.config.threads or self._threads)
        capped = 0 < self.thread_cap < threads
        if capped:
            threads = self.thread_cap
        if threads != self._threads:
            L.llama_set_n_threads(self._ctx, threads, threads)
            self._threads = threads
            self.stats["threads"] = threads
        t0 = time.perf_counter()
        rc = L.llama_decode(self._ctx, batch)
        dt = time.perf_counter() - t0
        if self._tuner and not capped:
            self._tuner.record(threads, n, dt)
        self.stats["decode_calls"] += 1
        self.stats["decode_s"] += dt
        self.stats["evaluated"] += n
        if rc != 0:
            self._recover(rc)
            return
        now = time.perf_counter()
        made = 0
        for job, index, target in scoring:
            job.score += self._logprob(index, target)
            job.scored += 1
        for slot in self._slots:
            if slot.job:
                slot.job.steps += 1
        for slot, index, drafts in outputs:
            made += self._advance(slot, index, drafts, now)
        self.stats["generated"] += made
        self._recent.append((now, made, dt))

    def _drafts(self, job: Job, room: int) -> list[int]:
        """Tokens to verify after the job's next token, looked up in its own prompt and output."""
        cfg = self.config
        k = min(cfg.draft_tokens, room, job.budget - len(job.generated) - 1)
        if k <= 0:
            return []
        if job.drafted >= 4 * cfg.draft_tokens and job.accepted * 2 < job.drafted:
            return []  # this job's drafts keep failing: plain decoding is cheaper
        return find_draft(job.tokens + job.generated, cfg.draft_ngram, k)

    def _advance(self, slot: Slot, index: int, drafts: list[int], now: float) -> int:
        """Sample the job's next tokens from the logits at ``index``..; keep the drafts that match."""
        L = self._L
        job = slot.job
        assert job is not None
        base = len(slot.tokens) - len(drafts)  # KV length up to and including the token fed first
        if job.req.max_tokens <= 0:  # scoring only
            slot.job = None
            self._finish(job, "done")
            return 0
        made = 0
        accepted = 0
        finished = False
        for k in range(len(drafts) + 1):
            tok, prob = self._sample(job, index + k)
            made += 1
            job.sampled += 1
            job.logprob += math.log(max(prob, 1e-30))
            job.min_prob = min(job.min_prob, prob)
            if job.req.alternatives and not job.text().strip():
                job.alternatives = self._alternatives(job, index + k, tok, prob)
            if not job.generated:
                job.first_token = now
                job.first_prob = prob
            if L.llama_vocab_is_eog(self._vocab, tok):
                finished = True
                break
            job.generated.append(tok)
            job.pieces += self._piece(tok)
            if should_stop(job.text(), job.req.rule):
                finished = True
                break
            if len(job.generated) >= job.budget:
                finished = job.capped = True
                break
            if (
                job.req.budget_ms
                and (now - job.first_token) * 1000 >= job.req.budget_ms
                and "\n" in job.text().lstrip()  # never before the first line is complete
            ):
                finished = job.truncated = True
                break
            if k < len(drafts) and tok == drafts[k]:
                accepted += 1  # already in the KV cache: its logits are the next row
                continue
            job.next_token = tok
            break
        job.accepted += accepted
        keep = base + accepted
        if keep < len(slot.tokens):
            self._L.llama_memory_seq_rm(self._mem, slot.seq, keep, -1)
            del slot.tokens[keep:]
        if finished:
            slot.job = None
            self._finish(job, "done")
        return made

    @staticmethod
    def _put(batch: object, i: int, tok: int, pos: int, seq: int, logits: bool) -> None:
        b = batch  # llama_batch
        b.token[i] = tok  # type: ignore[attr-defined]
        b.pos[i] = pos  # type: ignore[attr-defined]
        b.n_seq_id[i] = 1  # type: ignore[attr-defined]
        b.seq_id[i][0] = seq  # type: ignore[attr-defined]
        b.logits[i] = 1 if logits else 0  # type: ignore[attr-defined]

    def _sample(self, job: Job, index: int) -> tuple[int, float]:
        ptr = self._L.llama_get_logits_ith(self._ctx, index)
        logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))
        temp = job.req.temperature
        if temp <= 0 or job.rng is None:
            tok = int(np.argmax(logits))
            m = float(logits[tok])
        else:
            # Top-40 with temperature, looked for only among the logits within 20·T of the best (the
            # others weigh below e^-20 each): a comparison over the vocabulary instead of a partition
            # of it, which took most of a step's Python time (and the GIL) on a 262k vocabulary.
            m = float(logits.max())
            top = np.flatnonzero(logits >= m - 20.0 * temp)
            if len(top) > 40:
                top = np.sort(top[np.argpartition(logits[top], -40)[-40:]])
            p = np.exp((logits[top] - m) / temp)
            tok = int(top[job.rng.choice(len(top), p=p / p.sum())])
        # the softmax over the whole vocabulary, in place in one buffer (0.56 ms for 262k logits here;
        # a small model's logits are flat: 85 % of them lie within 30 of the best)
        buf = self._softmax_buf
        np.subtract(logits, m, out=buf)
        np.exp(buf, out=buf)
        prob = float(buf[tok]) / float(buf.sum())
        return tok, prob

    def _alternatives(self, job: Job, index: int, taken: int, taken_prob: float) -> tuple[tuple[str, float], ...]:
        """The likeliest tokens other than ``taken`` at batch row ``index``, each after the text so far
        (``taken_prob``: the taken token's probability as the sampler computed it, or 0)."""
        ptr = self._L.llama_get_logits_ith(self._ctx, index)
        logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))
        m = float(logits.max())
        near = np.flatnonzero(logits >= m - 10.0)  # others weigh below e^-10 of the best each
        if taken_prob > 0:  # the softmax sum the sampler already paid for
            total = float(np.exp(float(logits[taken]) - m)) / taken_prob
        else:
            total = float(np.exp(logits - m).sum())
        lead = job.text()
        out: list[tuple[str, float]] = []
        for tok in near[np.argsort(-logits[near])]:
            if int(tok) == taken or self._L.llama_vocab_is_eog(self._vocab, int(tok)):
                continue
            piece = self._piece(int(tok)).decode("utf-8", errors="ignore")
            if not piece or "\n" in piece:
                continue
            out.append((lead + piece, float(np.exp(float(logits[tok]) - m)) / total))
            if len(out) >= job.req.alternatives:
                break
        return tuple(out)

    def _logprob(self, index: int, token: int) -> float:
        """Log-probability of ``token`` under the logits of batch row ``index``."""
        ptr = self._L.llama_get_logits_ith(self._ctx, index)
        logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))
        m = float(logits.max())
        return float(logits[token]) - m - float(np.log(np.exp(logits - m).sum()))

    def _recover(self, rc: int) -> None:
        """A failed decode: drop every active job with an error and clear the slots' caches."""
        self.stats["errors"] += 1
        log.error("llama_decode failed (rc=%d); clearing the cache and failing active jobs", rc)
        for slot in self._slots:
            self._L.llama_memory_seq_rm(self._mem, slot.seq, 0, -1)
            slot.tokens.clear()
            if slot.job:
                job, slot.job = slot.job, None
                self._finish(job, "error", f"decode failed (rc={rc})")

    def _finish(self, job: Job, outcome: str, error: str = "") -> None:
        if job.finished:
            return
        job.finished = True
        end = time.perf_counter()
        admitted = job.admitted or end
        result = GenResult(
            text=job.text() if outcome == "done" else "",
            outcome=outcome,
            error=error,
            prompt_tokens=len(job.tokens),
            cached_tokens=job.cached,
            evaluated_tokens=job.evaluated,
            generated_tokens=len(job.generated),
            queue_ms=(admitted - job.submitted) * 1000,
            ttft_ms=((job.first_token or end) - job.submitted) * 1000,
            total_ms=(end - job.submitted) * 1000,
            first_prob=job.first_prob,
            line_prob=math.exp(job.logprob / job.sampled) if job.sampled else 1.0,
            min_prob=job.min_prob,
            slot=job.slot,
            steps=job.steps,
            drafted_tokens=job.drafted,
            accepted_tokens=job.accepted,
            score=job.score,
            scored_tokens=job.scored,
            shifted_tokens=job.shifted,
            truncated=job.truncated,
            capped=job.capped,
            alternatives=job.alternatives,
        )
        try:
            job.done(result)
        except Exception:
            log.exception("job callback failed")
