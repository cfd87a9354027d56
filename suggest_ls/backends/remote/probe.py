"""What an endpoint offers: its models, streaming, token log-probabilities, and scoring prompts by echo.

Probed once when the backend first reaches the server; scoring only when first needed (it costs
the server a prompt evaluation with every position's logits).
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from suggest_ls.backends.remote.client import Client, RemoteError, RemoteUnavailable, describe, first_choice
from suggest_ls.backends.remote.logprobs import MAX_TOP_LOGPROBS, TokenLogprob, token_logprobs
from suggest_ls.backends.remote.sse import read_events

log = logging.getLogger(__name__)
PROBE_PROMPT = "def add(a, b):\n    return "
SCORE_PROBE_PROMPT = "x = 1\ny = x + 1\nprint(x, y)\n"
# A score probe slower than this (plus a few completion probes' time) makes reranking cost more
# than it can gain: llama-cpp-python's server, e.g., sorts the whole vocabulary for every echoed token.
SCORE_PROBE_MAX_MS = 1000.0


@dataclass(frozen=True)
class Capabilities:
    """What an endpoint was seen to offer (``score`` is None until scoring was first needed and probed)."""

    streaming: bool = False
    logprobs: bool = False
    top_logprobs: int = 0  # log-probabilities of other tokens a step returns besides the one sampled
    score: bool | None = None
    score_reason: str = ""
    probe_ms: float = 0.0
    # the stream carries llama.cpp's ``timings`` (prompt tokens evaluated and taken from its cache):
    # jobs then ask for them on every chunk (``timings_per_token``), as a stopped stream has no last one
    timings: bool = False

    def as_dict(self) -> dict[str, Any]:
        """camelCase for ``suggest/status``."""
        d = asdict(self)
        return {
            "streaming": d["streaming"],
            "logprobs": d["logprobs"],
            "topLogprobs": d["top_logprobs"],
            "score": d["score"],
            "scoreReason": d["score_reason"],
            "probeMs": round(d["probe_ms"], 1),
            "timings": d["timings"],
        }


def list_models(client: Client) -> list[str]:
    """The model ids ``GET /v1/models`` lists."""
    conn, resp = client.request("GET", "/models", None)
    try:
        data = json.loads(resp.read(1 << 20) or b"{}").get("data") or []
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise RemoteUnavailable(f"{client.config.endpoint}: {describe(exc)}") from exc
    finally:
        conn.close()
    return [str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id")]


def probe_capabilities(client: Client, model_id: str) -> Capabilities:
    """One short streamed completion asking for log-probabilities; without them if refused."""
    t0 = time.perf_counter()
    body: dict[str, Any] = {
        "model": model_id,
        "prompt": PROBE_PROMPT,
        "max_tokens": 2,
        "temperature": 0.0,
        "stream": True,
        "logprobs": MAX_TOP_LOGPROBS,
    }
    try:
        conn, resp = client.request("POST", "/completions", body)
    except RemoteUnavailable:
        raise
    except RemoteError as exc:  # e.g. HTTP 400: logprobs not offered
        log.info("remote endpoint refused logprobs (%s); asking without them", exc)
        body.pop("logprobs")
        conn, resp = client.request("POST", "/completions", body)
    streaming = "text/event-stream" in (resp.getheader("Content-Type") or "")
    entries: list[TokenLogprob] = []
    timings = False
    try:
        if streaming:
            for event in read_events(resp):
                if event.data.strip() == "[DONE]":
                    break
                data = json.loads(event.data)
                timings = timings or (isinstance(data, dict) and isinstance(data.get("timings"), dict))
                choice = first_choice(data)
                entries += token_logprobs(choice)
        else:
            entries = token_logprobs(first_choice(json.loads(resp.read() or b"{}")))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise RemoteUnavailable(f"{client.config.endpoint}: {describe(exc)}") from exc
    finally:
        conn.close()
    logprobs = any(e.logprob is not None for e in entries)
    top = max((len([t for t in e.top if t[0] != e.text]) for e in entries), default=0)
    caps = Capabilities(
        streaming=streaming,
        logprobs=logprobs,
        top_logprobs=top,
        probe_ms=(time.perf_counter() - t0) * 1000,
        timings=timings,
    )
    log.info("remote capabilities: %s", caps.as_dict())
    if not logprobs:
        log.warning("the remote server returns no token probabilities: minConfidence has no effect on it")
    if not streaming:
        log.warning("the remote server does not stream: no first words before a line is complete")
    return caps


def probe_score(client: Client, model_id: str, probe_ms: float) -> tuple[bool, str]:
    """Whether ``echo`` with log-probabilities scores a prompt's tokens, and fast enough to rerank with
    (``probe_ms``: what the capability probe took); and why."""
    t0 = time.perf_counter()
    ok, reason = False, ""
    try:
        conn, resp = client.request("POST", "/completions", score_body(model_id, SCORE_PROBE_PROMPT))
        try:
            choice = first_choice(json.loads(resp.read() or b"{}"))
        finally:
            conn.close()
        scored = [
            e for e in token_logprobs(choice) if e.logprob is not None and 0 <= e.offset < len(SCORE_PROBE_PROMPT)
        ]
        ms = (time.perf_counter() - t0) * 1000
        limit = SCORE_PROBE_MAX_MS + 3 * probe_ms
        if len(scored) < 2:
            reason = "the server does not return the prompt's log-probabilities (echo)"
        elif ms > limit:
            reason = f"the server scores prompts too slowly ({ms:.0f} ms for {len(scored) + 1} tokens)"
        else:
            ok, reason = True, f"echo with logprobs ({ms:.0f} ms for {len(scored) + 1} tokens)"
    except (RemoteError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = f"scoring refused: {describe(exc)}"
    (log.info if ok else log.warning)("remote scoring %s: %s", "on" if ok else "off (no reranking)", reason)
    return ok, reason


def score_body(model_id: str, prompt: str) -> dict[str, Any]:
    """A request for the log-probabilities of ``prompt``'s own tokens."""
    # max_tokens 1, not 0: llama-cpp-python's server reads 0 as "up to the context's end"
    return {
        "model": model_id,
        "prompt": prompt,
        "max_tokens": 1,
        "temperature": 0.0,
        "echo": True,
        "logprobs": 1,
    }
