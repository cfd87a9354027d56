"""A minimal GGUF header reader: scalar metadata without loading the model."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_STRING = 1 << 24


class GGUFError(ValueError):
    """A file that is not a readable GGUF."""


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise GGUFError("truncated GGUF header")
    return data


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _read(f, 8))
    if n > MAX_STRING:
        raise GGUFError("corrupt GGUF header (string too long)")
    return _read(f, n).decode("utf-8", errors="replace")


def _value(f: BinaryIO, kind: int, keep: bool) -> Any:
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, n = struct.unpack("<IQ", _read(f, 12))
        if item in _SCALARS and not keep:
            f.seek(struct.calcsize(_SCALARS[item]) * n, 1)
            return None
        values = [_value(f, item, keep) for _ in range(n)]
        return values if keep else None
    raise GGUFError(f"corrupt GGUF header (unknown value type {kind})")


def read_metadata(path: Path, until: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Scalar metadata of a GGUF file (arrays are skipped); stops early once ``until`` is true."""
    out: dict[str, Any] = {}
    with path.open("rb") as f:
        if _read(f, 4) != b"GGUF":
            raise GGUFError("not a GGUF file")
        (version,) = struct.unpack("<I", _read(f, 4))
        if version < 2:
            raise GGUFError(f"GGUF version {version} is not supported")
        _tensors, n_kv = struct.unpack("<QQ", _read(f, 16))
        if n_kv > 1_000_000:
            raise GGUFError("corrupt GGUF header (too many keys)")
        for _ in range(n_kv):
            key = _string(f)
            (kind,) = struct.unpack("<I", _read(f, 4))
            value = _value(f, kind, keep=False)
            if value is not None:
                out[key] = value
            if until is not None and until(out):
                break
    return out


def block_count(path: Path) -> int:
    """Number of transformer blocks (layers) the GGUF declares; 0 if unknown."""

    def found(meta: dict[str, Any]) -> bool:
        arch = meta.get("general.architecture")
        return arch is not None and f"{arch}.block_count" in meta

    meta = read_metadata(path, found)
    arch = meta.get("general.architecture", "")
    return int(meta.get(f"{arch}.block_count", 0))
