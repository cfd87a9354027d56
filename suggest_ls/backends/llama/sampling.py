"""Reading a decode's logits: the next token and its probability, other likely starts, prompt scores.

All on the engine thread, from the logits of one batch row of the last ``llama_decode``.
"""

from __future__ import annotations

import numpy as np

from suggest_ls.backends.llama.loading import LoadedModel
from suggest_ls.backends.llama.slots import Job


def sample(lm: LoadedModel, job: Job, index: int) -> tuple[int, float]:
    """The job's next token from batch row ``index`` (greedy, or top-40 at its temperature) and its probability."""
    logits = lm.logits(index)
    temp = job.req.temperature
    if temp <= 0 or job.rng is None:
        tok = int(np.argmax(logits))
        m = float(logits[tok])
    else:
        # Top-40 with temperature, looked for only among the logits within 20·T of the best (the
        # others weigh below e^-20 each): a comparison over the vocabulary instead of a partition
        # of it, which took most of a step's Python time (and the GIL) on a 262k vocabulary.
        m = float(logits.max())
        top = np.flatnonzero(logits >= m - 20.0 * temp)
        if len(top) > 40:
            top = np.sort(top[np.argpartition(logits[top], -40)[-40:]])
        p = np.exp((logits[top] - m) / temp)
        tok = int(top[job.rng.choice(len(top), p=p / p.sum())])
    # the softmax over the whole vocabulary, in place in one buffer (a small model's logits are
    # flat: most of them lie near the best, so leaving out the far ones would save little)
    buf = lm.softmax_buf
    np.subtract(logits, m, out=buf)
    np.exp(buf, out=buf)
    prob = float(buf[tok]) / float(buf.sum())
    return tok, prob


def alternatives(lm: LoadedModel, job: Job, index: int, taken: int, taken_prob: float) -> tuple[tuple[str, float], ...]:
    """The likeliest tokens other than ``taken`` at batch row ``index``, each after the text so far
    (``taken_prob``: the taken token's probability as the sampler computed it, or 0)."""
    logits = lm.logits(index)
    m = float(logits.max())
    near = np.flatnonzero(logits >= m - 10.0)  # others weigh below e^-10 of the best each
    if taken_prob > 0:  # the softmax sum the sampler already paid for
        total = float(np.exp(float(logits[taken]) - m)) / taken_prob
    else:
        total = float(np.exp(logits - m).sum())
    lead = job.text()
    out: list[tuple[str, float]] = []
    for tok in near[np.argsort(-logits[near])]:
        if int(tok) == taken or lm.is_eog(int(tok)):
            continue
        piece = lm.piece(int(tok)).decode("utf-8", errors="ignore")
        if not piece or "\n" in piece:
            continue
        out.append((lead + piece, float(np.exp(float(logits[tok]) - m)) / total))
        if len(out) >= job.req.alternatives:
            break
    return tuple(out)


def logprob(lm: LoadedModel, index: int, token: int) -> float:
    """Log-probability of ``token`` under the logits of batch row ``index``."""
    logits = lm.logits(index)
    m = float(logits.max())
    return float(logits[token]) - m - float(np.log(np.exp(logits - m).sum()))
