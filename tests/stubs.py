"""Small stand-ins shared by tests."""

from __future__ import annotations


class RecordingWriter:
    """A transport for ``protocol.set_writer`` that keeps what the server writes."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        pass
