"""Status, the HTTP health endpoint, Prometheus metrics, acceptance and alerts, against one real server."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.request

import pytest
import pytest_lsp
from lsprotocol import types
from prometheus_client.parser import text_string_to_metric_families
from pytest_lsp import ClientServerConfig, LanguageClient

from suggest_ls.backends.device import gpu_memory
from suggest_ls.harness.wire import free_port

from .conftest import change_settings, inline, open_doc, start, status, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")
PORT = free_port()
SERVER = [sys.executable, "-m", "suggest_ls", "--stdio", "--health-port", str(PORT)]
FUNC = "def add(a, b):\n    return "
STATUS_FIELDS = {
    "state",
    "reason",
    "model",
    "quantization",
    "device",
    "gpuLayers",
    "layers",
    "gpu",
    "gpuMemUsed",
    "tokensPerSecond",
    "latency",
    "requests",
    "cacheHits",
    "acceptance",
    "acceptanceRate",
    "recentReasons",
    "alerts",
    "loaded",
    "threads",
    "swap",
}


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), scope="module")
async def client(lsp_client: LanguageClient):
    lsp_client.init_result = await start(lsp_client, {"alertMinTokensPerSecond": 0})
    yield
    await lsp_client.shutdown_session()


def get(path: str) -> tuple[int, str, str]:
    """GET from the health endpoint: code, content type, body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def metrics() -> dict[str, float]:
    """Every sample of /metrics by name (labels folded into the name)."""
    code, ctype, body = get("/metrics")
    assert code == 200 and ctype.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def _type(client: LanguageClient, uri: str, version: int, line: int, character: int, text: str) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(types.Position(line, character), types.Position(line, character)), text=text
                )
            ],
        )
    )


async def test_status_reports_every_field_and_the_gpu_as_nvml_sees_it(client: LanguageClient):
    current = await status(client)
    assert STATUS_FIELDS <= set(current)
    assert current["state"] == "ready" and current["loaded"] is True
    assert current["reason"].startswith(current["model"])
    assert current["model"] == "gemma-3-270m-q4_k_m.gguf" and "Q4_K" in current["quantization"]
    assert current["layers"] > 1 and 0 <= current["gpuLayers"] <= current["layers"]
    gpu = gpu_memory()
    if gpu is None:
        assert current["gpu"] == "no GPU" and current["gpuMemUsed"] == "no GPU"
        assert current["device"] == "CPU" and current["gpuLayers"] == 0
    else:
        view = current["gpu"]
        assert view["name"] == gpu.name and view["totalBytes"] == gpu.total
        assert 0 < view["usedBytes"] <= view["totalBytes"]
        assert view["fraction"] == round(view["usedBytes"] / view["totalBytes"], 3)
        assert current["gpuMemUsed"] == view["used"] and view["used"].endswith("GB")
    assert current["threads"] >= 1
    assert set(current["latency"]) >= {"p50_ms", "p99_ms"}
    assert any(s["state"] == "ready" for s in client.statuses)  # didChangeStatus was sent


async def test_requests_cache_hits_and_speed_are_counted(client: LanguageClient):
    before = await status(client)
    uri = "file:///tmp/counted.py"
    open_doc(client, uri, FUNC)
    shown = (await inline(client, uri, 1, 11)).items
    assert len(shown) == 1 and isinstance(shown[0].insert_text, str) and len(shown[0].insert_text) >= 2
    text = shown[0].insert_text
    _type(client, uri, 2, 1, 11, text[0])  # type the suggestion's first character: the cache answers
    hit = (await inline(client, uri, 1, 12)).items
    assert len(hit) == 1 and hit[0].insert_text == text[1:]
    after = await wait_for(client, lambda s: s["requests"] >= before["requests"] + 2)
    assert after["requests"] == before["requests"] + 2
    assert after["cacheHits"] == before["cacheHits"] + 1
    assert after["latency"]["count"] == before["latency"]["count"] + 2
    assert after["tokensPerSecond"] > 0  # a generation ran within the last 10 seconds
    assert after["recentReasons"] == before["recentReasons"]  # both were shown: no new reason


async def test_health_and_metrics_over_http(client: LanguageClient):
    open_doc(client, "file:///tmp/health.py", FUNC)
    result = await inline(client, "file:///tmp/health.py", 1, 11)
    assert result.items
    code, ctype, body = get("/health")
    health = json.loads(body)
    assert code == 200 and ctype == "application/json"
    assert list(health)[:3] == ["status", "gpu_mem_used", "current_tps"]
    assert health["status"] == "ok" and health["state"] == "ready"
    assert isinstance(health["current_tps"], float) and health["current_tps"] > 0  # generated just now
    current = await status(client)
    assert health["gpu_mem_used"] == current["gpuMemUsed"]
    assert health["gpu_mem_used"] == "no GPU" or health["gpu_mem_used"].endswith("GB")
    assert health["requests"] == current["requests"] and health["latency"]["count"] >= 1
    samples = metrics()
    assert samples["suggest_ls_state{suggest_ls_state=ready}"] == 1.0
    assert samples["suggest_ls_state{suggest_ls_state=degraded}"] == 0.0
    assert samples["suggest_ls_requests_total{result=shown}"] == current["outcomes"]["shown"]
    assert samples["suggest_ls_request_latency_seconds_count"] >= 1
    assert samples["suggest_ls_tokens_total{kind=generated}"] >= 1
    assert samples["suggest_ls_model_loaded"] == 1.0
    assert get("/nowhere")[0] == 404


async def test_acceptance_command_and_partial_acceptance(client: LanguageClient):
    provider = client.init_result.capabilities.execute_command_provider
    assert provider is not None and "suggestLs.accepted" in provider.commands
    before = (await status(client))["acceptance"]
    items = []
    for i, uri in enumerate(("file:///tmp/acc1.py", "file:///tmp/acc2.py", "file:///tmp/acc3.py")):
        open_doc(client, uri, f"def add{i}(a, b):\n    return ")
        result = await inline(client, uri, 1, 11)
        assert result.items, uri
        items.append(result.items[0])
    for item in items:
        assert item.command is not None and item.command.command == "suggestLs.accepted"
        arg = item.command.arguments[0]
        assert arg["length"] == len(item.insert_text) and arg["id"]
    first, second = items[0].command, items[1].command
    accepted = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=first.command, arguments=first.arguments)
    )
    assert accepted is True
    again = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=first.command, arguments=first.arguments)
    )
    assert again is False  # one acceptance per suggestion
    client.protocol.notify("suggest/didPartiallyAccept", {"id": second.arguments[0]["id"], "acceptedLength": 1})
    await asyncio.sleep(0.2)
    after = (await status(client))["acceptance"]
    assert after["offered"] - before["offered"] == 3
    assert after["accepted"] - before["accepted"] == 1
    assert after["partiallyAccepted"] - before["partiallyAccepted"] == 1
    assert after["rate"] == round((after["accepted"] + after["partiallyAccepted"]) / after["offered"], 3)
    samples = metrics()
    assert samples["suggest_ls_suggestions_accepted_total"] == after["accepted"]
    assert samples["suggest_ls_acceptance_rate"] == after["rate"]


async def test_p99_alert_degrades_once_and_clears(client: LanguageClient):
    shown_before = len([m for m in client.messages if "degraded" in m.message])
    change_settings(client, alerts="always", alertMaxP99Ms=1, alertMinSamples=2, alertMinTokensPerSecond=0)
    for i in range(2):
        uri = f"file:///tmp/alert{i}.py"
        open_doc(client, uri, f"def mul{i}(a, b):\n    return ")
        await inline(client, uri, 1, 11)
    degraded = await wait_for(client, lambda s: s["state"] == "degraded", timeout=10)
    assert "p99 latency" in degraded["reason"] and "above 1 ms" in degraded["reason"]
    assert [a["check"] for a in degraded["alerts"]] == ["p99_latency"]
    assert json.loads(get("/health")[2])["status"] == "degraded"
    assert metrics()["suggest_ls_alert_active{check=p99_latency}"] == 1.0
    for i in range(2, 3):  # another slow request: still one message
        uri = f"file:///tmp/alert{i}.py"
        open_doc(client, uri, f"def mul{i}(a, b):\n    return ")
        await inline(client, uri, 1, 11)
    await asyncio.sleep(1.2)
    assert len([m for m in client.messages if "degraded" in m.message]) == shown_before + 1
    change_settings(client, alertMaxP99Ms=600000)
    recovered = await wait_for(client, lambda s: s["state"] == "ready", timeout=10)
    assert recovered["alerts"] == []
    states = [s["state"] for s in client.statuses]
    assert states[-2:] == ["degraded", "ready"]


async def test_accepting_a_word_of_the_suggestion_counts_as_partial_acceptance(client: LanguageClient):
    uri = "file:///tmp/word.py"
    text = "def scale(values, factor):\n    return "
    open_doc(client, uri, text)
    result = await inline(client, uri, 1, 11)
    assert result.items
    shown = result.items[0].insert_text
    assert isinstance(shown, str) and len(shown) >= 3
    before = (await status(client))["acceptance"]
    word = shown[: max(2, len(shown) // 2)]  # what the editor inserts for "accept next word"
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(1, 11), end=types.Position(1, 11)), text=word
                )
            ],
        )
    )
    after = await wait_for(client, lambda s: s["acceptance"]["acceptedChars"] > before["acceptedChars"])
    assert after["acceptance"]["partiallyAccepted"] == before["partiallyAccepted"] + 1
    assert after["acceptance"]["acceptedChars"] - before["acceptedChars"] == len(word)
