"""The quality benchmark: task construction, test execution, and a tiny run through the real server."""

from __future__ import annotations

import json
import time

import pytest

from suggest_ls.bench import quality
from suggest_ls.bench.quality.arms import utf16_to_offset
from suggest_ls.bench.quality.scoring import Outcome, by_min_confidence, run_program, summarize
from suggest_ls.bench.quality.tasks import build_tasks, load_problems
from suggest_ls.harness.wire import position


@pytest.fixture(scope="module")
def problems():
    return load_problems()


def test_task_counts_match_the_fim_paper(problems):
    assert len(problems) == 164
    assert len(build_tasks(problems, "single")) == 1033
    assert len(build_tasks(problems, "multi")) == 5815


def test_document_and_program_of_a_task(problems):
    task = build_tasks(problems, "single")[0]
    assert task.task_id == "HumanEval/0/0"
    assert task.document == task.prefix + "\n" + task.suffix
    assert task.document[task.offset - 1 : task.offset + 1] == "\n\n"  # the hole is an empty line
    assert task.middle == "    for idx, elem in enumerate(numbers):"
    assert task.program(task.middle).endswith("check(has_close_elements)\n")


def test_reference_middles_pass_and_broken_ones_fail(problems):
    tasks = build_tasks(problems, "single")[::97]
    assert all(run_program(t.program(t.middle)) for t in tasks)
    broken = [run_program(t.program(t.middle.split(t.middle.strip())[0] + "raise SystemExit(3)")) for t in tasks]
    assert sum(broken) <= len(tasks) // 5  # only lines the tests never reach may pass


def test_a_program_that_hangs_is_stopped():
    started = time.perf_counter()
    assert run_program("while True:\n    pass\n", timeout=0.5) is False
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize("text", ["abc\ndef\n", "a😀b\nxyz", "\n\n\n"])
def test_positions_round_trip_in_utf16(text):
    for offset in range(len(text) + 1):
        assert utf16_to_offset(text, position(text, offset)) == offset


def test_summary_counts_hidden_suggestions_as_failures():
    outs = [
        Outcome(text="x", shown=True, passed=True, exact=True, ms=10),
        Outcome(text="y", shown=True, passed=False, ms=20),
        Outcome(reason="abstained (NEXT_TOKEN)", ms=5),
        Outcome(reason="abstained (NEXT_TOKEN)", ms=5),
    ]
    s = summarize(outs)
    assert (s["pass@1"], s["exact"], s["shown"], s["precision"]) == (25.0, 25.0, 50.0, 50.0)
    assert s["not_shown"] == {"abstained (NEXT_TOKEN)": 2}


def test_min_confidence_curve_trades_shown_suggestions_for_precision():
    outs = [
        Outcome(text="a", shown=True, passed=True, confidence=0.9),
        Outcome(text="b", shown=True, passed=True, confidence=0.65),
        Outcome(text="c", shown=True, passed=False, confidence=0.35),
        Outcome(text="d", shown=True, passed=False, confidence=0.1),
        Outcome(reason="model ended the line"),
    ]
    rows = {r["min_confidence"]: r for r in by_min_confidence(outs)}
    assert (rows[0.0]["shown"], rows[0.0]["pass@1"], rows[0.0]["precision"]) == (80.0, 40.0, 50.0)
    assert (rows[0.3]["shown"], rows[0.3]["precision"]) == (60.0, 66.67)
    assert (rows[0.6]["shown"], rows[0.6]["pass@1"], rows[0.6]["precision"]) == (40.0, 40.0, 100.0)
    assert rows[0.9]["shown"] == 20.0 and rows[0.9]["pass@1"] == 20.0
    assert by_min_confidence([Outcome(text="x", shown=True)]) == []  # no confidences recorded


def test_a_small_run_through_the_real_server(tmp_path, capsys):
    out = tmp_path / "quality.json"
    rc = quality.main(["--limit", "2", "--stride", "400", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    single = report["sets"]["single"]
    assert set(single) == {"pipeline", "raw"}
    tasks = report["tasks"]["single"]
    assert [t["task"] for t in tasks] == ["HumanEval/0/0", "HumanEval/78/1"]
    for arm, figures in single.items():
        # the figures are the per-task outcomes summed up
        rows = [t[arm] for t in tasks]
        assert figures["tasks"] == len(rows) == 2
        assert figures["passed"] == sum(r["passed"] for r in rows)
        assert figures["pass@1"] == round(100 * figures["passed"] / 2, 2)
        assert figures["shown"] == round(100 * sum(r["shown"] for r in rows) / 2, 2)
        assert figures["exact"] == round(100 * sum(r["exact"] for r in rows) / 2, 2)
        assert figures["latency_ms"]["n"] == 2
        for r in rows:
            assert not r["passed"] or (r["shown"] and r["text"]), (arm, r)  # only shown text can pass
            assert not r["exact"] or r["passed"], (arm, r)  # the canonical line passes its tests
            assert r["shown"] or r["reason"], (arm, r)  # an empty answer says why
            assert r["ms"] >= 0
        not_shown = sum(not r["shown"] for r in rows)
        assert sum(figures["not_shown"].values()) == not_shown
    assert all(0 <= t["pipeline"]["confidence"] <= 1 for t in tasks if t["pipeline"]["shown"])
    out = capsys.readouterr().out
    if single["raw"]["pass@1"]:
        ratio = single["pipeline"]["pass@1"] / single["raw"]["pass@1"]
        assert f"single: pipeline/raw pass@1 = {ratio:.2f}" in out
    else:
        assert "pipeline/raw pass@1" not in out
    assert (tmp_path / "quality.png").stat().st_size > 1000
    assert "pipeline/raw pass@1" in capsys.readouterr().out or single["raw"]["pass@1"] == 0
