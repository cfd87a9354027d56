"""Rate-limited log lines for what a client can repeat without end (garbage input, bad messages).

Each message template gets at most ``burst`` lines per ``window_s``; the lines past that are
counted, and the count is logged once the window is over (with the next line of that kind, or
from ``flush``). An endless stream of garbage then writes a few lines every ``window_s``, not a
line per 8 KiB.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BURST = 20
WINDOW_S = 10.0


@dataclass
class _Window:
    start: float
    level: int
    logged: int = 0
    suppressed: int = 0


class LogLimiter:
    """Logs through ``logger``, at most ``burst`` lines per message template in each window."""

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = BURST,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self.suppressed_total = 0

    def warning(self, msg: str, *args: Any) -> None:
        """``logger.warning`` within the limit."""
        self.log(logging.WARNING, msg, *args)

    def log(self, level: int, msg: str, *args: Any) -> None:
        """Log ``msg % args`` unless this template has used its lines in the current window."""
        now = self.clock()
        window = self._windows.get(msg)
        if window is None or now - window.start >= self.window_s:
            if window is not None:
                self._report(msg, window, now)
            window = self._windows[msg] = _Window(now, level)
        if window.logged < self.burst:
            window.logged += 1
            self.logger.log(level, msg, *args)
            return
        window.suppressed += 1
        self.suppressed_total += 1

    def flush(self, everything: bool = False) -> None:
        """Report the lines suppressed in windows that are over, or in all (cheap; call it now and then)."""
        if not self._windows:
            return
        now = self.clock()
        for msg, window in list(self._windows.items()):
            if everything or now - window.start >= self.window_s:
                self._report(msg, window, now)
                del self._windows[msg]

    def _report(self, msg: str, window: _Window, now: float) -> None:
        if window.suppressed:
            self.logger.log(
                window.level,
                "%d more lines like %r suppressed in %.0f s",
                window.suppressed,
                msg,
                now - window.start,
            )
            window.suppressed = 0
