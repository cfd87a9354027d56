"""Settings in two layers: raw camelCase options from the client, resolved into one frozen object,
and the store that holds the current one and tells its subscribers of each change."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """The resolved, immutable configuration of one server."""

    enabled: bool = True
    model: str = ""
    backend: str = "llamacpp"
    endpoint: str = ""
    api_key_env: str = "SUGGEST_LS_API_KEY"
    context_size: int = 4096
    gpu_layers: int = -1
    threads: int = 0
    parallel: int = 4
    temperature: float = 0.1
    max_tokens: int = 48
    max_tokens_multiline: int = 96
    generation_budget_ms: int = 200
    line_budget_ms: int = -1
    line_deadline_ms: int = -1
    debounce_ms: int = -1
    batch_window_ms: int = 30
    draft_tokens: int = 0
    prompt_tokens: int = -1
    suffix_share: float = 0.25
    multiline: str = "auto"
    template: str = ""
    min_confidence: float = -1.0
    candidates: int = 0
    rerank: str = "auto"
    syntax_check: bool = True
    alternatives: int = 3
    extra_context_tokens: int = 256
    prefetch: bool = False
    warm: bool = True
    idle_unload_s: int = 0
    log_level: str = ""
    alerts: str = "auto"
    alert_min_tokens_per_second: float = 50.0
    alert_max_gpu_memory: float = 0.85
    alert_max_p99_ms: float = 300.0
    alert_window_s: int = 300
    alert_min_samples: int = 20


@dataclass(frozen=True)
class Option:
    """One client-facing option: its camelCase key, field, type and documentation."""

    key: str
    field: str
    kind: type
    description: str
    check: Callable[[Any], bool] = lambda _v: True
    choices: tuple[str, ...] = ()


def _nonneg(v: Any) -> bool:
    return v >= 0


OPTIONS: tuple[Option, ...] = (
    Option("enabled", "enabled", bool, "Turn suggestions on or off; off means no model work at all."),
    Option(
        "model",
        "model",
        str,
        "Path to a GGUF model, or a preset: 'coder' (Qwen2.5-Coder-1.5B) or 'small' (Gemma 3 270M); empty picks "
        "SUGGEST_LS_MODEL, models/*.gguf, then the coder model when installed, else the small one. "
        "Changing it swaps models without a gap. With backend 'openai': the model name sent (empty: the server's first).",
    ),
    Option(
        "backend",
        "backend",
        str,
        "Where the model runs: 'llamacpp' (in-process) or 'openai' (a remote /v1/completions server).",
        choices=("llamacpp", "openai"),
    ),
    Option(
        "endpoint",
        "endpoint",
        str,
        "Base URL of the OpenAI-compatible server when backend is 'openai', e.g. http://127.0.0.1:8000/v1.",
    ),
    Option("apiKeyEnv", "api_key_env", str, "Name of the environment variable holding the remote backend's API key."),
    Option("contextSize", "context_size", int, "KV-cache tokens per parallel slot.", lambda v: 256 <= v <= 131072),
    Option(
        "gpuLayers",
        "gpu_layers",
        int,
        "Layers to offload to the GPU; -1 means all that fit with 10% of memory left free, 0 means CPU.",
        lambda v: v >= -1,
    ),
    Option("threads", "threads", int, "CPU threads for llama.cpp; 0 means one per core.", _nonneg),
    Option("parallel", "parallel", int, "Sequences decoded together in one batch (slots).", lambda v: 1 <= v <= 64),
    Option("temperature", "temperature", float, "Sampling temperature; 0 is greedy.", lambda v: 0 <= v <= 2),
    Option(
        "maxTokens", "max_tokens", int, "Most tokens generated for a single-line suggestion.", lambda v: 1 <= v <= 1024
    ),
    Option(
        "maxTokensMultiline",
        "max_tokens_multiline",
        int,
        "Most tokens generated for a multi-line suggestion.",
        lambda v: 1 <= v <= 2048,
    ),
    Option(
        "generationBudgetMs",
        "generation_budget_ms",
        int,
        "Multi-line suggestions while typing stop generating this many ms after their first token and "
        "show the lines complete by then (single lines run to their end; invoked requests are not limited); "
        "0 turns it off.",
        lambda v: 0 <= v <= 60000,
    ),
    Option(
        "lineBudgetMs",
        "line_budget_ms",
        int,
        "Single-line suggestions while typing are answered this many ms after the request arrives "
        "with the whole words written by then; the line goes on, and the next request (typing through, "
        "accepting, or asking again on the server's suggest/refresh) gets the whole line; 0 waits for "
        "it; -1 means 200 for clients that ask again on suggest/refresh (the VS Code and Neovim clients "
        "here declare it), else 0.",
        lambda v: -1 <= v <= 60000,
    ),
    Option(
        "lineDeadlineMs",
        "line_deadline_ms",
        int,
        "For clients that ask again on suggest/refresh: a single line while typing whose first whole word "
        "is not written this many ms after the request arrives is answered empty at once (reason 'line "
        "still being written'); the line goes on, and the server sends suggest/refresh when it is done; "
        "0 waits for the first words; -1 means lineBudgetMs + 30 (off when lineBudgetMs is 0).",
        lambda v: -1 <= v <= 60000,
    ),
    Option(
        "debounceMs",
        "debounce_ms",
        int,
        "Wait after a keystroke before running the model; -1 adapts to the typing rhythm.",
        lambda v: -1 <= v <= 5000,
    ),
    Option(
        "batchWindowMs",
        "batch_window_ms",
        int,
        "How long the engine waits to pack requests that are about to arrive into one batch.",
        lambda v: 0 <= v <= 1000,
    ),
    Option(
        "draftTokens",
        "draft_tokens",
        int,
        "Tokens drafted from the document and checked in the same decode step as a lone generating "
        "request's next token (speculative decoding by prompt lookup; the same text but for near-ties "
        "that batched evaluation can flip); 0 turns it off. It pays only where a wider decode step is nearly free (a GPU).",
        lambda v: 0 <= v <= 16,
    ),
    Option(
        "promptTokens",
        "prompt_tokens",
        int,
        "Token budget for the text around the cursor; -1 sizes it from the prompt evaluation speed measured "
        "at load, so a cold prompt takes about 3 s (between 384 and 1024 tokens; 1024 where the speed is "
        "unknown, e.g. a remote server). extraContextTokens is held to a quarter of it.",
        lambda v: v == -1 or 64 <= v <= 131072,
    ),
    Option(
        "suffixShare",
        "suffix_share",
        float,
        "Share of the prompt budget given to the text after the cursor.",
        lambda v: 0 <= v <= 0.9,
    ),
    Option(
        "multiline",
        "multiline",
        str,
        "Multi-line suggestions: 'auto' (after a block opener), 'always' or 'never'.",
        choices=("auto", "always", "never"),
    ),
    Option(
        "template",
        "template",
        str,
        "Override prompt template with {prefix} and {suffix}; empty picks one from the model.",
    ),
    Option(
        "minConfidence",
        "min_confidence",
        float,
        "Hide suggestions the model is unsure of (0 shows all): when the least probability of the line's "
        "tokens is below this, or when candidates are sampled, the share of the samples agreeing with the "
        "line shown; -1 picks the floor tuned for the kind of model: 0.25 for fill-in-the-middle code "
        "models, 0.1 for others (figures in the README).",
        lambda v: v == -1 or 0 <= v <= 1,
    ),
    Option(
        "candidates",
        "candidates",
        int,
        "Single-line suggestions from a model without fill-in-the-middle tokens: sample this many extra "
        "lines and show the one under which the code after the cursor is likeliest (0: the greedy line). "
        "With the embedded model 4 candidates gave +0.9 points of HumanEval pass@1 at 4x the latency.",
        lambda v: 0 <= v <= 32,
    ),
    Option(
        "rerank",
        "rerank",
        str,
        "When candidates are sampled and reranked: 'auto' for every request when a GPU or a remote server "
        "runs the model and only for explicitly invoked ones on a CPU (where it costs 0.4-1.5 s a request), 'always', "
        "'invoked' or 'never'.",
        choices=("auto", "always", "invoked", "never"),
    ),
    Option(
        "syntaxCheck",
        "syntax_check",
        bool,
        "Python: never show a suggestion that breaks code that parses without it (an 'if' where the next "
        "line is not indented, a statement where it is). With the embedded model a quarter of HumanEval "
        "suggestions broke the code: refusing them lifted precision from 32 % to 42 % at the same pass@1.",
    ),
    Option(
        "alternatives",
        "alternatives",
        int,
        "When the syntax check refuses a suggestion, try this many other likely first tokens (one short "
        "generation each, from the cached prompt) and show the first that fits; 0 shows nothing instead. "
        "With the embedded model 3 gave +3.3 points of HumanEval pass@1 (precision 42.0 -> 35.8 %: 1 in 7 "
        "of the lines it adds passes).",
        lambda v: 0 <= v <= 8,
    ),
    Option(
        "extraContextTokens",
        "extra_context_tokens",
        int,
        "Token budget for extra context (places edited recently, other open files) at the head of the prompt; 0 turns it off.",
        lambda v: 0 <= v <= 32768,
    ),
    Option(
        "prefetch",
        "prefetch",
        bool,
        "After showing a suggestion, compute the next one at low priority as if it were accepted.",
    ),
    Option(
        "warm",
        "warm",
        bool,
        "Evaluate the prompt at the cursor before it is asked for: when a document is opened, the cursor "
        "moves (the VS Code and Neovim clients here send suggest/didMoveCursor) or an edit is not followed "
        "by a request, at idle priority (a live request stops it and keeps what it evaluated).",
    ),
    Option(
        "idleUnloadSeconds",
        "idle_unload_s",
        int,
        "Unload the model after this many idle seconds; 0 keeps it loaded.",
        _nonneg,
    ),
    Option(
        "logLevel",
        "log_level",
        str,
        "Log level while serving; empty keeps the command line's --log-level. Document text is logged only "
        "when the server was started with --log-level debug (a client cannot turn that on).",
        choices=("", "debug", "info", "warning", "error"),
    ),
    Option(
        "alerts",
        "alerts",
        str,
        "When the alerts below are judged: 'auto' checks tokens/s and p99 only when a GPU or a remote server "
        "runs the model (the defaults are a GPU deployment's figures) and GPU memory whenever NVML reads a GPU; "
        "'always' also on a CPU; 'off' never.",
        choices=("auto", "always", "off"),
    ),
    Option(
        "alertMinTokensPerSecond",
        "alert_min_tokens_per_second",
        float,
        "Degraded while generation runs slower than this many tokens/s (measured only while generating); 0 turns it off.",
        _nonneg,
    ),
    Option(
        "alertMaxGpuMemory",
        "alert_max_gpu_memory",
        float,
        "Degraded while more than this share of GPU memory is used; 0 turns it off.",
        lambda v: 0 <= v <= 1,
    ),
    Option(
        "alertMaxP99Ms",
        "alert_max_p99_ms",
        float,
        "Degraded while the p99 suggestion latency over the alert window is above this; 0 turns it off.",
        _nonneg,
    ),
    Option(
        "alertWindowSeconds",
        "alert_window_s",
        int,
        "The window over which tokens/s and p99 latency are judged.",
        lambda v: 10 <= v <= 86400,
    ),
    Option(
        "alertMinSamples",
        "alert_min_samples",
        int,
        "Requests needed in the window before tokens/s or p99 is judged at all.",
        lambda v: 1 <= v <= 100000,
    ),
)

DEFAULTS = Settings()
SECTION = "suggestLs"


def default_of(option: Option) -> Any:
    """Return the default value of an option."""
    return getattr(DEFAULTS, option.field)


def _coerce(option: Option, value: Any) -> Any:
    if option.kind is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if option.kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise TypeError
        return int(value)
    if option.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return float(value)
    if not isinstance(value, str):
        raise TypeError
    return value


def resolve(raw: Mapping[str, Any] | None, base: Settings = DEFAULTS) -> tuple[Settings, list[str]]:
    """Resolve raw client options over ``base``; invalid values keep the base value with a message."""
    if not raw:
        return base, []
    if SECTION in raw:
        section = raw[SECTION]
        if section is None or section == []:  # Neovim sends an empty table as []
            return base, []
        if not isinstance(section, Mapping):
            return base, [f"{SECTION} must be an object; ignored"]
        raw = section
    changes: dict[str, Any] = {}
    messages: list[str] = []
    known = {o.key: o for o in OPTIONS}
    for key, value in raw.items():
        option = known.get(key)
        if option is None:
            messages.append(f"unknown setting {SECTION}.{key} ignored")
            continue
        try:
            coerced = _coerce(option, value)
            ok = option.check(coerced) and (not option.choices or coerced in option.choices)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            messages.append(f"invalid value {value!r} for {SECTION}.{key}; keeping {getattr(base, option.field)!r}")
            continue
        changes[option.field] = coerced
    return dataclasses.replace(base, **changes), messages


Subscriber = Callable[[Settings, Settings], None]


class SettingsStore:
    """The one owner of the current settings: ``update`` and ``set`` replace them, and each change is
    told once to every subscriber as ``callback(old, new)``, in subscription order. A subscriber that
    raises is logged; the others are still told."""

    def __init__(self, initial: Settings = DEFAULTS) -> None:
        self._current = initial
        self._subscribers: list[Subscriber] = []

    @property
    def current(self) -> Settings:
        """The settings in force now."""
        return self._current

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(old, new)`` on every later change."""
        self._subscribers.append(callback)

    def update(self, raw: Mapping[str, Any] | None) -> list[str]:
        """Resolve raw client options over the current settings and take the result; returns the
        messages about options that were ignored (see ``resolve``)."""
        new, messages = resolve(raw, self._current)
        self.set(new)
        return messages

    def set(self, new: Settings) -> None:
        """Take ``new`` as the current settings; subscribers are told when they differ from the old."""
        old = self._current
        if new == old:
            return
        self._current = new
        for callback in list(self._subscribers):
            try:
                callback(old, new)
            except Exception:
                log.exception("settings subscriber %r failed", callback)


def parse_pairs(items: list[str]) -> dict[str, Any]:
    """Raw options from ``key=value`` strings (command line ``--set``); values are JSON when they parse."""
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out
