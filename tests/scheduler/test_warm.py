"""Warming (idle-priority prompt evaluation) on the real engine: what it caches, and that it never
holds up a live request."""

from __future__ import annotations

import threading
import time

import pytest

from suggest_ls.backends.contract import IDLE, GenRequest, GenResult
from suggest_ls.backends.llama.engine import Engine
from suggest_ls.backends.llama.loading import EngineConfig

from .test_engine import CODE, NEVER_STOP, run

LONG = CODE * 12  # ~1500 tokens: many idle steps


def long_prompt(tag: str) -> str:
    """A long prompt no slot holds yet (a cached one would finish at once)."""
    return f"# {tag} {time.time_ns()}\n" + LONG


def submit(engine: Engine, req: GenRequest) -> tuple[threading.Event, list[GenResult]]:
    done = threading.Event()
    out: list[GenResult] = []
    engine.submit(req, lambda r: (out.append(r), done.set()))
    return done, out


def test_a_warmed_prompt_is_cached_for_the_request_that_follows(engine: Engine):
    prompt = f"# {time.time_ns()}\n" + CODE + "\n\ndef main():\n    files = "  # in no slot yet
    (warm,) = run(engine, GenRequest("file:///warm-a.py", prompt, max_tokens=0, priority=IDLE))
    assert warm.outcome == "done" and warm.generated_tokens == 0
    assert warm.evaluated_tokens + warm.cached_tokens >= warm.prompt_tokens - 1 > 50
    typed = prompt + "l"
    (live,) = run(engine, GenRequest("file:///warm-a.py", typed, max_tokens=4, temperature=0))
    assert live.outcome == "done" and live.slot == warm.slot
    assert live.cached_tokens >= warm.prompt_tokens - 2  # only the typed character (and the last) again
    (cold,) = run(engine, GenRequest("file:///warm-cold.py", "# cold\n" + typed, max_tokens=4, temperature=0))
    assert cold.cached_tokens < cold.prompt_tokens // 2  # no warm, no cache: what the warm saved


def test_a_live_request_runs_while_an_idle_one_waits(engine: Engine):
    idle_done, idle = submit(
        engine, GenRequest("file:///idle-long.py", long_prompt("idle-long"), max_tokens=0, priority=IDLE)
    )
    time.sleep(0.5)  # admitted and evaluating
    before = engine.stats["evaluated"]
    (live,) = run(engine, GenRequest("file:///live.py", "def add(a, b):\n    return ", max_tokens=8, rule=NEVER_STOP))
    assert live.outcome == "done" and live.generated_tokens == 8
    # while the live job ran, the idle one evaluated nothing (but the step already under way)
    assert engine.stats["evaluated"] - before <= live.evaluated_tokens + engine.config.idle_chunk
    assert not idle_done.is_set(), "the idle job should still be evaluating (it yields every step)"
    assert idle_done.wait(120)
    assert idle[0].outcome == "done" and idle[0].evaluated_tokens + idle[0].cached_tokens >= idle[0].prompt_tokens - 1


def test_a_live_request_takes_the_slot_of_an_idle_one(model_path):
    """With one slot busy warming another document, the live request does not wait for it."""
    eng = Engine(EngineConfig(model_path, context_size=2048, parallel=1)).start()
    try:
        eng.ready.result(timeout=120)
        idle_done, idle = submit(eng, GenRequest("file:///idle.py", long_prompt("idle"), max_tokens=0, priority=IDLE))
        time.sleep(0.5)  # admitted and evaluating (submitted together, the live job would go first anyway)
        assert not idle_done.is_set()
        (live,) = run(eng, GenRequest("file:///other.py", "x = ", max_tokens=2, rule=NEVER_STOP))
        assert live.outcome == "done"
        assert idle_done.wait(10) and idle[0].outcome == "cancelled"
    finally:
        eng.close()


@pytest.mark.parametrize("same_key", [True, False])
def test_a_live_request_stops_the_warm_of_its_own_document(engine: Engine, same_key: bool):
    key = "file:///own.py"
    idle_done, idle = submit(engine, GenRequest(key, long_prompt(key), max_tokens=0, priority=IDLE))
    time.sleep(0.5)  # admitted and evaluating
    assert not idle_done.is_set()
    other = key if same_key else "file:///not-own.py"
    (live,) = run(engine, GenRequest(other, CODE + "\nx = ", max_tokens=2, rule=NEVER_STOP))
    assert live.outcome == "done"
    if same_key:  # its document's slot holds the warmed prompt: the idle job gives it up at once
        assert idle_done.wait(10) and idle[0].outcome == "cancelled"
    else:
        assert idle_done.wait(120) and idle[0].outcome == "done"


# ----- the completer's warm path, on the real engine -----


async def _wait_warm(c, count: int = 1, timeout: float = 120.0) -> None:
    import asyncio

    for _ in range(int(timeout / 0.05)):
        if len(c.warmed) >= count:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("warm job did not finish")


async def test_completer_warm_makes_the_first_request_at_the_cursor_a_cached_one(engine: Engine):
    from suggest_ls.completion.completer import Completer
    from suggest_ls.completion.prompt import FAMILIES
    from suggest_ls.completion.request import CompletionRequest
    from suggest_ls.settings import resolve

    settings, _ = resolve({"temperature": 0, "debounceMs": 0, "extraContextTokens": 0})
    c = Completer(engine, FAMILIES["plain"], settings)
    text = f"# {time.time_ns()}\n" + CODE + "\n\ndef total_lines(root):\n    return "
    here = CompletionRequest("file:///warm-c.py", 1, text, len(text), "python")
    assert c.warm(here)
    await _wait_warm(c)
    assert c.warm_summary()["done"] == 1 and c.warm_summary()["tokens"] > 100
    typed = text + "s"
    got = await c.complete(CompletionRequest("file:///warm-c.py", 2, typed, len(typed), "python"))
    assert got.record is not None and got.record.prompt_tokens > 100
    assert got.record.cached_tokens >= got.record.prompt_tokens - 3, got.record
    # the same request elsewhere, never warmed, evaluates its whole prompt
    cold = await c.complete(CompletionRequest("file:///cold-c.py", 1, "#\n" + typed, len(typed) + 2, "python"))
    assert cold.record is not None and cold.record.cached_tokens < cold.record.prompt_tokens // 2


async def test_completer_does_not_warm_when_turned_off_or_while_a_request_runs(engine: Engine):
    from suggest_ls.completion.completer import Completer
    from suggest_ls.completion.prompt import FAMILIES
    from suggest_ls.completion.request import CompletionRequest
    from suggest_ls.settings import resolve

    off, _ = resolve({"warm": False})
    text = CODE + "\nx = "
    req = CompletionRequest("file:///warm-off.py", 1, text, len(text), "python")
    assert not Completer(engine, FAMILIES["plain"], off).warm(req)
    on, _ = resolve({"temperature": 0, "debounceMs": 0})
    c = Completer(engine, FAMILIES["plain"], on)
    import asyncio

    task = asyncio.ensure_future(c.complete(req))
    await asyncio.sleep(0.01)  # the request's job is submitted
    assert not c.warm(req)
    await task
