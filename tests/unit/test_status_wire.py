"""The status's wire form: the camelCase keys editors and the HTTP endpoint read, in their order."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from suggest_ls.backends.device import GpuMemory
from suggest_ls.completion.stats import Recorder
from suggest_ls.ops.operations import Operations
from suggest_ls.ops.status import to_wire
from suggest_ls.settings import Settings, SettingsStore

WIRE_KEYS = [
    "state",
    "reason",
    "version",
    "enabled",
    "loaded",
    "backend",
    "model",
    "modelPath",
    "modelWhy",
    "quantization",
    "device",
    "gpuLayers",
    "layers",
    "offload",
    "threads",
    "threadsNow",
    "parallel",
    "contextPerSlot",
    "prefillTokensPerSecond",
    "promptTokens",
    "template",
    "warm",
    "gpu",
    "gpuMemUsed",
    "tokensPerSecond",
    "decodeTokensPerSecond",
    "latency",
    "requests",
    "cacheHits",
    "outcomes",
    "recentReasons",
    "acceptance",
    "acceptanceRate",
    "alerts",
    "swap",
    "swaps",
    "remote",
    "idleUnloadSeconds",
    "uptimeSeconds",
]


class _Host:
    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []

    def publish_status(self, state: str, reason: str) -> None:
        self.published.append((state, reason))

    def show(self, level: str, message: str) -> None:
        pass

    async def progress_begin(self, message: str) -> Any:
        return None

    def progress_end(self, token: Any, message: str) -> None:
        pass


def _ops(settings: Settings | None = None) -> Operations:
    return Operations(_Host(), Recorder(), SettingsStore(settings or Settings()))


def test_the_wire_keys_and_their_order():
    wire = to_wire(_ops().status())
    assert list(wire) == WIRE_KEYS
    json.dumps(wire)  # plain JSON values only


def test_before_any_model_loads():
    wire = to_wire(_ops(Settings(parallel=2, idle_unload_s=30)).status())
    expected = {
        "state": "loading",
        "loaded": False,
        "backend": "llamacpp",
        "model": None,
        "modelPath": None,
        "parallel": 2,
        "gpu": "no GPU",
        "gpuMemUsed": "no GPU",
        "template": None,
        "warm": {},
        "alerts": [],
        "swap": {},
        "remote": None,
        "idleUnloadSeconds": 30,
        "acceptanceRate": 0.0,
    }
    assert {k: wire[k] for k in expected} == expected


def test_gpu_memory_on_the_wire():
    status = dataclasses.replace(
        _ops().status(), gpu=GpuMemory("H200", used=18_200_000_000, free=0, total=40_000_000_000)
    )
    wire = to_wire(status)
    assert wire["gpu"] == {
        "name": "H200",
        "usedBytes": 18_200_000_000,
        "totalBytes": 40_000_000_000,
        "used": "18.2GB",
        "total": "40.0GB",
        "fraction": 0.455,
    }
    assert wire["gpuMemUsed"] == "18.2GB"


def test_settings_reach_operations_through_the_store():
    ops = _ops()
    seen: list[Settings] = []
    ops.store.subscribe(lambda _old, new: seen.append(new))
    ops.apply(Settings(enabled=False))
    assert seen == [Settings(enabled=False)]
    assert ops.store.current.enabled is False
    assert to_wire(ops.status())["enabled"] is False
    assert ops.state == "loading"  # nothing started yet: a change before the first load does not act
