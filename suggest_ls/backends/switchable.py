"""Blue-green model swap: the completer holds one switchable backend; the loaded models come and go behind it.

A new backend is loaded beside the current one, checked with a smoke completion and warmed with
the latest prompt of each recently used document (so the first requests after the switch find
their prompts cached instead of evaluating them whole); ``switch`` then sends new jobs to it
while jobs already on the old one finish there (``drain``), after which the old one is closed.
The completer never sees a gap.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from suggest_ls.backends.contract import Backend, BackendDefaults, GenRequest, GenResult, Handle

log = logging.getLogger(__name__)
SMOKE_PROMPT = "def add(a, b):\n    return "
WARM_WITHIN_S = 300.0  # documents asked about this recently are warmed on a new backend
_REMEMBERED = 32  # documents whose latest prompt is kept for warming


class _Refused:
    """The handle of a job that was answered at once (no backend loaded)."""

    min_prob = 1.0

    def __init__(self) -> None:
        self.cancel = threading.Event()

    def text(self) -> str:
        """Nothing was generated."""
        return ""


class SwitchableBackend(BackendDefaults):
    """Forwards jobs to the current backend and counts what is still running on each one."""

    def __init__(self) -> None:
        self.current: Backend | None = None
        self.last_request: GenRequest | None = None
        self._recent: OrderedDict[str, tuple[float, GenRequest]] = OrderedDict()  # per document, oldest first
        self.last_used = time.monotonic()
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}
        self._expected = 0

    def submit(self, req: GenRequest, done: Callable[[GenResult], None]) -> Handle:
        """Send a job to the current backend; it finishes there even if a swap happens meanwhile."""
        self.last_used = time.monotonic()
        target = self.current
        if target is None:
            done(GenResult("", "error", "model not loaded"))
            return _Refused()
        if not req.key.startswith("__") and req.max_tokens > 0:  # a document's generation (not a scoring job)
            self.last_request = req
            self._recent[req.key] = (self.last_used, req)
            self._recent.move_to_end(req.key)
            while len(self._recent) > _REMEMBERED:
                self._recent.popitem(last=False)
        key = id(target)
        with self._lock:
            self._inflight[key] = self._inflight.get(key, 0) + 1

        def finished(result: GenResult) -> None:
            with self._lock:
                self._inflight[key] = max(0, self._inflight.get(key, 0) - 1)
            done(result)

        return target.submit(req, finished)

    def warm_requests(self, limit: int, within_s: float = WARM_WITHIN_S) -> list[GenRequest]:
        """The latest request of each document asked about in the last ``within_s`` seconds, most recent first."""
        now = time.monotonic()
        recent = [req for at, req in reversed(self._recent.values()) if now - at <= within_s]
        return recent[: max(0, limit)]

    def expect(self, delta: int) -> None:
        """Forward the 'requests about to arrive' hint, remembering the count for the next backend."""
        self._expected = max(0, self._expected + delta)
        if self.current is not None:
            self.current.expect(delta)

    def tokens_per_second(self, window_s: float = 10.0) -> float:
        """The current backend's generation speed (0 when none is loaded)."""
        return self.current.tokens_per_second(window_s) if self.current is not None else 0.0

    def scores(self) -> bool:
        """Whether the current backend can score a prompt's tail (reranking); in-process engines always can."""
        return self.current is not None and self.current.scores()

    def switch(self, new: Backend | None) -> Backend | None:
        """Make ``new`` the current backend and return the previous one (still finishing its jobs)."""
        carry_thread_choice(self.current, new)  # before any job can reach ``new``
        old, self.current = self.current, new
        if self._expected:
            if old is not None:
                old.expect(-self._expected)
            if new is not None:
                new.expect(self._expected)
        return old

    def inflight(self, backend: Backend) -> int:
        """Jobs submitted to ``backend`` and not yet answered."""
        with self._lock:
            return self._inflight.get(id(backend), 0)

    async def retire(self, old: Backend, timeout_s: float = 30.0) -> bool:
        """Wait for ``old``'s jobs to finish (up to ``timeout_s``), then close it; True if it drained."""
        deadline = time.monotonic() + timeout_s
        while self.inflight(old) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        drained = not self.inflight(old)
        if not drained:
            log.warning("closing the previous model with %d jobs still running", self.inflight(old))
        await asyncio.to_thread(old.close)
        with self._lock:
            self._inflight.pop(id(old), None)
        return drained


def carry_thread_choice(old: Backend | None, new: Backend | None) -> None:
    """Start ``new``'s thread tuner from ``old``'s verdict (threads per step, how often to try the other count).

    A fresh engine decodes on every core until its tuner has timed enough steps, which takes a
    few requests; on a CPU shared with other work a step on every core can take seconds (threads
    spinning for each other) where the serving engine had learned to use half of them. That made
    the first requests after a swap the longest gap of the swap. Both engines run on the same
    cores, so the verdict holds for the new one; its tuner keeps checking it as usual.
    """
    if old is not None and new is not None:
        new.adopt_thread_choice(old)  # a no-op for backends without threads of their own (remote ones)


async def run_job(backend: Backend, req: GenRequest, timeout_s: float = 60.0) -> GenResult:
    """Submit one job directly to ``backend`` and wait for its result."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[GenResult] = loop.create_future()

    def settle(result: GenResult) -> None:
        if not future.done():
            future.set_result(result)

    def done(result: GenResult) -> None:
        loop.call_soon_threadsafe(settle, result)

    handle = backend.submit(req, done)
    try:
        return await asyncio.wait_for(future, timeout_s)
    except (TimeoutError, asyncio.CancelledError):
        handle.cancel.set()
        raise


async def smoke(backend: Backend, prompt: str) -> GenResult:
    """Check a freshly loaded backend with a two-token completion."""
    try:
        return await run_job(backend, GenRequest(key="__smoke__", prompt=prompt, max_tokens=2, temperature=0.0))
    except TimeoutError as exc:
        return GenResult("", "error", f"smoke completion: {exc!r}")


async def warm_up(backend: Backend, proxy: SwitchableBackend, limit: int, timeout_s: float = 60.0) -> int:
    """Evaluate recent documents' latest prompts on ``backend`` before it serves; returns how many were warmed.

    One document at a time, the most recent first, so the one being typed in is ready soonest
    and the warm-up takes no more CPU at once than one request. The old backend keeps serving
    meanwhile; if the most recent document was typed in during the warm-up its newest prompt is
    evaluated once more at the end (mostly cached by then: only the changed tail is new).
    """
    warmed: dict[str, GenRequest] = {}
    for req in proxy.warm_requests(limit):
        if await _warm(backend, req, timeout_s):
            warmed[req.key] = req
    latest = proxy.last_request
    if latest is not None and latest.key in warmed and warmed[latest.key] is not latest:
        await _warm(backend, latest, timeout_s)
    return len(warmed)


async def _warm(backend: Backend, req: GenRequest, timeout_s: float) -> bool:
    job = GenRequest(key=req.key, prompt=req.prompt, max_tokens=1, temperature=0.0)
    try:
        result = await run_job(backend, job, timeout_s)
    except TimeoutError:
        log.warning("warming %s on the new model took over %.0f s; skipped", req.key, timeout_s)
        return False
    return result.outcome == "done"
