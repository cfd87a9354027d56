"""The LSP base protocol without pygls: header framing, body decoding and message checks.

Pure and incremental, so it can be fuzzed: bytes go in by arbitrary chunks, frames (message
bodies) and framing errors come out. A malformed header never stops the stream: the parser
drops what it cannot read, reports why, and picks up again at the next ``Content-Length``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_HEADER_LINE = 8192
MAX_BODY = 256 * 1024 * 1024
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603
SERVER_NOT_INITIALIZED = -32002

_HEADER = re.compile(rb"^([A-Za-z0-9_-]+)[ \t]*:[ \t]*(.*?)[ \t]*$")
_LENGTH_ANYWHERE = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
_DIGITS = re.compile(rb"^[0-9]{1,12}$")


@dataclass(frozen=True)
class Frame:
    """One message body, exactly ``Content-Length`` bytes."""

    body: bytes


@dataclass(frozen=True)
class FrameError:
    """Input that was dropped, and why."""

    reason: str


class FrameParser:
    """Incremental parser of ``Content-Length``-framed messages with resynchronisation."""

    def __init__(self, max_body: int = MAX_BODY, max_header_line: int = MAX_HEADER_LINE) -> None:
        self.max_body = max_body
        self.max_header_line = max_header_line
        self._buf = bytearray()
        self._need = -1  # bytes of body still to read; -1 while reading headers
        self._skip = 0  # bytes of an oversized body still to discard
        self._drop_line = False  # discarding the rest of an overlong header line
        self._reset_headers()

    def _reset_headers(self) -> None:
        self._length: int | None = None
        self._seen = False
        self._bad = ""

    @property
    def pending(self) -> int:
        """Bytes held (or still to skip) for a message not complete yet."""
        return len(self._buf) + self._skip

    @property
    def incomplete(self) -> bool:
        """True in the middle of a message (at the end of input: a cut message)."""
        return bool(self._buf) or self._skip > 0 or self._need >= 0 or self._seen

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        """Consume ``data``; return the complete frames and the errors found so far."""
        out: list[Frame | FrameError] = []
        self._buf += data
        while self._buf:
            if self._skip:
                n = min(self._skip, len(self._buf))
                del self._buf[:n]
                self._skip -= n
                continue
            if self._need >= 0:
                if len(self._buf) < self._need:
                    break
                out.append(Frame(bytes(self._buf[: self._need])))
                del self._buf[: self._need]
                self._need = -1
                continue
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > self.max_header_line:
                    out.append(FrameError(f"header line longer than {self.max_header_line} bytes dropped"))
                    self._buf.clear()
                    self._drop_line = True
                    self._reset_headers()
                break
            line = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[: end + 1]
            if self._drop_line:
                self._drop_line = False
                continue
            self._header_line(line, out)
        return out

    def _header_line(self, line: bytes, out: list[Frame | FrameError]) -> None:
        if len(line) > self.max_header_line:
            out.append(FrameError(f"header line longer than {self.max_header_line} bytes dropped"))
            self._reset_headers()
            return
        if not line.strip():
            if self._seen:
                self._end_headers(out)
            return
        match = _HEADER.match(line)
        if match is None:
            found = _LENGTH_ANYWHERE.search(line)
            if found is None:
                out.append(FrameError(f"{len(line)} bytes outside any message dropped"))
                return
            out.append(FrameError(f"{found.start()} bytes before a header dropped"))
            self._reset_headers()
            line = line[found.start() :]
            match = _HEADER.match(line)
            if match is None:  # pragma: no cover - the search guarantees a header shape
                return
        self._seen = True
        name, value = match.group(1).lower(), match.group(2)
        if name == b"content-length":
            if not _DIGITS.match(value):
                self._bad = f"invalid Content-Length {value[:40]!r}"
            elif self._length is not None and self._length != int(value):
                self._bad = "conflicting Content-Length headers"
            else:
                self._length = int(value)

    def _end_headers(self, out: list[Frame | FrameError]) -> None:
        length, bad = self._length, self._bad
        self._reset_headers()
        if bad:
            out.append(FrameError(bad))
            return
        if length is None:
            out.append(FrameError("headers without Content-Length"))
            return
        if length > self.max_body:
            out.append(FrameError(f"message of {length} bytes is over the {self.max_body} byte limit; skipped"))
            self._skip = length
            return
        self._need = length


def encode(message: dict[str, Any]) -> bytes:
    """Frame one JSON-RPC message (ASCII JSON, so lone surrogates travel as escapes)."""
    body = json.dumps(message, separators=(",", ":")).encode("ascii")
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class BodyError(ValueError):
    """A body that is not one JSON value."""


def decode_body(body: bytes) -> tuple[Any, str]:
    """Parse a body as JSON; invalid UTF-8 is replaced (with a warning), anything else is a BodyError."""
    warning = ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = body.decode("utf-8", errors="replace")
        warning = f"invalid UTF-8 at byte {exc.start} replaced with U+FFFD"
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text), warning
    except RecursionError as exc:
        raise BodyError("JSON nested too deeply") from exc
    except ValueError as exc:
        # the message of a JSONDecodeError holds a position, never the text itself
        raise BodyError(f"invalid JSON: {exc}") from exc


def valid_id(value: Any) -> bool:
    """An LSP request id: an integer (not a bool) or a string."""
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def check_message(obj: Any) -> str:
    """Why ``obj`` is not a JSON-RPC 2.0 request, notification or response ('' if it is one)."""
    if not isinstance(obj, dict):
        return f"a message must be a JSON object, not {type(obj).__name__}"
    if obj.get("jsonrpc") != "2.0":
        return 'missing or wrong "jsonrpc" (must be "2.0")'
    if "method" in obj:
        if not isinstance(obj["method"], str):
            return '"method" must be a string'
        if "id" in obj and not valid_id(obj["id"]):
            return '"id" must be an integer or a string'
        if "params" in obj and not isinstance(obj["params"], (dict, list)) and obj["params"] is not None:
            return '"params" must be an object or an array'
        return ""
    if "id" in obj and ("result" in obj or "error" in obj):
        return ""
    return "neither a request, a notification nor a response"


def request_id(obj: Any) -> int | str | None:
    """The id of a request to answer, if ``obj`` carries a usable one."""
    if isinstance(obj, dict) and "method" in obj and valid_id(obj.get("id")):
        return obj["id"]  # type: ignore[no-any-return]
    return None


def error_response(msg_id: int | str | None, code: int, message: str) -> dict[str, Any]:
    """A JSON-RPC error response."""
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
