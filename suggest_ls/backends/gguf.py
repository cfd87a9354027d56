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


# ggml tensor types: (elements per block, bytes per block); types not listed are only bounds-checked by offset
_TYPE_SIZES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17),
}  # fmt: skip


class _Cursor:
    """Offsets into a memory-mapped GGUF; every read is bounds-checked."""

    def __init__(self, buf: Any) -> None:
        self.buf, self.pos, self.size = buf, 0, len(buf)

    def take(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise GGUFError("truncated GGUF header")
        value = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value[0] if len(value) == 1 else value

    def string(self) -> bytes:
        n = self.take("<Q")
        if n > MAX_STRING or self.pos + n > self.size:
            raise GGUFError("truncated GGUF header" if n <= MAX_STRING else "corrupt GGUF header (string too long)")
        self.pos += n
        return bytes(self.buf[self.pos - n : self.pos])

    def skip_value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, n = self.take("<IQ")
            if item in _SCALARS:
                self.pos += struct.calcsize(_SCALARS[item]) * n
            elif item == _STRING:  # the vocabulary: hundreds of thousands of strings, so a tight loop
                length, pos, buf = struct.Struct("<Q").unpack_from, self.pos, self.buf
                for _ in range(n):
                    if pos + 8 > self.size:
                        raise GGUFError("truncated GGUF header")
                    pos += 8 + length(buf, pos)[0]
                self.pos = pos
            else:
                for _ in range(n):
                    self.skip_value(item)
            if self.pos > self.size:
                raise GGUFError("truncated GGUF header")
            return None
        raise GGUFError(f"corrupt GGUF header (unknown value type {kind})")


def check_complete(path: Path) -> None:
    """Raise GGUFError unless the header parses and the file holds all the tensor data it declares."""
    import mmap

    size = path.stat().st_size
    if size < 24:
        raise GGUFError(f"truncated GGUF: {size} bytes")
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        cur = _Cursor(buf)
        if cur.take("4s") != b"GGUF":
            raise GGUFError("not a GGUF file")
        version, n_tensors, n_kv = cur.take("<IQQ")
        if version < 2 or n_kv > 1_000_000 or n_tensors > 1_000_000:
            raise GGUFError("corrupt GGUF header (impossible counts)")
        alignment = 32
        for _ in range(n_kv):
            key = cur.string()
            value = cur.skip_value(cur.take("<I"))
            if key == b"general.alignment" and isinstance(value, int) and value > 0:
                alignment = value
        need = 0
        for _ in range(n_tensors):
            cur.string()
            n_dims = cur.take("<I")
            if n_dims > 8:
                raise GGUFError("corrupt GGUF header (tensor with more than 8 dimensions)")
            dims = [cur.take("<Q") for _ in range(n_dims)]
            kind, offset = cur.take("<IQ")
            elements = 1
            for d in dims:
                elements *= d
            block, nbytes = _TYPE_SIZES.get(kind, (1, 0))
            need = max(need, offset + -(-elements // block) * nbytes)
        start = -(-cur.pos // alignment) * alignment
        if start + need > size:
            raise GGUFError(f"truncated GGUF: the file has {size:,} bytes, its tensors need {start + need:,}")
