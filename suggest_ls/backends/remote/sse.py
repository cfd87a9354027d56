"""Server-sent events: an incremental ``text/event-stream`` parser and the events of a streamed response."""

from __future__ import annotations

import codecs
import http.client
import re
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched server-sent event."""

    data: str
    event: str = "message"
    id: str = ""
    retry_ms: int | None = None


_EOL = re.compile(r"\r\n|\r|\n")


class SSEParser:
    """An incremental ``text/event-stream`` parser (the WHATWG HTML "server-sent events" rules).

    ``feed`` takes text in any pieces and returns the events completed by it: lines end with CRLF,
    LF or CR; ``data:`` lines accumulate (joined with newlines), ``event:``, ``id:`` and ``retry:``
    (digits only) set fields, a line starting with ``:`` is a comment, a field without a colon has
    an empty value, one space after the colon is dropped, unknown fields are ignored; an empty line
    dispatches the event (none when no data was given). ``close`` returns an event left without
    its final empty line when the stream ended (the standard drops it; servers that close right
    after their last ``data:`` line are common enough to keep it).
    """

    def __init__(self) -> None:
        self._buf = ""
        self._after_cr = False
        self._data: list[str] = []
        self._event = ""
        self.last_id = ""
        self.retry_ms: int | None = None

    def feed(self, text: str) -> list[SSEEvent]:
        """Events completed by ``text``."""
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split between two pieces
        self._after_cr = False
        buf = self._buf + text
        out: list[SSEEvent] = []
        start = 0
        for m in _EOL.finditer(buf):
            event = self._line(buf[start : m.start()])
            if event is not None:
                out.append(event)
            start = m.end()
            if m.group() == "\r" and start == len(buf):
                self._after_cr = True
        self._buf = buf[start:]
        return out

    def close(self) -> SSEEvent | None:
        """The stream ended: the event still pending, if any."""
        if self._buf:
            self._line(self._buf)
            self._buf = ""
        return self._dispatch()

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry":
            if value and all("0" <= c <= "9" for c in value):
                self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEEvent("\n".join(data), event or "message", self.last_id, self.retry_ms)


def read_events(resp: http.client.HTTPResponse) -> Iterator[SSEEvent]:
    """The events of a streamed response, as they arrive (UTF-8 split anywhere)."""
    parser = SSEParser()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        line = resp.readline(1 << 16)
        if not line:
            break
        yield from parser.feed(decoder.decode(line))
    yield from parser.feed(decoder.decode(b"", final=True))
    last = parser.close()
    if last is not None:
        yield last
