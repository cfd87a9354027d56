"""Operations: the server's one handle on the ops layer. It wires the lifecycle (``lifecycle.py``), the
monitor (``monitor.py``) and the state (``state.py``) together, reacts to each settings change it
hears from the store, and builds the status (``status.py``).

No LSP types here: the server hands in a ``Host`` that sends the status notification, shows
messages and reports progress. Everything runs on the server's asyncio loop except
``snapshot_threadsafe``, which the health endpoint calls from its own thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from suggest_ls.backends.contract import Backend, LoadInfo, ModelInfo
from suggest_ls.completion.completer import Completer
from suggest_ls.completion.prompt import detect_template
from suggest_ls.completion.stats import Acceptance, Recorder
from suggest_ls.ops.lifecycle import Lifecycle, reload_keys
from suggest_ls.ops.metrics import Metrics
from suggest_ls.ops.monitor import Monitor
from suggest_ls.ops.state import Host, ServerState
from suggest_ls.ops.status import Status, collect
from suggest_ls.settings import Settings, SettingsStore


class Operations:
    """The lifecycle, the monitor, the state, the acceptance counts and the metrics of one server."""

    def __init__(self, host: Host, recorder: Recorder, store: SettingsStore, model_override: str = "") -> None:
        self.host = host
        self.recorder = recorder
        self.store = store
        self.acceptance = Acceptance()
        self.metrics = Metrics(recorder)
        self.server_state = ServerState(host)
        self.life = Lifecycle(host, self.server_state, store, recorder, model_override)
        self.monitor = Monitor(host, self.server_state, self.life, store, recorder)
        self.started = time.time()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._hold_reload = False  # set while reload_model takes a model it loads itself
        store.subscribe(self._settings_changed)

    # ----- what the server reads -----
    @property
    def completer(self) -> Completer | None:
        """The completer (created with the first loaded model)."""
        return self.life.completer

    @property
    def backend(self) -> Backend | None:
        """The backend serving now; None before loading or after an unload."""
        return self.life.backend

    @property
    def load_info(self) -> LoadInfo | None:
        """What the serving model is and where it runs."""
        return self.life.load_info

    @property
    def state(self) -> str:
        """loading / ready / degraded / error / disabled."""
        return self.server_state.state

    @property
    def reason(self) -> str:
        """Why the server is in its state."""
        return self.server_state.reason

    @property
    def roots(self) -> list[str]:
        """Workspace folders (searched for models/)."""
        return self.life.roots

    @roots.setter
    def roots(self, value: list[str]) -> None:
        self.life.roots = value

    # ----- the model -----
    def start_monitor(self) -> None:
        """Start the once-a-second task: alerts, GPU memory, idle unload."""
        self.loop = asyncio.get_running_loop()
        self.monitor.start()

    def start_load(self, why: str, force: bool = False) -> asyncio.Future[dict[str, Any]]:
        """Start a load in the background (see ``Lifecycle.start_load``)."""
        return self.life.start_load(why, force)

    async def load(self, why: str = "", force: bool = False) -> dict[str, Any]:
        """Load the configured model (see ``Lifecycle.load``)."""
        return await self.life.load(why, force)

    async def reload_model(self, model: Any = None) -> dict[str, Any]:
        """``suggest/reloadModel``: take ``model`` as the model setting when it is a new name, then load
        again whatever the settings are, beside the serving model."""
        current = self.store.current
        if isinstance(model, str) and model != current.model:
            self._hold_reload = True  # the load below is the one this change asks for
            try:
                self.store.set(dataclasses.replace(current, model=model))
            finally:
                self._hold_reload = False
        return await self.life.load("suggest/reloadModel", force=True)

    async def completer_for_request(self) -> Completer | None:
        """The completer for a request (see ``Lifecycle.completer_for_request``)."""
        return await self.life.completer_for_request()

    def shutdown(self, timeout: float = 0.5) -> None:
        """Close the serving backend (process exit)."""
        self.life.shutdown(timeout)

    # ----- settings -----
    def _settings_changed(self, old: Settings, new: Settings) -> None:
        """Update the completer; once loading started, swap, disable or re-enable the model as needed."""
        life = self.life
        if life.completer is not None:  # the completer takes the new settings itself (it subscribes)
            life.completer.template = detect_template(
                life.load_info.model if life.load_info else ModelInfo(), new.template
            )
        if not life.started or self._hold_reload:
            return
        if not new.enabled:
            if life.backend is not None:
                life.unload("suggestions turned off")
            if self.server_state.base_state != "loading":
                self.server_state.set_base("disabled", "suggestions are turned off (enabled: false)")
            return
        if not old.enabled or any(getattr(old, k) != getattr(new, k) for k in reload_keys(new)):
            life.start_load("settings changed")
        else:
            self.monitor.check_alerts()

    # ----- status -----
    def status(self) -> Status:
        """Everything ``suggest/status`` reports, as plain data (``status.to_wire`` gives its JSON)."""
        return collect(self.store.current, self.server_state, self.life, self.recorder, self.acceptance, self.started)

    def snapshot_threadsafe(self, timeout: float = 2.0) -> Status | None:
        """``status()`` computed on the server's loop, for other threads; None if the loop does not answer."""
        loop = self.loop
        if loop is None or not loop.is_running():
            return self.status()
        future: Future[Status] = Future()

        def compute() -> None:
            try:
                future.set_result(self.status())
            except Exception as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(compute)
        try:
            return future.result(timeout)
        except FutureTimeout:
            return None
