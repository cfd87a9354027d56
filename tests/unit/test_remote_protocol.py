"""The remote backend's protocol pieces: the server-sent-events parser, log-probability formats, confidence."""

from __future__ import annotations

import math

import pytest

from suggest_ls.backends.contract import GenRequest
from suggest_ls.backends.remote.jobs import RemoteJob
from suggest_ls.backends.remote.logprobs import TokenLogprob, alternatives_at, token_logprobs
from suggest_ls.backends.remote.sse import SSEEvent, SSEParser


def events(*pieces: str, close: bool = True) -> list[SSEEvent]:
    parser = SSEParser()
    out: list[SSEEvent] = []
    for piece in pieces:
        out += parser.feed(piece)
    if close:
        last = parser.close()
        if last is not None:
            out.append(last)
    return out


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["data: a\n\n"], [SSEEvent("a")]),
        (["data: a\r\n\r\n"], [SSEEvent("a")]),  # CRLF (sse-starlette, llama-cpp-python's server)
        (["data: a\r\rdata: b\r\r"], [SSEEvent("a"), SSEEvent("b")]),  # lone CR ends a line too
        (["data: a\ndata: b\n\n"], [SSEEvent("a\nb")]),  # multi-line data joined with a newline
        (["data:a\n\n"], [SSEEvent("a")]),  # no space after the colon
        (["data:  a\n\n"], [SSEEvent(" a")]),  # only one space is dropped
        (["data\n\n"], [SSEEvent("")]),  # a field without a colon: empty value, still an event
        ([": ping - 2026-12-03\n\n", "data: x\n\n"], [SSEEvent("x")]),  # comments are ignored
        (["event: error\ndata: {}\n\n"], [SSEEvent("{}", "error")]),
        (["id: 7\ndata: x\n\n", "data: y\n\n"], [SSEEvent("x", id="7"), SSEEvent("y", id="7")]),  # id persists
        (["retry: 1500\ndata: x\n\n"], [SSEEvent("x", retry_ms=1500)]),
        (["retry: soon\ndata: x\n\n"], [SSEEvent("x")]),  # non-digits: ignored
        (["event: e\n\n", "data: x\n\n"], [SSEEvent("x")]),  # no data: nothing dispatched, event reset
        (["foo: bar\ndata: x\n\n"], [SSEEvent("x")]),  # unknown fields are ignored
        (["da", "ta: hel", "lo\n", "\n"], [SSEEvent("hello")]),  # split anywhere
        (["data: a\r", "\ndata: b\r\n\r\n"], [SSEEvent("a\nb")]),  # CRLF split between pieces
        (['data: {"t": "x:y"}\n\n'], [SSEEvent('{"t": "x:y"}')]),  # only the first colon splits
        (["data: [DONE]"], [SSEEvent("[DONE]")]),  # no final empty line: kept at the stream's end
    ],
)
def test_sse_parser(pieces, expected):
    assert events(*pieces) == expected


def test_sse_parser_keeps_an_unterminated_event_until_the_end():
    parser = SSEParser()
    assert parser.feed("data: a\ndata: b") == []
    assert parser.close() == SSEEvent("a\nb")
    assert parser.close() is None


COMPLETIONS_FORMAT = {  # vLLM, llama-cpp-python's server, OpenAI
    "text": " a",
    "logprobs": {
        "tokens": [" a", " +"],
        "token_logprobs": [-0.1, -0.5],
        "top_logprobs": [{" a": -0.1, " b": -2.0, "\n": -3.0}, {" +": -0.5, "*": -1.0}],
        "text_offset": [10, 12],
    },
}
CHAT_FORMAT = {  # llama.cpp's server
    "text": " a",
    "logprobs": {
        "content": [
            {
                "token": " a",
                "logprob": -0.1,
                "top_logprobs": [{"token": " a", "logprob": -0.1}, {"token": " b", "logprob": -2.0}],
            },
            {"token": " +", "logprob": -0.5, "top_logprobs": []},
        ]
    },
}


@pytest.mark.parametrize("choice", [COMPLETIONS_FORMAT, CHAT_FORMAT])
def test_token_logprobs_in_both_formats(choice):
    tokens = token_logprobs(choice)
    assert [t.text for t in tokens] == [" a", " +"]
    assert [t.logprob for t in tokens] == [-0.1, -0.5]
    assert (" b", -2.0) in tokens[0].top and tokens[0].top[0] == (" a", -0.1)  # likeliest first


def test_no_logprobs_is_an_empty_list():
    assert token_logprobs({"text": "x", "logprobs": None}) == []
    assert token_logprobs({"text": "x"}) == []


def test_alternatives_leave_out_the_token_taken_empty_and_newlines():
    top = ((" a", -0.1), ("\n", -0.2), ("", -0.3), (" b", -2.0), (" c", -3.0), (" d", -4.0))
    alts = alternatives_at("  ", " a", top, 2)
    assert [a for a, _ in alts] == ["   b", "   c"]
    assert alts[0][1] == pytest.approx(math.exp(-2.0))


def test_job_confidence_is_the_engines():
    job = RemoteJob(GenRequest("u", "p", alternatives=2), lambda r: None)
    job.add(" ", [TokenLogprob(" ", math.log(0.9), top=((" ", math.log(0.9)), ("x", math.log(0.05))))], 0.0)
    job.add("a", [TokenLogprob("a", math.log(0.5), top=(("a", math.log(0.5)), ("b", math.log(0.3))))], 0.0)
    job.add(" +", [TokenLogprob(" +", math.log(0.8))], 0.0)
    assert job.text() == " a +"
    assert job.first_prob == pytest.approx(0.9)
    assert job.min_prob == pytest.approx(0.5)
    assert math.exp(job.logprob / job.sampled) == pytest.approx((0.9 * 0.5 * 0.8) ** (1 / 3))
    # alternatives come from the first step that writes more than whitespace, after the text so far
    assert job.alternatives == ((" b", pytest.approx(0.3)),)
    assert job.tokens == 3
