"""Prompt templates: fill-in-the-middle families detected from the GGUF, or the terse rules prompt."""

from __future__ import annotations

import re
from dataclasses import dataclass

from suggest_ls.context import Cursor

RULES = (
    "Task: Complete the next step in this function.\n"
    "Rules:\n"
    "- Only output code, no explanations.\n"
    "- Do not add comments.\n"
    "- Use the same indentation style.\n"
    '- If unsure, output "NEXT_TOKEN".\n'
    "Code:\n"
)
ABSTAIN = "NEXT_TOKEN"
_SLOT = re.compile(r"\{prefix\}|\{suffix\}")


@dataclass(frozen=True)
class Template:
    """How to lay a cursor out as a prompt; ``{prefix}``/``{suffix}`` are filled in."""

    name: str
    fmt: str
    stop: tuple[str, ...] = ()
    fim: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """What the GGUF says about itself, as far as prompting cares."""

    name: str = ""
    architecture: str = ""
    fim_prefix: str = ""
    fim_suffix: str = ""
    fim_middle: str = ""
    eos: str = ""


def _fim(name: str, fmt: str, *stop: str) -> Template:
    return Template(name, fmt, tuple(s for s in stop if s), fim=True)


FAMILIES: dict[str, Template] = {
    # Suffix-first (SPM) where the family was trained on it: the suffix stays cached while typing.
    "starcoder": _fim(
        "starcoder",
        "<fim_prefix><fim_suffix>{suffix}<fim_middle>{prefix}",
        "<|endoftext|>",
        "<file_sep>",
        "<fim_prefix>",
    ),
    "codellama": _fim("codellama", "<PRE> <SUF>{suffix} <MID> {prefix}", "<EOT>", "</s>"),
    "deepseek": _fim(
        "deepseek", "<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>", "<|EOT|>", "<｜end▁of▁sentence｜>"
    ),
    "qwen": _fim(
        "qwen",
        "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
        "<|endoftext|>",
        "<|file_sep|>",
        "<|fim_pad|>",
        "<|repo_name|>",
    ),
    "codestral": _fim("codestral", "[SUFFIX]{suffix}[PREFIX]{prefix}", "</s>"),
    "codegemma": _fim(
        "codegemma", "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>", "<|file_separator|>", "<eos>"
    ),
    "rules": Template("rules", RULES + "{prefix}", ("\n\n\n",)),
    "bare": Template("bare", "{prefix}", ("\n\n\n",)),
}


def detect_template(info: ModelInfo, override: str = "") -> Template:
    """Pick the template for a model: the user's override, a FIM family, else the rules prompt."""
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
        return FAMILIES["codegemma" if "gemma" in name else "qwen"]
    if info.fim_prefix and info.fim_suffix and info.fim_middle:
        return _fim("generic", info.fim_prefix + "{prefix}" + info.fim_suffix + "{suffix}" + info.fim_middle, info.eos)
    return FAMILIES["rules"]


def build_prompt(cursor: Cursor, template: Template) -> str:
    """Fill the template with the cursor's windows."""
    parts = {"{prefix}": cursor.prefix, "{suffix}": cursor.suffix}
    return _SLOT.sub(lambda m: parts[m.group(0)], template.fmt)
