"""The request path: supersede, debounce, cancellation, records; a fake engine only for timing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from suggest_ls.backends.contract import BackendDefaults, GenRequest, GenResult
from suggest_ls.backends.llama.engine import Engine
from suggest_ls.completion.completer import Completer, adaptive_debounce
from suggest_ls.completion.prompt import FAMILIES, detect_template
from suggest_ls.completion.request import CompletionRequest
from suggest_ls.settings import resolve
from tests.stubs import StubJob

FUNC = "def area(width, height):\n    return "


class SlowEngine(BackendDefaults):
    """Answers after ``delay_s`` (or at once with 'cancelled' when cancelled); counts submissions."""

    def __init__(self, delay_s: float = 0.5, text: str = "width * height", notice_s: float = 0.05) -> None:
        self.delay_s = delay_s
        self.text = text
        self.notice_s = notice_s
        self.submitted: list[GenRequest] = []
        self.reported: list[GenResult] = []  # what the engine has answered so far
        self.expected = 0

    def submit(self, req: GenRequest, done: Callable[[GenResult], None]) -> StubJob:
        job = StubJob()
        self.submitted.append(req)

        def work() -> None:
            cancelled = job.cancel.wait(self.delay_s)
            time.sleep(self.notice_s)  # the engine notices a cancel only at its next step
            result = GenResult("", "cancelled") if cancelled else GenResult(self.text, "done", prompt_tokens=9)
            self.reported.append(result)
            done(result)

        threading.Thread(target=work, daemon=True).start()
        return job

    def expect(self, delta: int) -> None:
        self.expected += delta


def completer(backend, **settings) -> Completer:
    s, messages = resolve({"temperature": 0, **settings})
    assert not messages
    return Completer(backend, FAMILIES["rules"], s)


def req(version: int, text: str = FUNC, uri: str = "file:///a.py", manual: bool = False) -> CompletionRequest:
    return CompletionRequest(uri, version, text, len(text), "python", manual)


async def test_a_newer_request_answers_the_older_one_at_once():
    fake = SlowEngine(delay_s=30.0, notice_s=2.0)  # the engine takes 2 s to notice a cancel
    c = completer(fake, debounceMs=0)
    first = asyncio.ensure_future(c.complete(req(1)))
    while not fake.submitted:
        await asyncio.sleep(0.01)
    # an edit that is not typing ahead of the running job (a deletion), so it is not adopted
    second = asyncio.ensure_future(c.complete(req(2, FUNC[:-2])))
    old = await asyncio.wait_for(first, 1.8)
    assert fake.reported == []  # answered before the engine reported the job (not after it stopped)
    assert old.reason == "superseded" and not old.text
    for _ in range(1000):
        if len(fake.reported) >= 1:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    # the superseded request's record arrives once the engine reports its (cancelled) job
    outcomes = [r.outcome for r in c.recorder.recent()]
    assert "superseded" in outcomes
    second.cancel()


async def test_debounce_lets_a_burst_run_the_model_once():
    fake = SlowEngine(delay_s=0.01)
    c = completer(fake, debounceMs=80)
    tasks = []
    text = FUNC
    for i, ch in enumerate("width"):
        text += ch
        tasks.append(asyncio.ensure_future(c.complete(req(i + 2, text))))
        await asyncio.sleep(0.01)
    results = await asyncio.gather(*tasks)
    assert len(fake.submitted) == 1
    assert [r.reason for r in results[:-1]] == ["superseded while debouncing"] * 4
    assert results[-1].text == "width * height"
    assert fake.expected == 0  # every debounce told the engine when it was over


async def test_other_documents_do_not_supersede_each_other():
    fake = SlowEngine(delay_s=0.1)
    c = completer(fake, debounceMs=0)
    a, b = await asyncio.gather(c.complete(req(1, uri="file:///a.py")), c.complete(req(1, uri="file:///b.py")))
    assert a.text and b.text
    assert len(fake.submitted) == 2


async def test_client_cancel_stops_the_job():
    fake = SlowEngine(delay_s=5.0)
    c = completer(fake, debounceMs=0)
    task = asyncio.ensure_future(c.complete(req(1)))
    await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await asyncio.sleep(0.2)
    assert [r.outcome for r in c.recorder.recent()] == ["cancelled by the client"]


def test_adaptive_debounce_waits_only_inside_a_fast_word():
    assert adaptive_debounce(1000, "a") == 0  # a slow typist: no wait
    assert 0 < adaptive_debounce(60, "a") < adaptive_debounce(100, "x") <= 30
    assert adaptive_debounce(60, "_") > 0
    for char in (" ", "(", ".", "\n", ""):
        assert adaptive_debounce(60, char) == 0  # where people pause


async def test_superseded_job_frees_its_slot_for_the_next_keystroke(engine: Engine):
    """Real engine: the superseding request reuses the document's cache; nothing is left hanging."""
    info = engine.ready.result()
    c = Completer(
        engine, detect_template(info.model), resolve({"temperature": 0, "debounceMs": 0, "multiline": "always"})[0]
    )
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(8))
    text = body + "def g(x):\n"
    warm = await c.complete(req(1, text, uri="file:///super.py"))
    assert warm.record is not None and warm.record.prompt_tokens > 60
    text += "    # then the remainder\n    "  # not the start of the shown suggestion (no cache hit)
    first = asyncio.ensure_future(c.complete(req(2, text, uri="file:///super.py")))
    await asyncio.sleep(0.01)  # submitted to the engine, far from done (a decode step takes longer)
    # a deletion: the running job cannot be adopted and nothing shown can be typed through
    second = await c.complete(req(3, text[:-2], uri="file:///super.py"))
    old = await asyncio.wait_for(first, 1)
    assert old.reason == "superseded"
    rec = second.record
    assert rec is not None and rec.version == 3
    assert rec.cached_tokens >= warm.record.prompt_tokens - 2
    assert rec.evaluated_tokens <= (rec.prompt_tokens - rec.cached_tokens) + rec.generated_tokens
    assert rec.prompt_tokens - rec.cached_tokens <= 16  # the comment line, the indent and "r"


async def test_records_and_metrics_carry_shifted_tokens():
    from suggest_ls.ops.metrics import Metrics

    class Shifted(SlowEngine):
        def submit(self, req: GenRequest, done: Callable[[GenResult], None]) -> StubJob:
            self.submitted.append(req)
            done(GenResult("width * height", "done", prompt_tokens=40, cached_tokens=30, shifted_tokens=7))
            return StubJob()

    c = completer(Shifted(), debounceMs=0)
    metrics = Metrics(c.recorder)
    got = await c.complete(req(1))
    assert got.text == "width * height" and got.record is not None and got.record.shifted_tokens == 7
    await asyncio.sleep(0.01)  # records are stored once the answer is out
    text = metrics.render({}).decode()
    assert 'suggest_ls_tokens_total{kind="shifted"} 7.0' in text
    assert 'suggest_ls_tokens_total{kind="cached"} 30.0' in text


async def test_bookkeeping_waits_until_the_answer_is_out():
    fake = SlowEngine(delay_s=0.0)
    c = completer(fake, debounceMs=0)
    seen_at_answer: list[int] = []
    task = asyncio.ensure_future(c.complete(req(1)))
    # the server writes the answer in the task's done callback, as pygls does
    task.add_done_callback(lambda _: seen_at_answer.append(len(c.recorder.recent())))
    answer = await task
    assert answer.text and answer.record is not None
    assert seen_at_answer == [0]  # the record was not yet stored when the answer went out
    await asyncio.sleep(0.01)
    assert [r.outcome for r in c.recorder.recent()] == ["shown"]


def test_the_work_after_first_words_is_not_a_request_nor_a_reason_and_has_no_latency():
    from suggest_ls.completion.stats import LINE_FINISHED, Record, Recorder
    from suggest_ls.ops.metrics import Metrics

    recorder = Recorder()
    metrics = Metrics(recorder)
    recorder.add(Record("file:///a.py", "shown", total_ms=200.0, early=True))
    recorder.add(Record("file:///a.py", LINE_FINISHED, prompt_tokens=40, generated_tokens=12))
    assert recorder.requests == 1
    assert recorder.latency()["p50_ms"] == 200.0  # the finished line's record has no latency of its own
    text = metrics.render({}).decode()
    assert 'suggest_ls_tokens_total{kind="generated"} 12.0' in text
    requests = [line for line in text.splitlines() if line.startswith("suggest_ls_requests_total{")]
    assert requests == ['suggest_ls_requests_total{result="shown"} 1.0']
    recorder.add(Record("file:///a.py", "line still being written", total_ms=230.0))
    # nor is it a reason for no suggestion (the status lists those)
    assert [r["reason"] for r in recorder.reasons()] == ["line still being written"]


class CappedEngine(SlowEngine):
    """Answers at once with a line the token cap cut (or, with ``capped=False``, the same line whole)."""

    def __init__(self, capped: bool) -> None:
        super().__init__(0.0, "width * height * (1 +")
        self.capped = capped

    def submit(self, req: GenRequest, done: Callable[[GenResult], None]) -> StubJob:
        self.submitted.append(req)
        done(GenResult(self.text, "done", prompt_tokens=9, generated_tokens=req.max_tokens, capped=self.capped))
        return StubJob()


async def test_a_line_cut_by_the_token_cap_is_never_shown():
    from suggest_ls.completion.clean import CAPPED

    got = await completer(CappedEngine(capped=True), debounceMs=0, minConfidence=0).complete(req(1))
    assert not got.text and got.reason == CAPPED
    whole = await completer(CappedEngine(capped=False), debounceMs=0, minConfidence=0, syntaxCheck=False).complete(
        req(1)
    )
    assert whole.text == "width * height * (1 +"
