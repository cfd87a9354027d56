"""Prompt templates: fill-in-the-middle families detected from the GGUF, else the code itself (or the rules prompt)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from suggest_ls.backends.contract import ModelInfo
from suggest_ls.completion.context import Chunk, Cursor

RULES = (
    "Task: Complete the next step in this function.\n"
    "Rules:\n"
    "- Only output code, no explanations.\n"
    "- Do not add comments.\n"
    "- Use the same indentation style.\n"
    '- If unsure, output "NEXT_TOKEN".\n'
    "Code:\n"
)
# Line comment marker by LSP language id (and file extension, for the command line); "//" otherwise.
_HASH = "python py shellscript sh bash zsh ruby rb perl pl r yaml yml toml makefile dockerfile cmake nim julia jl"
_DASH = "lua sql haskell hs elm ada vhdl"
COMMENTS = {**{k: "#" for k in _HASH.split()}, **{k: "--" for k in _DASH.split()}, "lisp": ";", "clojure": ";"}


@dataclass(frozen=True)
class Template:
    """How to lay a cursor out as a prompt; ``{prefix}``/``{suffix}`` are filled in."""

    name: str
    fmt: str
    stop: tuple[str, ...] = ()
    fim: bool = False
    # Repo-level file layout (``{path}``, ``{text}``) for extra chunks, and the current file's header;
    # empty: extra chunks go before the prefix as commented-out lines.
    file_fmt: str = ""
    current_fmt: str = ""
    extra: bool = True
    # Leave the prefix's trailing spaces and tabs for the model to write (suffix-first layouts
    # where that was measured, see ``build_prompt``).
    trim_tail: bool = False


def _fim(name: str, fmt: str, *stop: str, file_fmt: str = "", current_fmt: str = "") -> Template:
    return Template(name, fmt, tuple(s for s in stop if s), True, file_fmt, current_fmt)


FAMILIES: dict[str, Template] = {
    # Suffix-first (SPM) where the family was trained on it: the suffix stays cached while typing.
    "starcoder": _fim(
        "starcoder",
        "{extra}<fim_prefix><fim_suffix>{suffix}<fim_middle>{prefix}",
        "<|endoftext|>",
        "<file_sep>",
        "<fim_prefix>",
        file_fmt="<file_sep>{path}\n{text}",
        current_fmt="<file_sep>{path}\n",
    ),
    "codellama": _fim("codellama", "<PRE> <SUF>{suffix} <MID> {prefix}", "<EOT>", "</s>"),
    "deepseek": _fim(
        "deepseek", "<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>", "<|EOT|>", "<｜end▁of▁sentence｜>"
    ),
    "qwen": _fim(
        "qwen",
        "{extra}<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
        "<|endoftext|>",
        "<|file_sep|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        file_fmt="<|file_sep|>{path}\n{text}",
        current_fmt="<|file_sep|>{path}\n",
    ),
    # Qwen2.5-Coder asked suffix-first, in StarCoder's SPM layout (its own tokens), its default:
    # typing at the cursor changes only the prompt's tail, so the suffix stays cached between
    # keystrokes. "qwen" is its own prefix-first layout (the benchmarks' raw model).
    "qwen-spm": replace(
        _fim(
            "qwen-spm",
            "{extra}<|fim_prefix|><|fim_suffix|>{suffix}<|fim_middle|>{prefix}",
            "<|endoftext|>",
            "<|file_sep|>",
            "<|fim_pad|>",
            "<|repo_name|>",
            file_fmt="<|file_sep|>{path}\n{text}",
            current_fmt="<|file_sep|>{path}\n",
        ),
        trim_tail=True,
    ),
    "codestral": _fim("codestral", "[SUFFIX]{suffix}[PREFIX]{prefix}", "</s>"),
    "codegemma": _fim(
        "codegemma", "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>", "<|file_separator|>", "<eos>"
    ),
    # The default without FIM tokens: the code itself under a comment with the file's name (extra
    # context as comments above it). On HumanEval single-line infilling with Gemma 3 270M the terse
    # rules prompt lost 3.9 points against the bare code (11.5 with reranking) and the model never
    # wrote NEXT_TOKEN; it stays as an option. The name line was neutral there (+3.8 / -1.9 points).
    "plain": Template("plain", "{extra}{file}{prefix}", ("\n\n\n",)),
    "rules": Template("rules", RULES + "{extra}{prefix}", ("\n\n\n",)),
    "bare": Template("bare", "{prefix}", ("\n\n\n",), extra=False),
}


def own_layout(template: Template) -> Template:
    """The layout the model family documents for itself (what a raw-model baseline uses)."""
    return FAMILIES["qwen"] if template.name == "qwen-spm" else template


def detect_template(info: ModelInfo, override: str = "") -> Template:
    """Pick the template for a model: the user's override, a FIM family, else the plain code prompt."""
    if override:
        if override in FAMILIES:
            return FAMILIES[override]
        return Template("custom", override, (info.eos,) if info.eos else ())
    pre = info.fim_prefix.strip().replace("▁", "")
    name = f"{info.name} {info.architecture}".lower()
    if pre == "<fim_prefix>":
        return FAMILIES["starcoder"]
    if pre in ("<PRE>", "<pre>"):
        return FAMILIES["codellama"]
    if "fim" in pre and "begin" in pre:
        return FAMILIES["deepseek"]
    if pre == "[PREFIX]":
        return FAMILIES["codestral"]
    if pre == "<|fim_prefix|>":
        return FAMILIES["codegemma" if "gemma" in name else "qwen-spm"]
    if info.fim_prefix and info.fim_suffix and info.fim_middle:
        return _fim("generic", info.fim_prefix + "{prefix}" + info.fim_suffix + "{suffix}" + info.fim_middle, info.eos)
    return FAMILIES["plain"]


def short_path(uri: str, parts: int = 3) -> str:
    """The last few components of a document's path, for file headers in the prompt."""
    path = uri.split("://", 1)[-1].replace("\\", "/")
    return "/".join([p for p in path.split("/") if p][-parts:])


def comment_marker(language: str) -> str:
    """The line comment marker of a language id or file extension."""
    return COMMENTS.get(language.lower(), "//")


def render_extra(extra: tuple[Chunk, ...], template: Template, cursor: Cursor) -> str:
    """Lay out extra chunks: repo-level file tokens where the family has them, else comments."""
    if not extra:
        return ""
    if template.file_fmt:
        files = "".join(
            fill(template.file_fmt, {"{path}": short_path(c.path), "{text}": _ends_nl(c.text)}) for c in extra
        )
        return files + fill(template.current_fmt, {"{path}": short_path(cursor.path)})
    mark = comment_marker(cursor.language)
    out: list[str] = []
    for chunk in extra:
        out.append(f"{mark} Path: {short_path(chunk.path)}\n")
        out.extend(f"{mark} {line}".rstrip() + "\n" for line in chunk.text.rstrip("\n").split("\n"))
        out.append("\n")
    return "".join(out)


def build_prompt(cursor: Cursor, template: Template, extra: tuple[Chunk, ...] = ()) -> str:
    """Fill the template with the cursor's windows (and extra context, placed at the head)."""
    rendered = render_extra(extra, template, cursor) if template.extra else ""
    prefix = cursor.prefix
    if rendered and "{extra}" not in template.fmt:
        prefix = rendered + prefix
    if template.trim_tail:
        # Where the prompt ends with the prefix, trailing spaces and tabs stay for the model to
        # write: code's tokens carry the space before a word (" x", "   " + " const"), and a
        # prompt cut after the space asks for a token boundary the model rarely saw (with Qwen at
        # an indented empty line it mostly ended the line at once). The cleaning drops the
        # leading whitespace again where the cursor has it.
        prefix = prefix.rstrip(" \t")
    name = short_path(cursor.path, 1) if cursor.path else ""
    header = f"{comment_marker(cursor.language)} {name}\n" if name else ""
    parts = {"{prefix}": prefix, "{suffix}": cursor.suffix, "{extra}": rendered, "{file}": header}
    return fill(template.fmt, parts)


def fill(fmt: str, parts: dict[str, str]) -> str:
    """Replace slots in one pass, so text inside the code is never expanded."""
    return re.sub("|".join(re.escape(k) for k in parts), lambda m: parts[m.group(0)], fmt) if parts else fmt


def _ends_nl(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
