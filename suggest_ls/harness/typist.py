"""A simulated person typing real source files: keystrokes in bursts and pauses, seeded.

Each file gets a typing point at the start of a line inside a function (past the first third of
the file); the document is opened with the span about to be typed taken out, and the span is
then typed back one character at a time. A newline brings the next line's indentation with it,
as an editor's auto-indent does. The typist pauses after lines, punctuation and some words; one
typist may move between documents at line ends, or each document can have its own typist.
"""

from __future__ import annotations

import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FILES = ("textwrap.py", "json/decoder.py")


@dataclass(frozen=True)
class Rhythm:
    """How the typist types: gaps inside a burst, pauses and where they happen."""

    key_ms: float = 140.0
    jitter: float = 0.35
    pause_ms: tuple[float, float] = (400.0, 1500.0)
    pause_line: float = 0.7
    pause_punct: float = 0.4
    pause_word: float = 0.2
    pause_any: float = 0.03
    switch: float = 0.35


@dataclass(frozen=True)
class Source:
    """One document of the replay: its opening text and where the typing goes in."""

    uri: str
    path: str
    initial: str
    start: int
    typed: str


@dataclass(frozen=True)
class Keystroke:
    """One edit: ``text`` inserted at ``offset`` of document ``doc``, ``at`` seconds into the replay."""

    at: float
    doc: int
    offset: int
    text: str
    pause_after: bool


def stdlib_file(name: str) -> Path:
    """A module of the Python standard library on this machine (or any path as given)."""
    path = Path(name)
    if path.is_file():
        return path
    return Path(sysconfig.get_paths()["stdlib"]) / name


def typing_point(text: str, rng: random.Random) -> int:
    """An offset after the indentation of a function's first line (the editor indented it), past the first third."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    candidates = []
    for i in range(1, len(lines) - 1):
        prev = lines[i - 1].strip()
        if offsets[i] < len(text) // 3:
            continue
        body = lines[i].strip()
        if prev.startswith("def ") and prev.endswith(":") and body and not body.startswith(('"', "'", "#")):
            candidates.append(offsets[i] + len(lines[i]) - len(lines[i].lstrip(" \t")))
    if not candidates:
        return offsets[len(lines) // 2]
    return rng.choice(candidates)


def _chunks(text: str, start: int) -> list[str]:
    """The edits that type ``text[start:]``: characters, a newline carrying the next indentation."""
    out: list[str] = []
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\n":
            j = i + 1
            while j < len(text) and text[j] in " \t":
                j += 1
            out.append(text[i:j])
            i = j
        else:
            out.append(ch)
            i += 1
    return out


def _gap(rhythm: Rhythm, rng: random.Random) -> float:
    return rhythm.key_ms * rng.lognormvariate(0.0, rhythm.jitter) / 1000


def _pauses(chunk: str, rhythm: Rhythm, rng: random.Random) -> bool:
    if chunk.startswith("\n"):
        return False  # the pause comes before the newline: the line is finished, then Enter
    if chunk in "([{,.=:":
        return rng.random() < rhythm.pause_punct
    if chunk == " ":
        return rng.random() < rhythm.pause_word
    return rng.random() < rhythm.pause_any


def plan(
    files: list[str], seconds: float, rhythm: Rhythm, seed: int = 1, concurrent: bool = False
) -> tuple[list[Source], list[Keystroke]]:
    """The documents to open and the keystrokes that type into them for ``seconds``."""
    rng = random.Random(seed)
    texts = [stdlib_file(f).read_text(encoding="utf-8") for f in files]
    starts = [typing_point(t, rng) for t in texts]
    chunks = [_chunks(t, s) for t, s in zip(texts, starts, strict=True)]
    consumed = [0] * len(files)
    typed = [0] * len(files)
    keys: list[Keystroke] = []
    clocks = [0.5] * len(files) if concurrent else [0.5]
    doc = 0
    while True:
        typist = doc if concurrent else 0
        now = clocks[typist]
        if now >= seconds or consumed[doc] >= len(chunks[doc]):
            if concurrent:
                clocks[typist] = float("inf")
                live = [d for d in range(len(files)) if clocks[d] < seconds and consumed[d] < len(chunks[d])]
                if not live:
                    break
                doc = min(live, key=lambda d: clocks[d])
                continue
            break
        chunk = chunks[doc][consumed[doc]]
        nxt = chunks[doc][consumed[doc] + 1] if consumed[doc] + 1 < len(chunks[doc]) else ""
        pause = _pauses(chunk, rhythm, rng) or (nxt.startswith("\n") and rng.random() < rhythm.pause_line)
        keys.append(Keystroke(now, doc, starts[doc] + typed[doc], chunk, pause))
        consumed[doc] += 1
        typed[doc] += len(chunk)
        step = _gap(rhythm, rng)
        if pause:
            step += rng.uniform(*rhythm.pause_ms) / 1000
        clocks[typist] = now + step
        if concurrent:
            doc = min(range(len(files)), key=lambda d: clocks[d])
        elif chunk.startswith("\n") and len(files) > 1 and rng.random() < rhythm.switch:
            doc = (doc + 1) % len(files)
    keys.sort(key=lambda k: k.at)
    sources = []
    for i, (f, t) in enumerate(zip(files, texts, strict=True)):
        end = starts[i] + typed[i]
        line_end = t.find("\n", end)
        cut = len(t) if line_end < 0 else max(end, line_end)  # the rest of the last typed line goes too
        sources.append(
            Source(
                uri=stdlib_file(f).resolve().as_uri(),
                path=str(stdlib_file(f)),
                initial=t[: starts[i]] + t[cut:],
                start=starts[i],
                typed=t[starts[i] : end],
            )
        )
    return sources, _mark_last(keys)


def _mark_last(keys: list[Keystroke]) -> list[Keystroke]:
    """The last keystroke of each document ends a burst too."""
    last: dict[int, int] = {}
    for i, k in enumerate(keys):
        last[k.doc] = i
    out = list(keys)
    for i in last.values():
        k = out[i]
        out[i] = Keystroke(k.at, k.doc, k.offset, k.text, True)
    return out
