"""Quality features of the request path on the real engine: typing-through, reuse, prefetch, rerank, reasons."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future

import pytest

from suggest_ls.backends.contract import BackendDefaults, GenRequest, GenResult
from suggest_ls.backends.llama.engine import Engine
from suggest_ls.completion import syntax
from suggest_ls.completion.completer import Completer
from suggest_ls.completion.prompt import FAMILIES
from suggest_ls.completion.request import CompletionRequest
from suggest_ls.settings import resolve
from tests.stubs import StubJob

FUNC = "def add(first, second):\n    return "


class Counting(BackendDefaults):
    """The real engine, counting the jobs submitted to it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.jobs: list[GenRequest] = []

    def submit(self, req: GenRequest, done: Callable[[GenResult], None]):  # type: ignore[no-untyped-def]
        self.jobs.append(req)
        return self.engine.submit(req, done)

    def expect(self, delta: int) -> None:
        self.engine.expect(delta)


def make(engine: Engine, **settings: object) -> tuple[Completer, Counting]:
    s, messages = resolve({"temperature": 0, "debounceMs": 0, **settings})
    assert not messages
    backend = Counting(engine)
    return Completer(backend, FAMILIES["plain"], s), backend


def request(
    text: str, offset: int | None = None, uri: str = "file:///q.py", version: int = 1, manual: bool = False
) -> CompletionRequest:
    return CompletionRequest(uri, version, text, len(text) if offset is None else offset, "python", manual)


def run(engine: Engine, req: GenRequest) -> GenResult:
    done: Future[GenResult] = Future()
    engine.submit(req, done.set_result)
    return done.result(timeout=120)


async def test_typing_a_shown_suggestion_runs_no_model(engine):
    c, backend = make(engine)
    first = await c.complete(request(FUNC))
    assert first.text and first.record and first.record.outcome == "shown"
    jobs = len(backend.jobs)
    for i in range(1, len(first.text)):
        typed = FUNC + first.text[:i]
        got = await c.complete(request(typed, version=i + 1))
        assert got.text == first.text[i:], f"after typing {first.text[:i]!r}"
        assert got.cached and got.record is not None and got.record.outcome == "cache"
    assert len(backend.jobs) == jobs  # no model run while typing it through


async def test_the_cache_key_holds_the_text_after_the_cursor(engine):
    c, backend = make(engine, candidates=0)
    text = FUNC + "\n\nprint(add(1, 2))\n"
    first = await c.complete(request(text, len(FUNC)))
    assert first.text
    jobs = len(backend.jobs)
    typed = FUNC + first.text[0]
    changed = typed + "\n\nprint(add(3, 4))\n"  # same text before the cursor, other text after it
    again = await c.complete(request(changed, len(typed), version=2))
    assert not again.cached and len(backend.jobs) == jobs + 1


async def test_a_running_generation_is_reused_when_the_typed_text_matches(engine):
    probe, _ = make(engine)
    expected = (await probe.complete(request(FUNC, uri="file:///probe.py"))).text
    assert len(expected) >= 2
    c, backend = make(engine)
    older = asyncio.ensure_future(c.complete(request(FUNC, uri="file:///reuse.py")))
    while not backend.jobs:  # the first request's job is in the engine
        await asyncio.sleep(0.001)
    newer = await c.complete(request(FUNC + expected[0], uri="file:///reuse.py", version=2))
    assert (await older).reason == "superseded"
    assert newer.text == expected[1:] and newer.cached
    assert len(backend.jobs) == 1  # the newer keystroke started no model run of its own


async def test_prefetch_answers_the_next_request_after_accepting(engine):
    c, backend = make(engine, prefetch=True)
    # a sequence any model continues the same way on every CPU (the next line after accepting is
    # the one after that): prefetching is what is tested, not the model's taste
    text = "steps = []\nsteps.append(1)\nsteps.append(2)\nsteps.append(3)\n"
    shown = await c.complete(request(text))
    assert shown.text
    for _ in range(2000):  # the prefetch runs at low priority in the background
        if c._docs["file:///q.py"].prefetched is not None:
            break
        await asyncio.sleep(0.01)
    state = c._docs["file:///q.py"]
    assert state.prefetched is not None, "the prefetch produced nothing"
    jobs = len(backend.jobs)
    accepted = text + shown.text + "\n"  # accept with Tab, then Enter (the line is complete)
    nxt = await c.complete(request(accepted, version=2))
    assert nxt.cached and nxt.text and len(backend.jobs) == jobs
    assert backend.jobs[-1].priority < 0


AREA = "def area(width, height):\n    result = width * height\n    \n    return result\n"


async def test_rerank_samples_and_scores_candidates(engine):
    c, backend = make(engine, candidates=3)
    text = AREA
    offset = text.index("\n    return")
    got = await c.complete(request(text, offset, manual=True))
    samples = [j for j in backend.jobs if j.temperature > 0]
    scores = [j for j in backend.jobs if j.score_from >= 0]
    assert len(samples) == 3 and len({j.seed for j in samples}) == 3
    # scoring happens only when the samples disagree: none, or one job per distinct candidate
    assert len(scores) != 1
    assert len({j.prompt for j in scores}) == len(scores)
    assert all(j.max_tokens == 0 and j.prompt.endswith("\n    return result\n") for j in scores)
    assert got.record is not None and got.record.rerank_jobs == len(samples) + len(scores)
    assert got.record.rerank_tokens >= len(samples)  # each sample generated at least one token


class Scripted(BackendDefaults):
    """An engine that writes given lines: the greedy one, then one per sample seed; scores by the line."""

    def __init__(self, greedy: str, samples: dict[int, str], scores: dict[str, float]) -> None:
        self.greedy, self.samples, self.line_scores = greedy, samples, scores
        self.jobs: list[GenRequest] = []

    def submit(self, req: GenRequest, done: Callable[[GenResult], None]):  # type: ignore[no-untyped-def]
        self.jobs.append(req)
        if req.score_from >= 0:
            line = req.prompt[req.score_from :].split("\n", 1)[0]
            result = GenResult("", "done", score=self.line_scores[line], scored_tokens=5, evaluated_tokens=5)
        else:
            line = self.samples[req.seed] if req.temperature > 0 else self.greedy
            result = GenResult(line + "\n", "done", generated_tokens=3, evaluated_tokens=1)
        done(result)
        return StubJob()

    def expect(self, delta: int) -> None:
        pass


async def test_rerank_keeps_the_best_scored_candidate_with_its_share_of_votes():
    a, b = "print(result)", "result *= 2"
    backend = Scripted(greedy=a, samples={1: b, 2: a, 3: a}, scores={a: -9.0, b: -3.0})
    s, _ = resolve({"temperature": 0, "debounceMs": 0, "candidates": 3})
    c = Completer(backend, FAMILIES["plain"], s)
    got = await c.complete(request(AREA, AREA.index("\n    return"), manual=True))
    scored = [j for j in backend.jobs if j.score_from >= 0]
    # one scoring job per distinct candidate, each on the candidate and the lines after the cursor
    assert sorted(j.prompt[j.score_from :] for j in scored) == sorted(f"{line}\n    return result\n" for line in (a, b))
    assert got.text == b  # the likelier continuation wins over the more frequent one
    assert got.record is not None and got.record.confidence == 0.25  # 1 of 4 (greedy and 3 samples)
    assert got.record.rerank_jobs == 3 + 2
    # samples that all agree with the greedy line are not scored
    agree = Scripted(greedy=a, samples={1: a, 2: a, 3: a}, scores={})
    c = Completer(agree, FAMILIES["plain"], s)
    got = await c.complete(request(AREA, AREA.index("\n    return"), manual=True))
    assert got.text == a and got.record is not None and got.record.confidence == 1.0
    assert [j for j in agree.jobs if j.score_from >= 0] == []


def test_engine_scores_likely_continuations_higher(engine):
    prompt = "def add(a, b):\n    return "
    good = run(engine, GenRequest("score", prompt + "a + b\n", max_tokens=0, score_from=len(prompt)))
    bad = run(engine, GenRequest("score", prompt + "banana split\n", max_tokens=0, score_from=len(prompt)))
    assert good.text == "" and bad.text == ""  # scoring only
    assert good.scored_tokens >= 3 and bad.scored_tokens >= 3
    assert good.score > bad.score + 5


def test_engine_seeds_make_samples_differ(engine):
    outs = {
        run(engine, GenRequest("seed", "def f(x):\n    return ", max_tokens=6, temperature=1.0, seed=s)).text
        for s in range(6)
    }
    assert len(outs) >= 2


async def test_extra_context_from_another_document_reaches_the_prompt(engine):
    c, _ = make(engine)
    helper = "".join(f"def helper_{i}(value):\n    return value * {i}\n\n" for i in range(8))
    await c.complete(request(helper, helper.index("return value * 4"), uri="file:///proj/helpers.py"))
    await c.complete(request("result = helper_", uri="file:///proj/main.py"))
    head = c.last_prompt.split("result = helper_")[0]
    assert "# Path: proj/helpers.py\n" in head and "# def helper_4(value):\n#     return value * 4\n" in head


async def test_extra_context_off_keeps_the_prompt_plain(engine):
    c, _ = make(engine, extraContextTokens=0)
    helper = "def helper(value):\n    return value * 2\n"
    await c.complete(request(helper, uri="file:///proj/helpers.py"))
    await c.complete(request("result = helper", uri="file:///proj/main.py"))
    assert "Path:" not in c.last_prompt


@pytest.mark.parametrize(
    ("text", "offset", "settings", "reason"),
    [
        ("value = 1", 3, {}, "inside a word"),
        ("x = foo(1)", 4, {}, "text after the cursor on this line"),
        ("x = 1", 99, {}, "position outside the document"),
        ("x = \x00\x00", 4, {}, "binary content near the cursor"),
        ("x = 1", 5, {"enabled": False}, "disabled"),
    ],
)
async def test_every_empty_answer_has_a_reason(engine, text, offset, settings, reason):
    c, backend = make(engine, **settings)
    got = await c.complete(request(text, offset))
    assert not got.text and got.reason == reason
    assert got.record is not None and got.record.outcome == reason
    assert not backend.jobs


@pytest.mark.parametrize(
    ("rerank", "fast", "manual", "expected"),
    [
        ("auto", False, False, False),  # typing on a CPU: the greedy line, no extra model work
        ("auto", False, True, True),  # asked for explicitly
        ("auto", True, False, True),  # a GPU or a remote server: always
        ("invoked", True, False, False),
        ("always", False, False, True),
        ("never", True, True, False),
    ],
)
async def test_when_candidates_are_reranked(engine, rerank, fast, manual, expected):
    c, backend = make(engine, candidates=2, rerank=rerank)
    c.fast_device = fast
    offset = AREA.index("\n    return")
    got = await c.complete(request(AREA, offset, manual=manual))
    sampled = [j for j in backend.jobs if j.temperature > 0]
    assert bool(sampled) is expected
    assert got.record is not None and (got.record.rerank_jobs > 0) is expected


async def test_extra_context_stays_when_the_window_moves_until_it_is_old(engine, monkeypatch):
    from suggest_ls.completion import plan as plan_module

    c, _ = make(engine, maxTokens=2)
    helper = "".join(f"def helper_{i}(value):\n    return value * {i}\n\n" for i in range(8))
    await c.complete(request(helper, helper.index("return value * 4"), uri="file:///proj/helpers.py"))
    main = "".join(f"value_{i} = helper_{i % 8}({i})\n" for i in range(400))
    uri = "file:///proj/main.py"
    first = main.index("\n", main.index("value_150 "))  # at the end of a line
    await c.complete(request(main, first, uri=uri))
    head = c.last_prompt.split("# main.py\n")[0]  # the block before the file's name line
    assert "# Path: proj/helpers.py\n" in head
    state = c._docs[uri]
    chosen_at = state.extra_at
    later = main.index("\n", main.index("value_390 "))  # the window's head has moved
    assert c.cursor(request(main, later, uri=uri)).prefix[:256] != state.extra_key
    await c.complete(request(main, later, uri=uri, version=2))
    assert c.last_prompt.split("# main.py\n")[0] == head and state.extra_at == chosen_at  # the same block
    monkeypatch.setattr(plan_module, "EXTRA_REFRESH_S", 0.0)
    await c.complete(request(main, later, uri=uri, version=3))
    assert state.extra_at > chosen_at  # chosen again once old enough


COUNT = "def count_evens(numbers):\n    total = 0\n\n        if n % 2 == 0:\n            total += 1\n    return total\n"


def test_engine_returns_the_likeliest_other_first_tokens(engine):
    prompt = COUNT[: COUNT.index("\n\n") + 1]
    got = run(engine, GenRequest("alts", prompt, max_tokens=8, temperature=0, alternatives=3))
    assert got.outcome == "done" and len(got.alternatives) == 3
    probs = [p for _, p in got.alternatives]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    lead = got.text[: len(got.text) - len(got.text.lstrip(" \t"))]
    for start, _ in got.alternatives:
        assert start.startswith(lead) and start[len(lead) :] and "\n" not in start
    plain = run(engine, GenRequest("alts", prompt, max_tokens=8, temperature=0))
    assert plain.alternatives == () and plain.text == got.text


class FirstLine(Counting):
    """The real engine, but the first generation comes back as ``line`` (with the real alternatives)."""

    def __init__(self, engine: Engine, line: str) -> None:
        super().__init__(engine)
        self.line = line

    def submit(self, req: GenRequest, done: Callable[[GenResult], None]):  # type: ignore[no-untyped-def]
        first = not self.jobs
        self.jobs.append(req)
        if not first:
            return self.engine.submit(req, done)
        return self.engine.submit(req, lambda r: done(GenResult(self.line, "done", alternatives=r.alternatives)))


def breaking(engine: Engine) -> FirstLine:
    """A first line that breaks the code around the hole in ``COUNT``."""
    return FirstLine(engine, "    return total\n")


async def test_a_line_that_breaks_the_code_gives_way_to_an_alternative(engine):
    s, _ = resolve({"temperature": 0, "debounceMs": 0})  # alternatives: 3 by default
    backend = breaking(engine)
    c = Completer(backend, FAMILIES["plain"], s)
    offset = COUNT.index("\n\n") + 1
    got = await c.complete(request(COUNT, offset))
    assert backend.jobs[0].alternatives == 3
    forced = backend.jobs[1:]
    assert forced and all(j.prompt.startswith(backend.jobs[0].prompt) and j.alternatives == 0 for j in forced)
    assert got.record is not None and got.record.alternative_jobs == len(forced)
    if got.text:
        assert syntax.breaks(COUNT, offset, got.text, got.replace) == ""
        assert got.text != "    return total"
    else:
        assert got.reason == syntax.BREAKS and len(forced) == 3


async def test_a_line_that_breaks_the_code_is_not_shown_without_alternatives(engine):
    s, _ = resolve({"temperature": 0, "debounceMs": 0, "alternatives": 0})
    backend = breaking(engine)
    c = Completer(backend, FAMILIES["plain"], s)
    got = await c.complete(request(COUNT, COUNT.index("\n\n") + 1))
    assert got.text == "" and got.reason == syntax.BREAKS
    assert len(backend.jobs) == 1 and backend.jobs[0].alternatives == 0


async def test_syntax_check_off_shows_what_the_model_wrote(engine):
    s, _ = resolve({"temperature": 0, "debounceMs": 0, "syntaxCheck": False})
    backend = breaking(engine)
    c = Completer(backend, FAMILIES["plain"], s)
    got = await c.complete(request(COUNT, COUNT.index("\n\n") + 1))
    assert got.text == "    return total" and len(backend.jobs) == 1 and backend.jobs[0].alternatives == 0


async def test_a_line_that_repeats_the_next_one_gives_way_to_an_alternative(engine):
    s, _ = resolve({"temperature": 0, "debounceMs": 0})
    backend = FirstLine(engine, "        if n % 2 == 0:\n")  # the line after the cursor
    c = Completer(backend, FAMILIES["plain"], s)
    offset = COUNT.index("\n\n") + 1
    got = await c.complete(request(COUNT, offset))
    forced = backend.jobs[1:]
    assert forced and all(j.prompt.startswith(backend.jobs[0].prompt) and j.alternatives == 0 for j in forced)
    assert got.record is not None and got.record.alternative_jobs == len(forced)
    if got.text:
        assert got.text.strip() != "if n % 2 == 0:"
        assert syntax.breaks(COUNT, offset, got.text, got.replace) == ""
    else:
        assert got.reason == "duplicates the next line" and len(forced) == 3


async def test_first_words_whose_line_breaks_the_code_give_way_or_are_withdrawn(engine):
    s, _ = resolve({"temperature": 0, "debounceMs": 0, "lineBudgetMs": 1, "lineDeadlineMs": 0})
    backend = breaking(engine)
    c = Completer(backend, FAMILIES["plain"], s)
    refreshed: list[tuple[str, int]] = []
    c.refresh_hook = lambda u, v: refreshed.append((u, v))
    offset = COUNT.index("\n\n") + 1
    first = await c.complete(request(COUNT, offset))
    assert first.record is not None and first.record.early  # its first words, a step or two in
    for _ in range(400):  # the line goes on, then its alternatives run
        if refreshed:
            break
        await asyncio.sleep(0.025)
    assert refreshed, "the client was not told to ask again"
    jobs = len(backend.jobs)
    assert jobs > 1  # the whole line broke the code: alternatives were tried
    again = await c.complete(request(COUNT, offset))
    assert len(backend.jobs) == jobs  # answered without another model run
    if again.text:
        assert again.cached and syntax.breaks(COUNT, offset, again.text, again.replace) == ""
    else:
        assert again.reason == syntax.BREAKS


async def test_min_confidence_hides_a_line_by_its_least_likely_token(engine):
    plain, _ = make(engine)
    got = await plain.complete(request(FUNC, uri="file:///conf.py"))
    assert got.text and got.record is not None
    least = got.record.confidence
    assert 0 < least < 1 and least == got.record.min_prob  # the line's least token probability
    assert got.record.line_prob >= least
    above, _ = make(engine, minConfidence=min(1.0, least + 0.005))
    hidden = await above.complete(request(FUNC, uri="file:///conf.py"))
    assert hidden.text == "" and hidden.reason.startswith("low confidence")
    assert hidden.record is not None and hidden.record.confidence == least  # the record says why
    below, _ = make(engine, minConfidence=max(0.0, least - 0.005))
    shown = await below.complete(request(FUNC, uri="file:///conf.py"))
    assert shown.text == got.text
