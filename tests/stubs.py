"""Small stand-ins shared by tests."""

from __future__ import annotations

import threading


class RecordingWriter:
    """A transport for ``protocol.set_writer`` that keeps what the server writes."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        pass


class StubJob:
    """The handle of a stand-in backend's job (``contract.Handle``): a cancel flag, nothing generated yet."""

    min_prob = 1.0

    def __init__(self) -> None:
        self.cancel = threading.Event()

    def text(self) -> str:
        return ""
