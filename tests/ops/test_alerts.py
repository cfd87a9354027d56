"""The alert rules: thresholds, evidence needed, one raise per episode, clearing."""

from __future__ import annotations

from suggest_ls.ops.alerts import AlertState, Reading, Thresholds, evaluate

GPU = Thresholds(mode="auto")
BUSY_GPU = Reading(
    tokens_per_second=30.0,
    generating_requests=40,
    p99_ms=450.0,
    latency_samples=40,
    gpu_used=70_000_000_000,
    gpu_total=80_000_000_000,
    accelerated=True,
)


def test_all_three_fire_on_a_gpu_past_every_threshold():
    judged = evaluate(BUSY_GPU, GPU)
    assert set(judged) == {"tokens_per_second", "gpu_memory", "p99_latency"}
    assert all(judged.values())
    assert "30.0 tokens/s" in judged["tokens_per_second"].message
    assert "88%" in judged["gpu_memory"].message
    assert "p99 latency 450 ms" in judged["p99_latency"].message


def test_auto_mode_does_not_judge_speed_on_a_cpu():
    cpu = Reading(tokens_per_second=20.0, generating_requests=100, p99_ms=4000.0, latency_samples=100)
    assert evaluate(cpu, Thresholds(mode="auto")) == {
        "tokens_per_second": None,
        "gpu_memory": None,
        "p99_latency": None,
    }
    judged = evaluate(cpu, Thresholds(mode="always"))
    assert judged["tokens_per_second"] and judged["p99_latency"]


def test_too_few_samples_leave_speed_and_latency_unjudged():
    few = Reading(tokens_per_second=1.0, generating_requests=5, p99_ms=9000.0, latency_samples=5, accelerated=True)
    judged = evaluate(few, Thresholds(min_samples=20))
    assert "tokens_per_second" not in judged and "p99_latency" not in judged
    assert judged["gpu_memory"] is None  # no GPU read: passes


def test_thresholds_are_configurable_and_zero_turns_a_check_off():
    limits = Thresholds(min_tokens_per_second=25.0, max_gpu_memory=0.9, max_p99_ms=0.0)
    judged = evaluate(BUSY_GPU, limits)
    assert judged == {"tokens_per_second": None, "gpu_memory": None, "p99_latency": None}
    assert evaluate(BUSY_GPU, Thresholds(mode="off")) == dict.fromkeys(judged)


def test_state_raises_once_keeps_without_evidence_and_clears_on_recovery():
    state = AlertState()
    raised, cleared = state.update(BUSY_GPU, GPU)
    assert {a.check for a in raised} == {"tokens_per_second", "gpu_memory", "p99_latency"} and not cleared
    raised, cleared = state.update(BUSY_GPU, GPU)
    assert raised == [] and cleared == []  # still firing: nothing new to announce
    thin = Reading(generating_requests=3, latency_samples=3, gpu_used=10, gpu_total=80, accelerated=True)
    raised, cleared = state.update(thin, GPU)
    assert cleared == ["gpu_memory"]  # GPU memory is read every time
    assert set(state.active) == {"tokens_per_second", "p99_latency"}  # too little evidence to clear these
    healthy = Reading(
        tokens_per_second=80.0,
        generating_requests=30,
        p99_ms=120.0,
        latency_samples=30,
        gpu_used=10,
        gpu_total=80,
        accelerated=True,
    )
    raised, cleared = state.update(healthy, GPU)
    assert sorted(cleared) == ["p99_latency", "tokens_per_second"] and not state.active
    assert state.reason() == ""


def test_an_empty_window_clears_speed_alerts():
    state = AlertState()
    state.update(BUSY_GPU, GPU)
    _, cleared = state.update(Reading(gpu_used=10, gpu_total=80, accelerated=True), GPU)
    assert sorted(cleared) == ["gpu_memory", "p99_latency", "tokens_per_second"]
