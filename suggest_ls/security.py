"""Network exposure and privacy: loopback binds, the access token, and keeping document text out of logs."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from pathlib import Path
from typing import Any

TOKEN_ENV = "SUGGEST_LS_TOKEN"
MIN_TOKEN_CHARS = 16
_SAFE_ARG_CHARS = 120


class SecurityError(RuntimeError):
    """A configuration that would expose the server, or a token that cannot be used."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); hostnames are not resolved."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token(token_file: str | None = None, env: dict[str, str] | None = None) -> str:
    """The access token from ``--token-file`` or ``$SUGGEST_LS_TOKEN`` ('' when neither is set)."""
    env = dict(os.environ) if env is None else env
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecurityError(f"cannot read the token file: {exc}") from exc
    else:
        token = env.get(TOKEN_ENV, "").strip()
    if token and len(token) < MIN_TOKEN_CHARS:
        raise SecurityError(f"the token must be at least {MIN_TOKEN_CHARS} characters")
    return token


def check_bind(host: str, token: str, what: str = "--tcp") -> None:
    """Refuse a non-loopback bind without a token (anyone on the network could read the code sent)."""
    if not is_loopback(host) and not token:
        raise SecurityError(
            f"{what} on {host or 'all interfaces'} is reachable from other machines: "
            f"set ${TOKEN_ENV} or --token-file, or bind 127.0.0.1"
        )


def token_matches(expected: str, presented: Any) -> bool:
    """Constant-time comparison of a presented token with the expected one."""
    if not expected or not isinstance(presented, str):
        return False
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), presented.encode("utf-8", "surrogatepass"))


def _safe(arg: Any) -> Any:
    if arg is None or isinstance(arg, (bool, int, float)):
        return arg
    if isinstance(arg, str) and len(arg) <= _SAFE_ARG_CHARS and "\n" not in arg:
        return arg
    return f"<{type(arg).__name__} redacted>"


class PrivacyFilter(logging.Filter):
    """Outside debug logging, arguments of library log lines (pygls logs request params) are redacted."""

    def __init__(self, prefixes: tuple[str, ...] = ("pygls",)) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace arguments that may hold document text with their type name."""
        if record.name.startswith(self.prefixes) and isinstance(record.args, tuple) and record.args:
            record.args = tuple(_safe(a) for a in record.args)
        return True
