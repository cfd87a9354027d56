"""The arms of ``suggest-ls bench languages``: the real server and the raw model asked at a case's cursor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from suggest_ls.bench.languages.cases import Case
from suggest_ls.bench.languages.scoring import Scored, score
from suggest_ls.bench.quality.arms import RawArm, ServerArm
from suggest_ls.completion.completer import PROMPT_TOKENS_MAX
from suggest_ls.completion.context import window
from suggest_ls.settings import resolve

REFRESH_TIMEOUT_S = 600.0  # how long the pipeline's line still being written is waited for


def window_tokens(settings: dict[str, Any], status: dict[str, Any]) -> int:
    """The prompt window the raw model and the cleaning check get: the setting where it is pinned,
    else what the server resolved from its measured speed (its status), else the largest it picks."""
    pinned = resolve(settings)[0].prompt_tokens
    if pinned > 0:
        return pinned
    served = status.get("promptTokens")
    return served if isinstance(served, int) and served > 0 else PROMPT_TOKENS_MAX


class PipelineArm:
    """The real server (bench quality's ServerArm) asked at each case's cursor."""

    def __init__(self, model: str, settings: dict[str, Any], workdir: Path) -> None:
        # a cold file's whole window on a CPU can take longer than bench quality's 30 s
        self.server = ServerArm(model, settings, workdir, refresh_timeout=REFRESH_TIMEOUT_S)

    async def start(self) -> None:
        """Start the server and wait for its model."""
        await self.server.start()

    async def complete(self, case: Case) -> Scored:
        """Open the case's document, ask at its cursor and score the line it leaves."""
        self.server.show(case.uri, case.language, case.document)
        started = time.perf_counter()
        outcome, edited = await self.server.ask(case.document, case.offset)
        scored = score(case, outcome, edited)
        scored.line_ms = (time.perf_counter() - started) * 1000
        return scored

    async def close(self) -> None:
        """Shut the server down."""
        await self.server.close()


class RawModelArm:
    """The raw model: its FIM prompt on the window the server cuts (``prompt_tokens``), greedy, the first line."""

    def __init__(self, model: str, settings: dict[str, Any], prompt_tokens: int) -> None:
        self.raw = RawArm(model)
        self.prompt_tokens, self.suffix_share = prompt_tokens, resolve(settings)[0].suffix_share

    async def start(self) -> None:
        """Load the model in-process."""
        await self.raw.start()

    async def complete(self, case: Case) -> Scored:
        """Generate at the case's cursor and score the line with the generated text after the indentation."""
        prefix, suffix = window(case.document, case.offset, self.prompt_tokens, self.suffix_share)
        outcome = await self.raw.line(self.raw.prompt_of(prefix, suffix))
        edited = case.prefix + outcome.text + case.suffix if outcome.shown else None
        return score(case, outcome, edited)

    async def close(self) -> None:
        """Free the model."""
        await self.raw.close()
