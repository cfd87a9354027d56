"""The server's visible state: the underlying state the lifecycle sets, shown as degraded while an alert
fires, and the latest GPU memory reading that the lifecycle and the monitor both take."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from suggest_ls.backends.device import GpuMemory
from suggest_ls.ops.alerts import AlertState

log = logging.getLogger(__name__)


class Host(Protocol):
    """What operations need from the LSP side."""

    def publish_status(self, state: str, reason: str) -> None: ...

    def show(self, level: str, message: str) -> None: ...

    async def progress_begin(self, message: str) -> Any: ...

    def progress_end(self, token: Any, message: str) -> None: ...


class ServerState:
    """loading / ready / degraded / error / disabled, with the reason; the client hears of each change."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.base_state, self.base_reason = "loading", ""
        self.state, self.reason = "loading", ""
        self.alerts = AlertState()
        self.alert_view: tuple[dict[str, str], ...] = ()
        self.gpu: GpuMemory | None = None

    def set_base(self, state: str, reason: str = "") -> None:
        """Set the underlying state (loading/ready/error/disabled); alerts may show it as degraded."""
        self.base_state, self.base_reason = state, reason
        self.publish()

    def publish(self) -> None:
        """Recompute the visible state and notify the client when it changed."""
        state, reason = self.base_state, self.base_reason
        if state == "ready" and self.alerts.active:
            state, reason = "degraded", self.alerts.reason()
        if (state, reason) != (self.state, self.reason):
            self.state, self.reason = state, reason
            log.info("state: %s%s", state, f" ({reason})" if reason else "")
            self.host.publish_status(state, reason)
