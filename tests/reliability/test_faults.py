"""Model and engine faults on the real engine: broken GGUF files, failing decodes (as llama.cpp
reports a full KV cache: rc=1), exceptions inside a step, prompts longer than the context."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pytest

from suggest_ls.backends.contract import GenRequest, GenResult
from suggest_ls.backends.llama.engine import Engine
from suggest_ls.backends.llama.loading import EngineConfig
from suggest_ls.backends.models import ModelError

PROMPT = "def add(a, b):\n    return "


def generate(engine: Engine, prompt: str = PROMPT, key: str = "faults", max_tokens: int = 8) -> Future[GenResult]:
    """Submit a greedy generation; the future resolves with its result."""
    done: Future[GenResult] = Future()
    engine.submit(GenRequest(key, prompt, max_tokens=max_tokens, temperature=0), done.set_result)
    return done


class FaultyLlama:
    """The llama_cpp module with ``llama_decode`` failing on demand: an rc, or an exception."""

    def __init__(self, real: object, faults: list[object]) -> None:
        self._real = real
        self.faults = list(faults)

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def llama_decode(self, ctx: object, batch: object) -> int:
        if self.faults:
            fault = self.faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return int(fault)  # type: ignore[call-overload]
        return self._real.llama_decode(ctx, batch)  # type: ignore[attr-defined, no-any-return]


def _model_file(model_path: Path, tmp: Path, name: str) -> Path:
    data = model_path.read_bytes()
    path = tmp / f"{name}.gguf"
    if name == "empty":
        path.write_bytes(b"")
    elif name == "text":
        path.write_text("this is not a model\n")
    elif name == "truncated-header":
        path.write_bytes(data[:4000])
    elif name == "truncated-data":
        path.write_bytes(data[: len(data) // 3])
    elif name == "corrupt-header":
        broken = bytearray(data[:2_000_000])
        broken[100:140] = b"\xff" * 40
        path.write_bytes(bytes(broken))
    return path


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing", "model file not found"),
        ("empty", "bad magic"),
        ("text", "bad magic"),
        ("truncated-header", "truncated GGUF header"),
        ("truncated-data", "truncated GGUF: the file has"),
        ("corrupt-header", "corrupt GGUF header"),
    ],
)
def test_broken_model_files_give_clear_messages(model_path, tmp_path, name, message):
    path = _model_file(model_path, tmp_path, name)
    engine = Engine(EngineConfig(path, context_size=256, parallel=1)).start()
    try:
        with pytest.raises(ModelError, match=message) as caught:
            engine.ready.result(timeout=120)
        assert str(path) in str(caught.value)
        # the engine answers instead of hanging
        assert generate(engine).result(timeout=10).outcome == "error"
    finally:
        engine.close()


@pytest.mark.parametrize("fault", [1, -3, RuntimeError("injected")], ids=["kv-cache-full", "decode-error", "exception"])
def test_a_failed_decode_fails_its_jobs_and_the_engine_keeps_working(engine, monkeypatch, fault):
    before = generate(engine).result(timeout=120)
    assert before.outcome == "done" and before.text
    errors = engine.stats["errors"]
    faulty = FaultyLlama(engine._lm.L, [fault])
    monkeypatch.setattr(engine._lm, "L", faulty)
    both = [generate(engine, key="faults-a"), generate(engine, PROMPT.replace("add", "plus"), key="faults-b")]
    results = [f.result(timeout=120) for f in both]
    assert faulty.faults == []
    assert any(r.outcome == "error" and "decode failed" in r.error for r in results), results
    assert engine.stats["errors"] == errors + 1
    # not wedged: the same request again gives the same greedy text (the cleared cache is re-evaluated)
    after = generate(engine).result(timeout=120)
    assert after.outcome == "done" and after.text == before.text


def test_prompts_longer_than_the_context_are_trimmed_not_failed(model_path):
    engine = Engine(EngineConfig(model_path, context_size=256, parallel=1, batch_window_ms=0)).start()
    try:
        info = engine.ready.result(timeout=120)
        long_prompt = "".join(f"value_{i} = {i} * 2\n" for i in range(200)) + PROMPT
        assert len(engine.tokenize(long_prompt, True)) > 3 * info.n_ctx
        result = generate(engine, long_prompt, max_tokens=8).result(timeout=300)
        assert result.outcome == "done", result
        assert result.prompt_tokens <= info.n_ctx - 8
        assert result.text
    finally:
        engine.close()


def test_a_model_too_large_for_the_gpu_is_partly_offloaded_or_runs_on_the_cpu():
    from suggest_ls.backends.device import GpuMemory, plan_offload

    gib = 2**30
    card = GpuMemory("Test GPU", used=4 * gib, free=20 * gib, total=24 * gib)
    fits = plan_offload(-1, 32, 4 * gib, 1 * gib, True, card)
    assert fits.layers == 33 and "33 layers offloaded" in fits.reason
    big = plan_offload(-1, 79, 40 * gib, 2 * gib, True, card)  # a 40 GB model on a 24 GB card
    assert 0 < big.layers < 80
    assert big.reason.startswith(f"partial offload: {big.layers} of 80 layers fit")
    assert big.layers * (42 * gib / 80) <= card.free - 0.1 * card.total
    full = GpuMemory("Busy GPU", used=23 * gib, free=1 * gib, total=24 * gib)
    assert plan_offload(-1, 32, 4 * gib, gib, True, full).layers == 0
    assert "CPU: only 1.0 GiB free" in plan_offload(-1, 32, 4 * gib, gib, True, full).reason
    assert plan_offload(-1, 32, 4 * gib, gib, False, card).reason == "CPU: this llama.cpp build has no GPU offload"
    assert plan_offload(0, 32, 4 * gib, gib, True, card).layers == 0
