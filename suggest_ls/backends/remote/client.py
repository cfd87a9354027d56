"""HTTP to an OpenAI-compatible endpoint: where it is, how to connect, what its failures mean.

Standard library only (``http.client``); one new connection per request, so cancelling a job can
close its connection from another thread (``abort``) without touching anyone else's.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from suggest_ls.backends.models import ModelError

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 15.0
CONNECT_TIMEOUT_S = 5.0


class RemoteError(ModelError):
    """The remote server could not be reached or refused."""


class RemoteUnavailable(RemoteError):
    """A failure worth retrying: the server is unreachable, overloaded or dropped the connection."""


@dataclass(frozen=True)
class RemoteConfig:
    """Where the server is and how to talk to it."""

    endpoint: str
    api_key: str = field(default="", repr=False)  # never in logs or reprs
    model: str = ""
    parallel: int = 4
    timeout_s: float = 30.0  # the longest a read may wait; also a whole job's limit
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    backoff_start_s: float = BACKOFF_START_S
    backoff_max_s: float = BACKOFF_MAX_S


def base_url(endpoint: str) -> tuple[str, str, int, str]:
    """Split an endpoint into scheme, host, port and the path prefix ending in ``/v1``."""
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(f"endpoint must be an http(s) URL, got {endpoint!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port, path


def transient_status(status: int) -> bool:
    """Whether an HTTP status is worth retrying (timeouts, rate limits, server errors)."""
    return status in (408, 429) or status >= 500


class Client:
    """Connections to one endpoint, with its timeouts and API key."""

    def __init__(self, config: RemoteConfig) -> None:
        self.config = config
        self.scheme, self.host, self.port, self.prefix = base_url(config.endpoint)

    @property
    def url(self) -> str:
        """The API's base URL (no secrets)."""
        return f"{self.scheme}://{self.host}:{self.port}{self.prefix}"

    def connection(self) -> http.client.HTTPConnection:
        """A new connection, not yet open."""
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        timeout = min(self.config.connect_timeout_s, self.config.timeout_s)
        return cls(self.host, self.port, timeout=timeout)

    def open(self, conn: http.client.HTTPConnection) -> None:
        """Connect within the connect timeout, then allow reads the longer one."""
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(self.config.timeout_s)

    def headers(self) -> dict[str, str]:
        """The headers of every request."""
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[Any, http.client.HTTPResponse]:
        """One request on a new connection (connect failures and 5xx raise RemoteUnavailable)."""
        conn = self.connection()
        try:
            self.open(conn)
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, f"{self.prefix}{path}", body=data, headers=self.headers())
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise RemoteUnavailable(f"{self.config.endpoint}: {describe(exc)}") from exc
        if resp.status != 200:
            text = snippet(resp.read(4096))
            conn.close()
            cls = RemoteUnavailable if transient_status(resp.status) else RemoteError
            raise cls(f"{self.config.endpoint}: HTTP {resp.status} {text}")
        return conn, resp


def abort(conn: http.client.HTTPConnection) -> None:
    """Close a connection from another thread so a blocked read returns at once."""
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def first_choice(data: Any) -> dict[str, Any]:
    """The first choice of a completion's JSON ({} when it has none)."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    choices = data.get("choices") or [{}]
    choice = choices[0] if isinstance(choices, list) and choices else {}
    return choice if isinstance(choice, dict) else {}


def describe(exc: BaseException) -> str:
    """An exception as a reason to show (a RemoteError's own message as it is)."""
    text = str(exc)
    return (
        f"{type(exc).__name__}: {text}" if text and not isinstance(exc, RemoteError) else (text or type(exc).__name__)
    )


def snippet(body: bytes) -> str:
    """The start of an error response's body."""
    return body[:200].decode("utf-8", errors="replace").strip()
