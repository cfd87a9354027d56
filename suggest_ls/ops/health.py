"""Opt-in HTTP health endpoint (``--health-port``): ``GET /health`` (JSON) and ``GET /metrics`` (Prometheus).

One daemon thread with the standard library's HTTP server, bound to loopback unless a host is
given. The status is computed on the LSP loop (``Operations.snapshot_threadsafe``), so a stuck
loop shows as ``503 unresponsive`` instead of stale figures; the LSP never waits on this thread.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from suggest_ls.ops.metrics import CONTENT_TYPE
from suggest_ls.ops.operations import Operations
from suggest_ls.ops.status import to_wire
from suggest_ls.security import token_matches

log = logging.getLogger(__name__)
HEALTHY = ("ready", "degraded", "disabled")


def health_body(status: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    """The HTTP code and JSON for ``/health``: the reference shape first, then every status field."""
    if status is None:
        return 503, {"status": "unresponsive", "gpu_mem_used": None, "current_tps": None}
    state = status["state"]
    body = {
        "status": "ok" if state == "ready" else state,
        "gpu_mem_used": status["gpuMemUsed"],
        "current_tps": status["tokensPerSecond"],
        **status,
    }
    return (200 if state in HEALTHY else 503), body


def _bearer(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


class _Handler(BaseHTTPRequestHandler):
    ops: Operations
    token = ""  # when set (a non-loopback bind), requests must carry Authorization: Bearer <token>
    timeout = 5  # a stalled client cannot hold the endpoint

    def do_GET(self) -> None:
        """Serve /health and /metrics."""
        if self.token and not token_matches(self.token, _bearer(self.headers.get("Authorization", ""))):
            self._send(401, "text/plain", b"unauthorized: send Authorization: Bearer <token>\n")
            return
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path in ("/health", "/"):
            code, body = health_body(self._snapshot())
            self._send(code, "application/json", json.dumps(body).encode())
        elif path == "/metrics":
            snapshot = self._snapshot()
            if snapshot is None:
                self._send(503, "text/plain", b"server loop unresponsive\n")
            else:
                self._send(200, CONTENT_TYPE, self.ops.metrics.render(snapshot))
        else:
            self._send(404, "text/plain", b"not found: try /health or /metrics\n")

    def _snapshot(self) -> dict[str, Any] | None:
        """The status in its wire form, computed on the LSP loop (None when the loop does not answer)."""
        status = self.ops.snapshot_threadsafe()
        return None if status is None else to_wire(status)

    def _send(self, code: int, content_type: str, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Route the access log to debug logging (stdout belongs to the protocol)."""
        log.debug("health: " + format, *args)


class HealthServer:
    """The endpoint's HTTP server and its thread."""

    def __init__(self, ops: Operations, host: str = "127.0.0.1", port: int = 0, token: str = "") -> None:
        handler = type("Handler", (_Handler,), {"ops": ops, "token": token})
        self.httpd = HTTPServer((host, port), handler)
        self.httpd.timeout = 5
        self.port = int(self.httpd.server_address[1])
        self.host = host
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="suggest-ls-health", daemon=True)

    def start(self) -> HealthServer:
        """Serve in the background."""
        self._thread.start()
        log.info("health endpoint on http://%s:%d/health and /metrics", self.host, self.port)
        return self

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()
