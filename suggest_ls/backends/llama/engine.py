"""The engine: one thread owns llama.cpp and decodes all jobs together in batches.

Each parallel slot is one llama.cpp sequence; a job is placed in the slot that already holds the
longest prefix of its prompt (``slots``). Every active job advances by one token per
``llama_decode`` call. Prompts are evaluated in chunks of at most ``prefill_chunk`` tokens a step
(shortest first), so a long prompt never holds up the others for long. Cancel flags are checked
between decode steps. With ``draft_tokens`` > 0 a job generating alone also feeds tokens drafted
from its own prompt and keeps those the model agrees with (``drafts``).

Only the engine thread calls llama.cpp: it loads the model (``loading``), places jobs, decodes,
samples (``sampling``) and frees the model; other threads only queue jobs, set cancel flags and
read figures.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from suggest_ls.backends.contract import Backend, BackendDefaults, GenRequest, GenResult, LoadInfo, should_stop
from suggest_ls.backends.llama import sampling
from suggest_ls.backends.llama.drafts import drafts_for
from suggest_ls.backends.llama.loading import EngineConfig, LoadedModel, load
from suggest_ls.backends.llama.slots import Job, Slot, idle_in_the_way, is_idle, place
from suggest_ls.backends.llama.tuner import ThreadTuner
from suggest_ls.backends.models import ModelError

log = logging.getLogger(__name__)


class Engine(BackendDefaults):
    """Owns the model in one thread; jobs go in with ``submit`` and come out through callbacks."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.ready: Future[LoadInfo] = Future()
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._stop = False
        self._expected = 0
        self._thread = threading.Thread(target=self._run, name="suggest-ls-engine", daemon=True)
        self.stats: dict[str, float] = {
            "decode_calls": 0,
            "generated": 0,
            "evaluated": 0,
            "decode_s": 0.0,
            "errors": 0,
            "shifted": 0,
        }
        self._recent: deque[tuple[float, int, float]] = deque(maxlen=512)
        self._thread_cap = 0  # see ``cap_threads``
        # the engine thread's, from the load on
        self._lm: LoadedModel
        self._slots: list[Slot] = []
        self._tuner: ThreadTuner | None = None

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

    def cap_threads(self, threads: int) -> None:
        """At most ``threads`` threads per step from now on (0: no cap), e.g. while a second model loads
        beside this one, so the two do not oversubscribe the cores (model swap)."""
        self._thread_cap = threads

    def adopt_thread_choice(self, other: Backend) -> None:
        """Start this engine's thread tuner from another engine's verdict (both share the same cores)."""
        theirs = other._tuner if isinstance(other, Engine) else None
        if self._tuner is not None and theirs is not None:
            self._tuner.adopt(theirs)

    def tokens_per_second(self, window_s: float = 10.0) -> float:
        """Generated tokens per second of decode time over the last ``window_s`` seconds."""
        now = time.perf_counter()
        recent = [(n, dt) for t, n, dt in list(self._recent) if now - t <= window_s]
        busy = sum(dt for _, dt in recent)
        return sum(n for n, _ in recent) / busy if busy > 0 else 0.0

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        """Tokenize with special tokens parsed (FIM markers are tokens)."""
        return self._lm.tokenize(text, add_bos)

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
            lm, info = load(self.config)
        except Exception as exc:
            log.error("model load failed: %s", exc)
            self.ready.set_exception(exc if isinstance(exc, ModelError) else ModelError(str(exc)))
            self._fail_all("model not loaded")
            return
        self._lm = lm
        self._slots = [Slot(i) for i in range(self.config.parallel)]
        self._tuner = ThreadTuner(lm.threads) if not self.config.threads else None
        self.ready.set_result(info)
        try:
            self._loop()
        except Exception:
            log.exception("engine thread crashed")
        finally:
            self._fail_all("engine stopped")
            lm.free()

    def _fail_all(self, why: str) -> None:
        with self._cond:
            self._stop = True
            jobs = list(self._pending)
            self._pending.clear()
        jobs += [s.job for s in self._slots if s.job]
        for job in jobs:
            self._finish(job, "error", why)

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
                for slot in idle_in_the_way(self._slots, job):  # what they evaluated stays cached
                    idle, slot.job = slot.job, None
                    assert idle is not None
                    self._finish(idle, "cancelled")
            free = [s for s in self._slots if s.job is None]
            if not free:
                keep.append(job)
                continue
            try:
                place(self._lm, job, free, self.config.reuse_min)
                self.stats["shifted"] += job.shifted
            except Exception as exc:
                log.exception("could not start a job")
                self._finish(job, "error", str(exc))
        self._pending.extend(keep)

    def _reap_cancelled(self) -> None:
        for slot in self._slots:
            job = slot.job
            if job and job.cancel.is_set():
                slot.job = None
                self._finish(job, "cancelled")

    def _step(self) -> None:
        """One ``llama_decode``: a token (plus drafts) per generating job, then prompt chunks."""
        outputs: list[tuple[Slot, int, list[int]]] = []  # slot, index of its first logits, drafts fed
        scoring: list[tuple[Job, int, int]] = []  # job, batch index, the token its logits predict
        live = any(s.job and not is_idle(s.job) for s in self._slots)
        runnable = [s for s in self._slots if s.job and not (live and is_idle(s.job))]
        n = self._feed_next_tokens(runnable, outputs)
        budget = min(self.config.n_batch - n, max(1, self.config.prefill_chunk if live else self.config.idle_chunk))
        n = self._feed_prompts(runnable, n, budget, outputs, scoring)
        if n == 0:
            return
        threads, capped = self._threads_for(n)
        t0 = time.perf_counter()
        rc = self._lm.decode(n)
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
            job.score += sampling.logprob(self._lm, index, target)
            job.scored += 1
        for slot in self._slots:
            if slot.job:
                slot.job.steps += 1
        for slot, index, drafts in outputs:
            made += self._advance(slot, index, drafts, now)
        self.stats["generated"] += made
        self._recent.append((now, made, dt))

    def _feed_next_tokens(self, runnable: list[Slot], outputs: list[tuple[Slot, int, list[int]]]) -> int:
        """Put each generating job's next token (and drafts) in the batch; returns the rows used."""
        # Drafts ride along only when one job generates: on a CPU a step of a few more tokens costs
        # little next to its weight reads, but several jobs already fill the step.
        lone = sum(1 for s in runnable if s.job and not s.job.todo and s.job.next_token >= 0) == 1
        n = 0
        for slot in runnable:
            job = slot.job
            if job and not job.todo and job.next_token >= 0:
                drafted = drafts_for(self.config, job, self.config.n_batch - n - 1) if lone else []
                fed = [job.next_token, *drafted]
                for tok in fed:
                    self._lm.put(n, tok, len(slot.tokens), slot.seq, True)
                    slot.tokens.append(tok)
                    n += 1
                outputs.append((slot, n - len(fed), drafted))
                job.evaluated += len(fed)
                job.drafted += len(drafted)
                job.next_token = -1
        return n

    def _feed_prompts(
        self,
        runnable: list[Slot],
        n: int,
        budget: int,
        outputs: list[tuple[Slot, int, list[int]]],
        scoring: list[tuple[Job, int, int]],
    ) -> int:
        """Put up to ``budget`` prompt tokens in the batch from row ``n`` on, shortest prompt first."""
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
                self._lm.put(n, tok, at, slot.seq, last or scored)
                if scored:
                    scoring.append((job, n, job.tokens[at + 1]))
                slot.tokens.append(tok)
                if last:
                    outputs.append((slot, n, []))
                n += 1
            job.evaluated += take
            budget -= take
        return n

    def _threads_for(self, n: int) -> tuple[int, bool]:
        """The thread count for a step of ``n`` tokens (set in llama.cpp), and whether the cap chose it."""
        lm = self._lm
        threads = self._tuner.pick(n) if self._tuner else (self.config.threads or lm.threads)
        capped = 0 < self._thread_cap < threads
        if capped:
            threads = self._thread_cap
        if threads != lm.threads:
            lm.set_threads(threads)
            self.stats["threads"] = threads
        return threads, capped

    def _advance(self, slot: Slot, index: int, drafts: list[int], now: float) -> int:
        """Sample the job's next tokens from the logits at ``index``..; keep the drafts that match."""
        lm = self._lm
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
            tok, prob = sampling.sample(lm, job, index + k)
            made += 1
            job.sampled += 1
            job.logprob += math.log(max(prob, 1e-30))
            job.min_prob = min(job.min_prob, prob)
            if job.req.alternatives and not job.text().strip():
                job.alternatives = sampling.alternatives(lm, job, index + k, tok, prob)
            if not job.generated:
                job.first_token = now
                job.first_prob = prob
            if lm.is_eog(tok):
                finished = True
                break
            job.generated.append(tok)
            job.pieces += lm.piece(tok)
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
            lm.drop(slot.seq, keep)
            del slot.tokens[keep:]
        if finished:
            slot.job = None
            self._finish(job, "done")
        return made

    def _recover(self, rc: int) -> None:
        """A failed decode: drop every active job with an error and clear the slots' caches."""
        self.stats["errors"] += 1
        log.error("llama_decode failed (rc=%d); clearing the cache and failing active jobs", rc)
        for slot in self._slots:
            self._lm.drop(slot.seq, 0)
            slot.tokens.clear()
            if slot.job:
                job, slot.job = slot.job, None
                self._finish(job, "error", f"decode failed (rc={rc})")

    def _finish(self, job: Job, outcome: str, error: str = "") -> None:
        if job.finished:
            return
        job.finished = True
        try:
            job.done(job.result(outcome, error))
        except Exception:
            log.exception("job callback failed")
