"""``suggest-ls quantize``: llama.cpp's in-process quantizer with a progress display.

``llama_model_quantize`` has no progress callback, but it logs one line per tensor
(``[  12/ 236] blk.0.attn_k.weight ...``); the llama.cpp log is captured while it runs and
those lines become progress. The output is written to a temporary file and renamed when done,
so an interrupted run never leaves a truncated model behind.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suggest_ls.backends.models import ModelError, check_gguf

_TENSOR = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\]\s+(\S+)")
_LOCK = threading.Lock()  # the llama.cpp log callback is process-wide


@dataclass(frozen=True)
class QuantizeResult:
    """What was written."""

    path: Path
    qtype: str
    in_bytes: int
    out_bytes: int
    seconds: float
    tensors: int


def quant_types() -> dict[str, int]:
    """Quantization type names (``Q4_K_M``, ``Q8_0``, ``F16``...) and their llama.cpp file types."""
    import llama_cpp as L

    out = {
        name[len("LLAMA_FTYPE_MOSTLY_") :]: int(getattr(L, name))
        for name in dir(L)
        if name.startswith("LLAMA_FTYPE_MOSTLY_")
    }
    out["F32"] = int(L.LLAMA_FTYPE_ALL_F32)
    return out


def quantize(
    src: Path,
    dst: Path,
    qtype: str,
    threads: int = 0,
    allow_requantize: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> QuantizeResult:
    """Quantize ``src`` into ``dst`` as ``qtype``; ``progress(done, total, tensor)`` after each tensor."""
    import llama_cpp as L

    known = quant_types()
    key = qtype.upper()
    if key not in known:
        raise ModelError(f"unknown quantization type {qtype!r}; one of {', '.join(sorted(known))}")
    check_gguf(src)
    if src.resolve() == dst.resolve():
        raise ModelError("input and output are the same file")
    dst.parent.mkdir(parents=True, exist_ok=True)
    params = L.llama_model_quantize_default_params()
    params.ftype = known[key]
    params.nthread = threads
    params.allow_requantize = allow_requantize
    lines: list[str] = []
    tensors = 0

    def on_log(text: str) -> None:
        nonlocal tensors
        lines.append(text)
        del lines[:-50]
        m = _TENSOR.search(text)
        if m:
            tensors = int(m.group(2))
            if progress:
                progress(int(m.group(1)), tensors, m.group(3))

    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    os.close(fd)
    t0 = time.perf_counter()
    try:
        with _LOCK, _CapturedLog(on_log):
            rc = L.llama_model_quantize(str(src).encode(), tmp.encode(), ctypes.byref(params))
        if rc != 0:
            errors = [ln.strip() for ln in lines if "error" in ln.lower() or "failed" in ln.lower()]
            hint = errors[-1] if errors else "".join(lines[-3:]).strip()
            if "requantiz" in hint and not allow_requantize:
                hint += " (the input is already quantized: pass --allow-requantize)"
            raise ModelError(f"llama.cpp could not quantize {src}: {hint or f'rc={rc}'}")
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return QuantizeResult(
        dst, key, src.stat().st_size, dst.stat().st_size, time.perf_counter() - t0, tensors or len(lines)
    )


class _CapturedLog:
    """Route llama.cpp's log to ``sink`` for the duration of a ``with`` block, then restore llama-cpp-python's."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        import llama_cpp as L

        self._L: Any = L
        self._sink = sink

        def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            try:
                sink(text.decode("utf-8", errors="replace"))
            except Exception:  # never raise through C
                pass

        self._callback = L.llama_log_callback(callback)  # keep a reference while llama.cpp holds it

    def __enter__(self) -> _CapturedLog:
        self._L.llama_log_set(self._callback, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc: object) -> None:
        from llama_cpp import _logger

        self._L.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def main(args: Any) -> int:
    """The ``suggest-ls quantize`` command: quantize with a progress line on stderr."""
    tty = sys.stderr.isatty()
    shown = [-1]

    def progress(done: int, total: int, name: str) -> None:
        pct = done * 100 // max(1, total)
        if tty:
            print(f"\r[{done:4d}/{total}] {pct:3d}% {name[:48]:48}", end="", file=sys.stderr, flush=True)
        elif pct // 10 != shown[0] // 10 or done == total:
            shown[0] = pct
            print(f"[{done:4d}/{total}] {pct:3d}% {name}", file=sys.stderr, flush=True)

    src, dst = Path(args.input), Path(args.output)
    if dst.exists() and not args.force:
        print(f"error: {dst} exists (use --force to overwrite)", file=sys.stderr)
        return 2
    try:
        result = quantize(src, dst, args.type, args.threads, args.allow_requantize, progress)
    except ModelError as exc:
        if tty:
            print(file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if tty:
        print(file=sys.stderr)
    print(
        f"wrote {result.path} ({result.qtype}): {result.in_bytes / 1e6:.1f} MB -> {result.out_bytes / 1e6:.1f} MB, "
        f"{result.tensors} tensors in {result.seconds:.1f} s"
    )
    return 0
