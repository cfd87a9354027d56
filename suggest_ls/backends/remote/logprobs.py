"""Token log-probabilities in a completion's choice, as either format servers use, and the other starts they give."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_TOP_LOGPROBS = 5  # the OpenAI API's limit for ``logprobs`` in /v1/completions


@dataclass(frozen=True)
class TokenLogprob:
    """One sampled token of a completion: its text, log-probability and the likeliest tokens at its step."""

    text: str
    logprob: float | None
    offset: int = -1  # character offset in prompt + completion (-1: not given)
    top: tuple[tuple[str, float], ...] = ()


def token_logprobs(choice: dict[str, Any]) -> list[TokenLogprob]:
    """The tokens of one choice with their log-probabilities, in either format servers use.

    The completions format (``tokens``, ``token_logprobs``, ``top_logprobs`` as dicts,
    ``text_offset``: vLLM, llama-cpp-python, OpenAI) or the chat format (``content``: a list of
    ``{token, logprob, top_logprobs: [{token, logprob}]}``: llama.cpp's server).
    """
    lp = choice.get("logprobs")
    if not isinstance(lp, dict):
        return []
    out: list[TokenLogprob] = []
    content = lp.get("content")
    if isinstance(content, list):
        for item in content:
            if not isinstance(item, dict):
                continue
            tops = item.get("top_logprobs") or []
            top = tuple(
                (str(t.get("token", "")), float(t["logprob"]))
                for t in tops
                if isinstance(t, dict) and isinstance(t.get("logprob"), (int, float))
            )
            value = item.get("logprob")
            out.append(
                TokenLogprob(
                    str(item.get("token", "")), float(value) if isinstance(value, (int, float)) else None, -1, top
                )
            )
        return out
    tokens = lp.get("tokens") or []
    values = lp.get("token_logprobs") or []
    tops = lp.get("top_logprobs") or []
    offsets = lp.get("text_offset") or []
    for i, tok in enumerate(tokens):
        value = values[i] if i < len(values) else None
        top_dict = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        top = tuple(
            sorted(
                ((str(k), float(v)) for k, v in top_dict.items() if isinstance(v, (int, float))), key=lambda kv: -kv[1]
            )
        )
        offset = offsets[i] if i < len(offsets) and isinstance(offsets[i], int) else -1
        out.append(TokenLogprob(str(tok), float(value) if isinstance(value, (int, float)) else None, offset, top))
    return out


def alternatives_at(lead: str, taken: str, top: tuple[tuple[str, float], ...], n: int) -> tuple[tuple[str, float], ...]:
    """Up to ``n`` other first tokens from one step's top log-probabilities, as the in-process engine
    returns them: (text so far + the token, its probability), likeliest first; the token sampled,
    empty tokens and tokens with a newline are left out."""
    out: list[tuple[str, float]] = []
    for piece, logprob in sorted(top, key=lambda kv: -kv[1]):
        if piece == taken or not piece or "\n" in piece:
            continue
        out.append((lead + piece, math.exp(logprob)))
        if len(out) >= n:
            break
    return tuple(out)
