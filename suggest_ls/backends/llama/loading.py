"""Loading a GGUF into llama.cpp: the offload plan, the model, its context, and what they say about themselves.

``load`` runs on the engine thread and returns a ``LoadedModel``: llama.cpp's handles and the few
calls the engine makes on them (tokenize, decode, logits, cache edits). Only the engine thread
touches it after that, until ``free``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from suggest_ls.backends.contract import LoadInfo, ModelInfo
from suggest_ls.backends.device import OffloadPlan, gpu_memory, plan_offload
from suggest_ls.backends.gguf import GGUFError, block_count
from suggest_ls.backends.models import ModelError, check_gguf, load_failure

log = logging.getLogger(__name__)
PROBE_TOKENS = 64  # the prompt chunk the prefill probe times


@dataclass(frozen=True)
class EngineConfig:
    """What the engine needs to load a model."""

    model_path: Path
    context_size: int = 4096
    parallel: int = 4
    threads: int = 0
    gpu_layers: int = -1
    batch_window_ms: int = 30
    n_batch: int = 512
    prefill_chunk: int = 128
    # Idle jobs (``priority < 0``: warming a document's prompt before it is asked for) evaluate at
    # most this many prompt tokens a step, so a live request arriving meanwhile waits one short step.
    idle_chunk: int = 16
    draft_tokens: int = 0
    draft_ngram: int = 3
    # Cache reuse by shifting: runs of at least this many prompt tokens found further on in the
    # slot's cache are moved down to their new positions instead of evaluated again (0: off).
    reuse_min: int = 32
    # Measure the prompt evaluation speed at load (one 64-token chunk, then dropped): the completer
    # sizes its prompt window from it.
    probe_prefill: bool = True


def cpu_has_amx(system_info: str) -> bool:
    """Whether llama.cpp's CPU backend reports AMX (``AMX_INT8 = 1`` in llama_print_system_info)."""
    return "AMX_INT8 = 1" in system_info


class LoadedModel:
    """A loaded model and its context: llama.cpp's handles, the engine thread's only."""

    def __init__(self, L: Any, model: Any, ctx: Any, cfg: EngineConfig, threads: int) -> None:
        self.L = L
        self.model = model
        self.ctx = ctx
        self.threads = threads
        self.vocab = L.llama_model_get_vocab(model)
        self.mem = L.llama_get_memory(ctx)
        # Moving cached tokens to other positions needs a cache that can re-rotate its keys (for
        # Gemma 3's sliding-window layers only with the full-size SWA cache set in ``_open_context``).
        self.can_shift = bool(L.llama_memory_can_shift(self.mem)) if hasattr(L, "llama_memory_can_shift") else False
        if cfg.reuse_min > 0 and not self.can_shift:
            log.info("this model's cache cannot shift: no cache reuse beyond the common prefix")
        self.n_swa = int(L.llama_model_n_swa(model)) if hasattr(L, "llama_model_n_swa") else 0
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.softmax_buf = np.empty(self.n_vocab, dtype=np.float32)  # the engine thread's scratch
        self.n_ctx_slot = L.llama_n_ctx_seq(ctx) if hasattr(L, "llama_n_ctx_seq") else cfg.context_size
        self.batch = L.llama_batch_init(cfg.n_batch, 0, 1)
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.bos = L.llama_vocab_bos(self.vocab)

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        """Tokenize with special tokens parsed (FIM markers are tokens)."""
        L = self.L
        data = text.encode("utf-8", errors="replace")
        cap = len(data) + 8
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_bos, True)
        if n < 0:
            cap = -n
            buf = (L.llama_token * cap)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_bos, True)
        return list(buf[:n])

    def piece(self, tok: int) -> bytes:
        """The bytes a token writes."""
        buf = ctypes.create_string_buffer(64)
        n = self.L.llama_token_to_piece(self.vocab, tok, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.L.llama_token_to_piece(self.vocab, tok, buf, -n, 0, False)
        return buf.raw[:n]

    def token_text(self, tok: int) -> str:
        """A token's text as the vocabulary spells it ("" for no token)."""
        if tok < 0:
            return ""
        raw = self.L.llama_vocab_get_text(self.vocab, tok)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def meta(self, key: str) -> str:
        """A GGUF metadata value as text ("" when absent)."""
        buf = ctypes.create_string_buffer(512)
        n = self.L.llama_model_meta_val_str(self.model, key.encode(), buf, 512)
        return buf.value.decode("utf-8", errors="replace") if n >= 0 else ""

    def is_eog(self, tok: int) -> bool:
        """Whether ``tok`` ends generation."""
        return bool(self.L.llama_vocab_is_eog(self.vocab, tok))

    def logits(self, index: int) -> np.ndarray:
        """The logits of batch row ``index`` of the last decode (a view into llama.cpp's buffer)."""
        ptr = self.L.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def put(self, i: int, tok: int, pos: int, seq: int, logits: bool) -> None:
        """Row ``i`` of the batch: ``tok`` at ``pos`` of sequence ``seq``, its logits wanted or not."""
        b = self.batch  # llama_batch
        b.token[i] = tok
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = 1 if logits else 0

    def decode(self, n: int) -> int:
        """Evaluate the batch's first ``n`` rows; llama.cpp's return code (0: done)."""
        self.batch.n_tokens = n
        return int(self.L.llama_decode(self.ctx, self.batch))

    def set_threads(self, threads: int) -> None:
        """Decode with ``threads`` threads from now on."""
        self.L.llama_set_n_threads(self.ctx, threads, threads)
        self.threads = threads

    def drop(self, seq: int, start: int) -> None:
        """Remove sequence ``seq``'s cached tokens from position ``start`` on."""
        self.L.llama_memory_seq_rm(self.mem, seq, start, -1)

    def free(self) -> None:
        """Free the batch, the context and the model."""
        self.L.llama_batch_free(self.batch)
        self.L.llama_free(self.ctx)
        self.L.llama_model_free(self.model)


def load(cfg: EngineConfig) -> tuple[LoadedModel, LoadInfo]:
    """Load ``cfg.model_path`` (on the GPU as far as it fits) and create its context."""
    import llama_cpp as L
    from llama_cpp._logger import set_verbose

    set_verbose(log.isEnabledFor(logging.DEBUG))
    check_gguf(cfg.model_path)
    t0 = time.perf_counter()
    L.llama_backend_init()
    try:
        n_layers = block_count(cfg.model_path)
    except GGUFError as exc:
        raise ModelError(f"{exc}: {cfg.model_path}") from exc
    size = cfg.model_path.stat().st_size
    model, plan = _open_model(L, cfg, n_layers, size)
    threads = cfg.threads or os.cpu_count() or 1
    loaded = LoadedModel(L, model, _open_context(L, model, cfg, threads), cfg, threads)
    model_info = describe(loaded)
    prefill_tps = probe_prefill(loaded) if cfg.probe_prefill else 0.0
    desc = ctypes.create_string_buffer(256)
    L.llama_model_desc(model, desc, 256)
    info = LoadInfo(
        model=model_info,
        path=str(cfg.model_path),
        size_bytes=size,
        n_layers=n_layers,
        gpu_layers=min(plan.layers, n_layers + 1),
        device=_device(plan),
        offload_reason=plan.reason,
        load_ms=(time.perf_counter() - t0) * 1000,
        n_ctx=loaded.n_ctx_slot,
        parallel=cfg.parallel,
        threads=threads,
        quantization=desc.value.decode(errors="replace"),
        prefill_tps=prefill_tps,
    )
    log.info(
        "loaded %s (%s) in %.0f ms on %s, %d/%d layers offloaded; prompt evaluation %.0f tokens/s",
        model_info.name or cfg.model_path.name,
        info.quantization,
        info.load_ms,
        info.device,
        info.gpu_layers,
        n_layers + 1,
        prefill_tps,
    )
    return loaded, info


def _open_model(L: Any, cfg: EngineConfig, n_layers: int, size: int) -> tuple[Any, OffloadPlan]:
    """The model's weights, offloaded as planned; on the CPU if the GPU load fails."""
    path = str(cfg.model_path).encode()
    mparams = L.llama_model_default_params()
    kv_guess = 2 * cfg.context_size * cfg.parallel * n_layers * 1024
    plan = plan_offload(cfg.gpu_layers, n_layers, size, kv_guess, bool(L.llama_supports_gpu_offload()), gpu_memory())
    log.info("offload: %s", plan.reason)
    mparams.n_gpu_layers = plan.layers
    if cpu_has_amx(L.llama_print_system_info().decode(errors="replace")):
        # llama.cpp's AMX matrix kernels (an extra CPU buffer type, picked on CPUs with AMX) crash
        # inside llama_decode with this build; without extra buffer types the AVX-512 kernels run.
        mparams.use_extra_bufts = False
        log.info("CPU has AMX: llama.cpp's AMX kernels are turned off (they crash in decoding)")
    model = L.llama_model_load_from_file(path, mparams)
    if not model and plan.layers:
        log.warning("GPU load failed; retrying on the CPU")
        mparams.n_gpu_layers = 0
        plan = plan_offload(0, n_layers, size, kv_guess, False, None)
        model = L.llama_model_load_from_file(path, mparams)
    if not model:
        raise ModelError(load_failure(cfg.model_path))
    return model, plan


def _open_context(L: Any, model: Any, cfg: EngineConfig, threads: int) -> Any:
    """A context of ``parallel`` sequences of ``context_size`` tokens each (the model is freed if none)."""
    cparams = L.llama_context_default_params()
    cparams.n_ctx = cfg.context_size * cfg.parallel
    cparams.n_batch = cfg.n_batch
    cparams.n_ubatch = cfg.n_batch
    cparams.n_seq_max = cfg.parallel
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    cparams.swa_full = True
    cparams.kv_unified = False
    ctx = L.llama_init_from_model(model, cparams)
    if not ctx:
        L.llama_model_free(model)
        raise ModelError("llama.cpp could not create a context (out of memory?)")
    return ctx


def describe(loaded: LoadedModel) -> ModelInfo:
    """What the model says about itself: its name, architecture and FIM tokens."""
    L, vocab = loaded.L, loaded.vocab
    return ModelInfo(
        name=loaded.meta("general.name"),
        architecture=loaded.meta("general.architecture"),
        fim_prefix=loaded.token_text(L.llama_vocab_fim_pre(vocab)),
        fim_suffix=loaded.token_text(L.llama_vocab_fim_suf(vocab)),
        fim_middle=loaded.token_text(L.llama_vocab_fim_mid(vocab)),
        eos=loaded.token_text(L.llama_vocab_eos(vocab)),
    )


def probe_prefill(loaded: LoadedModel) -> float:
    """Prompt tokens per second: one chunk of code evaluated in sequence 0, then removed."""
    tokens = loaded.tokenize("def f(x):\n    return x + 1\n" * 16, loaded.add_bos)[:PROBE_TOKENS]
    if len(tokens) < 8:
        return 0.0
    rc, dt = 0, 0.0
    for run in (tokens[:4], tokens):  # the first touches the weights (memory-mapped), untimed
        for i, tok in enumerate(run):
            loaded.put(i, tok, i, 0, i == len(run) - 1)
        t0 = time.perf_counter()
        rc = loaded.decode(len(run))
        dt = time.perf_counter() - t0
        loaded.drop(0, 0)
        if rc != 0:
            return 0.0
    return len(tokens) / dt if dt > 0 else 0.0


def _device(plan: OffloadPlan) -> str:
    if not plan.layers:
        return "CPU"
    mem = gpu_memory()
    return f"CUDA ({mem.name})" if mem else "GPU"
