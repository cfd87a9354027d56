"""The engine on the real model: KV reuse per document, batching, cancellation, drafts."""

from __future__ import annotations

import math
import re
import threading
import time

import pytest

from suggest_ls.backends.contract import GenRequest, GenResult, StopRule
from suggest_ls.backends.llama.drafts import find_draft
from suggest_ls.backends.llama.engine import Engine
from suggest_ls.backends.llama.loading import EngineConfig
from suggest_ls.backends.llama.slots import Slot, pick_slot
from suggest_ls.backends.llama.tuner import ThreadTuner

CODE = '''import os


def list_python_files(root):
    """Return the Python files under root."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.endswith(".py"):
                found.append(os.path.join(dirpath, name))
    return found


def count_lines(path):
    with open(path) as handle:
        return sum(1 for _ in handle)
'''
NEVER_STOP = StopRule(multiline=True, base_indent=-1, max_lines=1000)


def run(engine: Engine, *reqs: GenRequest, timeout: float = 120) -> list[GenResult]:
    """Submit requests together and wait for all results (in order)."""
    results: dict[int, GenResult] = {}
    events = []
    for i, req in enumerate(reqs):
        ev = threading.Event()
        events.append(ev)
        engine.submit(req, lambda r, i=i, ev=ev: (results.__setitem__(i, r), ev.set()))
    for ev in events:
        assert ev.wait(timeout), "engine did not answer"
    return [results[i] for i in range(len(reqs))]


def test_a_keystroke_evaluates_only_the_new_tokens(engine: Engine):
    first = CODE + "\n\ndef total_lines(root):\n    return sum(count_lines(p) for p in "
    (a,) = run(engine, GenRequest("file:///reuse.py", first, max_tokens=6, temperature=0))
    assert a.outcome == "done"
    assert a.cached_tokens <= 1 and a.evaluated_tokens >= a.prompt_tokens - 1
    (b,) = run(engine, GenRequest("file:///reuse.py", first + "list_", max_tokens=6, temperature=0))
    assert b.outcome == "done"
    new_tokens = b.prompt_tokens - a.prompt_tokens + 2  # the last token may merge with the typed text
    assert b.cached_tokens >= a.prompt_tokens - 2
    assert b.evaluated_tokens <= new_tokens + b.generated_tokens + 8
    assert b.slot == a.slot


def test_another_document_does_not_take_a_cached_slot(engine: Engine):
    doc = CODE + "\n\ndef biggest(root):\n    return max("
    (a,) = run(engine, GenRequest("file:///keep.py", doc, max_tokens=2, temperature=0))
    other = "# another file\nimport sys\n\n\ndef main(argv):\n    print("
    (b,) = run(engine, GenRequest("file:///other.py", other, max_tokens=2, temperature=0))
    assert b.slot != a.slot
    (c,) = run(engine, GenRequest("file:///keep.py", doc + "f", max_tokens=2, temperature=0))
    assert c.slot == a.slot and c.cached_tokens >= a.prompt_tokens - 2


def test_documents_decoded_together_give_the_same_text_as_alone(engine: Engine):
    prompts = [
        CODE + "\n\ndef largest_file(root):\n    files = list_python_files(root)\n    return ",
        "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = ",
        "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + ",
    ]
    reqs = [
        GenRequest(f"file:///together{i}.py", p, max_tokens=10, temperature=0, rule=NEVER_STOP)
        for i, p in enumerate(prompts)
    ]
    alone = [run(engine, r)[0] for r in reqs]
    calls = engine.stats["decode_calls"]
    together = run(engine, *[GenRequest(r.key + "?2", r.prompt, r.max_tokens, 0, r.rule) for r in reqs])
    assert [r.text for r in together] == [r.text for r in alone]
    assert all(r.generated_tokens == 10 for r in together)
    # one decode step served all three: far fewer calls than decoding them one after another
    assert engine.stats["decode_calls"] - calls < sum(r.steps for r in alone)


@pytest.fixture(scope="module")
def single(model_path):
    """An engine with one slot: a job waits for it, so freeing it shows."""
    eng = Engine(EngineConfig(model_path, context_size=1024, parallel=1)).start()
    eng.ready.result(timeout=120)
    yield eng
    eng.close()


def _generating(engine: Engine, key: str, results: list[GenResult], done: threading.Event, tokens: int = 3):
    """Submit a long generation and return its job once it has generated ``tokens`` tokens."""
    job = engine.submit(
        GenRequest(key, CODE + "\n\n", max_tokens=400, temperature=0, rule=NEVER_STOP),
        lambda r: (results.append(r), done.set()),
    )
    deadline = time.monotonic() + 60
    while len(job.generated) < tokens and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(job.generated) >= tokens
    return job


def test_cancel_stops_generation_within_a_step_and_frees_the_slot(single: Engine):
    done = threading.Event()
    got: list[GenResult] = []
    job = _generating(single, "file:///cancel.py", got, done)
    t0, steps0 = time.perf_counter(), job.steps
    while len(job.generated) < 8 and not done.is_set():
        time.sleep(0.005)
    per_step = (time.perf_counter() - t0) / max(1, job.steps - steps0)  # one decode step, measured here
    # a second job waits for the only slot
    waiting = threading.Event()
    after: list[GenResult] = []
    single.submit(
        GenRequest("file:///after-cancel.py", "x = ", max_tokens=1, temperature=0),
        lambda r: (after.append(r), waiting.set()),
    )
    time.sleep(0.05)
    assert not waiting.is_set(), "the second job ran although the only slot was busy"
    steps_before = job.steps
    job.cancel.set()
    assert done.wait(30)
    assert got[0].outcome == "cancelled"
    assert got[0].steps - steps_before <= 1  # stopped at the next step boundary
    left = 400 - got[0].generated_tokens
    assert left > 300
    # the slot is free again: the waiting job is admitted long before the cancelled one would have
    # ended (a slot kept busy until then would take ``left`` more steps)
    assert waiting.wait(60)
    assert after[0].outcome == "done"
    assert after[0].queue_ms / 1000 < 0.05 + 0.25 * left * per_step, (after[0].queue_ms, per_step, left)


def test_cancelled_before_admission_never_runs(single: Engine):
    done = threading.Event()
    busy: list[GenResult] = []
    job = _generating(single, "file:///busy.py", busy, done)
    results: list[GenResult] = []
    ev = threading.Event()
    blocked = single.submit(
        GenRequest("file:///blocked.py", "y = ", max_tokens=1), lambda r: (results.append(r), ev.set())
    )
    blocked.cancel.set()
    # answered while the only slot is still busy: it never waits for a slot it will not use
    assert ev.wait(30)
    assert not done.is_set() and not job.finished
    assert results[0].outcome == "cancelled"
    assert results[0].generated_tokens == 0 and results[0].evaluated_tokens == 0 and results[0].slot == -1
    job.cancel.set()
    assert done.wait(30) and busy[0].outcome == "cancelled"


@pytest.fixture(scope="module")
def drafting(model_path):
    """A second small engine that verifies drafted tokens."""
    eng = Engine(EngineConfig(model_path, context_size=1024, parallel=1, draft_tokens=4)).start()
    eng.ready.result(timeout=120)
    yield eng
    eng.close()


def test_drafts_keep_greedy_output_identical(engine: Engine, drafting: Engine):
    # a body that repeats the function above (drafts get accepted) with no near-tie in it: greedy
    # decoding may flip between two almost equally likely tokens when batch shapes differ
    prompt = (
        CODE
        + "\n\ndef list_python_files_again(root):\n    found = []\n    for dirpath, dirnames, filenames in os.walk(root):\n"
    )
    req = GenRequest("file:///draft.py", prompt, max_tokens=24, temperature=0, rule=NEVER_STOP)
    (plain,) = run(engine, req)
    (drafted,) = run(drafting, req)
    assert drafted.text == plain.text
    assert drafted.drafted_tokens > 0
    assert drafted.accepted_tokens > 0  # the loop body repeats the function above
    assert drafted.steps < plain.steps


def test_pick_slot_prefers_the_document_then_a_real_prefix_then_the_oldest():
    head = [1, 2, 3]
    a = Slot(0, [*head, 10, 11, 12, 13], key="a", last_used=5.0)
    b = Slot(1, [*head, 20, 21, 22, 23], key="b", last_used=3.0)
    empty = Slot(2, [], key="", last_used=0.0)
    assert pick_slot([a, b, empty], "a", [*head, 10, 11, 12, 99]) is a
    assert pick_slot([a, b, empty], "c", [*head, 30, 31, 32, 33]) is empty  # only the template head shared
    assert pick_slot([a, b], "c", [*head, 30, 31, 32, 33]) is b  # least recently used
    assert pick_slot([a, b, empty], "c", [*head, 20, 21, 22, 40]) is b  # holds most of the prompt


def test_find_draft_looks_up_the_latest_earlier_occurrence():
    ctx = [5, 6, 7, 8, 9, 1, 5, 6, 7, 2, 3, 5, 6, 7]
    assert find_draft(ctx, 3, 2) == [2, 3]
    assert find_draft(ctx, 3, 0) == []
    assert find_draft([1, 2, 3], 3, 4) == []
    assert find_draft([1, 2, 4, 1, 2], 2, 3) == [4, 1, 2]


def test_thread_tuner_switches_to_the_faster_count_and_backs_off():
    tuner = ThreadTuner(2, interval=4, trial=3)
    assert tuner.current == 2
    for _ in range(40):
        threads = tuner.pick(1)
        tuner.record(threads, 1, 0.010 if threads == 1 else 0.040)
    assert tuner.current == 1
    assert tuner.pick(200) == 1  # big steps use the current choice, no trials
    slow_interval = tuner.interval
    tried = 0
    for _ in range(200):
        threads = tuner.pick(1)
        tried += threads == 2
        tuner.record(threads, 1, 0.010 if threads == 1 else 0.040)
    assert tuner.current == 1 and tuner.interval > slow_interval
    assert 1 <= tried <= 6  # a clearly slower trial stops after one step, and trials back off
    assert ThreadTuner(1).choices == [1]


@pytest.fixture(scope="module")
def unshifted(model_path):
    """An engine that reuses only common prefixes: the reference for cache reuse by shifting."""
    eng = Engine(EngineConfig(model_path, context_size=2048, parallel=1, reuse_min=0)).start()
    eng.ready.result(timeout=120)
    yield eng
    eng.close()


def numbered(i: int) -> str:
    return f"    stock[{i}] = Item(name='item{i}', price={i * 3 + 1}, count={i % 7})\n"


def window(first: int, last: int) -> str:
    """The prompt of a completer whose code window holds lines ``first``..``last`` of a long file."""
    return "# inventory.py\n" + "".join(numbered(i) for i in range(first, last + 1))


def first_token(engine: Engine, text: str) -> int:
    return engine.tokenize(text, False)[0]


def assert_slot_matches_cache(engine: Engine, seq: int) -> None:
    assert engine._lm.L.llama_memory_seq_pos_max(engine._lm.mem, seq) == len(engine._slots[seq].tokens) - 1


def test_a_moved_window_shifts_the_cached_lines_instead_of_evaluating_them(engine: Engine, unshifted: Engine):
    key = "file:///window.py"
    greedy = {"temperature": 0.0, "rule": NEVER_STOP}
    (a,) = run(engine, GenRequest(key, window(1, 60), max_tokens=8, **greedy))
    assert a.outcome == "done" and a.shifted_tokens == 0
    # the window moved down 20 lines and the user wrote three more: only those are new
    later = window(21, 63)
    new = len(engine.tokenize(numbered(61) + numbered(62) + numbered(63), False))
    kept = len(engine.tokenize("".join(numbered(i) for i in range(21, 61)), False))
    (b,) = run(engine, GenRequest(key, later, max_tokens=20, **greedy))
    (ref,) = run(unshifted, GenRequest(key, later, max_tokens=20, **greedy))
    assert ref.cached_tokens <= 1 and ref.evaluated_tokens >= ref.prompt_tokens - 1  # a fresh evaluation
    assert b.outcome == "done" and b.slot == a.slot and b.prompt_tokens == ref.prompt_tokens
    assert b.shifted_tokens >= kept - 2
    assert b.prompt_tokens - b.cached_tokens <= new + 4
    assert b.evaluated_tokens <= new + 4 + b.generated_tokens
    # The moved lines' keys and values were computed after lines 1..20, which the prompt no longer
    # holds, and re-rotated to their new positions: an approximation of the fresh evaluation. On
    # this regular code the greedy text is still the same.
    assert b.text == ref.text and b.generated_tokens == 20
    assert_slot_matches_cache(engine, b.slot)

    # the slot stays usable: typing on reuses the prefix as before
    typed = later + numbered(64) + "    stock[65] = Item(name='item65', price="
    (c,) = run(engine, GenRequest(key, typed, max_tokens=12, **greedy))
    (ref_c,) = run(unshifted, GenRequest(key, typed, max_tokens=12, **greedy))
    assert c.outcome == "done" and c.slot == b.slot
    assert c.cached_tokens >= b.prompt_tokens - 2 and c.shifted_tokens == 0
    # a near tie here (the last digit of the price): the moved context may tip it either way
    assert first_token(engine, c.text) == first_token(engine, ref_c.text)
    assert re.match(r"\d+, count=\d\)\n    stock\[", c.text), c.text
    assert_slot_matches_cache(engine, c.slot)

    # lines deleted in the middle: the prefix is kept and the lines after the cut are moved down
    edited = window(21, 30) + "".join(numbered(i) for i in range(36, 65))
    after_cut = len(engine.tokenize("".join(numbered(i) for i in range(36, 65)), False))
    (d,) = run(engine, GenRequest(key, edited, max_tokens=12, **greedy))
    (ref_d,) = run(unshifted, GenRequest(key, edited, max_tokens=12, **greedy))
    assert d.outcome == "done" and d.shifted_tokens >= after_cut - 8  # "    stock[3" is in the prefix
    assert d.evaluated_tokens <= 4 + d.generated_tokens
    assert ref_d.evaluated_tokens >= after_cut
    assert d.text == ref_d.text
    assert_slot_matches_cache(engine, d.slot)

    # Back to the file's head: only the header line is cached. The sliding-window layers' cache has
    # reused the cells of positions out of their window (the header's among them, after a shift);
    # when it no longer holds what the new tokens attend to, the prompt is evaluated from the start.
    head = window(1, 12)
    lost = engine._lm.L.llama_memory_seq_pos_min(engine._lm.mem, d.slot) > 0
    (e,) = run(engine, GenRequest(key, head, max_tokens=12, **greedy))
    (ref_e,) = run(unshifted, GenRequest(key, head, max_tokens=12, **greedy))
    assert e.shifted_tokens == 0
    if lost:
        assert e.cached_tokens == 0 and e.evaluated_tokens >= e.prompt_tokens
    else:
        assert e.cached_tokens > 0
    assert e.text == ref_e.text
    assert engine._lm.L.llama_memory_seq_pos_min(engine._lm.mem, e.slot) == 0
    assert_slot_matches_cache(engine, e.slot)


def test_a_budget_beyond_the_context_leaves_the_prompt_half_of_it(model_path):
    # the smallest context the settings allow, and a request that asks for more than all of it
    eng = Engine(EngineConfig(model_path, context_size=256, parallel=1)).start()
    try:
        eng.ready.result(timeout=120)
        slot_ctx = eng._lm.n_ctx_slot
        long_prompt = window(1, 30)  # longer than the whole context
        assert len(eng.tokenize(long_prompt, True)) > slot_ctx
        (r,) = run(eng, GenRequest("file:///small.py", long_prompt, max_tokens=1000, temperature=0, rule=NEVER_STOP))
        assert r.outcome == "done"
        assert r.prompt_tokens == slot_ctx - slot_ctx // 2 - 1  # cut to what the capped budget leaves
        assert 0 < r.generated_tokens <= slot_ctx // 2
        assert eng._lm.L.llama_memory_seq_pos_max(eng._lm.mem, r.slot) < slot_ctx
        # a prompt that fits is kept whole
        short = window(1, 3)
        (s,) = run(eng, GenRequest("file:///small.py", short, max_tokens=1000, temperature=0, rule=NEVER_STOP))
        assert s.outcome == "done" and s.prompt_tokens == len(eng.tokenize(short, True))
    finally:
        eng.close()


def test_a_lines_token_probabilities_agree_with_scoring_its_text(engine: Engine):
    prompt = CODE + "\n\ndef count_files(root):\n"
    (gen,) = run(engine, GenRequest("probs-a", prompt, max_tokens=8, rule=NEVER_STOP))
    assert gen.outcome == "done" and gen.generated_tokens == 8  # stopped by max_tokens: every token kept
    assert 0 < gen.min_prob <= gen.line_prob <= 1 and gen.min_prob <= gen.first_prob
    # log p(text | prompt), token by token, from a scoring request on another document's slot
    (scored,) = run(engine, GenRequest("probs-b", prompt + gen.text, max_tokens=0, score_from=len(prompt)))
    assert scored.scored_tokens == 8
    assert abs(math.exp(scored.score / scored.scored_tokens) - gen.line_prob) < 0.02


def test_a_generation_stopped_by_its_token_cap_says_so(engine: Engine):
    prompt = "def add(a, b):\n    return "
    (capped,) = run(engine, GenRequest("file:///cap.py", prompt, max_tokens=2, temperature=0, rule=NEVER_STOP))
    assert capped.outcome == "done" and capped.generated_tokens == 2 and capped.capped
    (line,) = run(engine, GenRequest("file:///cap.py", prompt, max_tokens=200, temperature=0, rule=StopRule()))
    assert line.outcome == "done" and not line.capped and line.generated_tokens < 200
