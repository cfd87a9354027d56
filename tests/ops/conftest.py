"""Shared pieces of the operations tests: a requantized model; the LSP helpers of tests/e2e/conftest.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.conftest import CAPABILITIES, as_dict, inline, open_doc, start, status, wait_for

__all__ = ["CAPABILITIES", "as_dict", "change_settings", "inline", "open_doc", "start", "status", "wait_for"]


@pytest.fixture(scope="session")
def quantized(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The embedded model re-quantized to Q4_0 by ``suggest-ls quantize`` (the CLI, in a subprocess)."""
    out = tmp_path_factory.mktemp("quantized") / "gemma-3-270m-q4_0.gguf"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "suggest_ls",
            "quantize",
            str(model_path),
            str(out),
            "--type",
            "Q4_0",
            "--allow-requantize",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out, done


def change_settings(client: LanguageClient, **settings) -> None:
    """Send workspace/didChangeConfiguration with suggestLs settings."""
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"suggestLs": settings}))
