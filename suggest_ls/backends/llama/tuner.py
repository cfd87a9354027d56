"""The thread tuner: how many CPU threads decode a small step fastest on a CPU shared with other work."""

from __future__ import annotations

import logging
from collections import deque

log = logging.getLogger(__name__)


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
