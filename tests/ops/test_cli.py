"""The command line: global options after the subcommand, ``complete`` and ``check`` on the real model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from suggest_ls.cli import build_parser

CLI = [sys.executable, "-m", "suggest_ls"]
SOURCE = "def add(a, b):\n    return \n\n\nprint(add(1, 2))\n"


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "argv",
    [
        ["complete", "f.py:2:12", "--model", "m.gguf", "--log-level", "debug"],
        ["--model", "m.gguf", "--log-level", "debug", "complete", "f.py:2:12"],
        ["--model", "other.gguf", "complete", "f.py:2:12", "--model", "m.gguf", "--log-level", "debug"],
    ],
)
def test_global_options_before_or_after_the_subcommand(argv):
    args = build_parser().parse_args(argv)
    assert (args.command, args.location, args.model, args.log_level) == ("complete", "f.py:2:12", "m.gguf", "debug")


def test_absent_after_the_subcommand_keeps_the_defaults():
    for argv in (["check"], ["complete", "f.py:1:1"], ["quantize", "a.gguf", "b.gguf"]):
        args = build_parser().parse_args(argv)
        assert (args.model, args.log_level, args.log_file) == ("", "info", None)
    assert build_parser().parse_args(["check", "--model", "m.gguf"]).model == "m.gguf"
    assert build_parser().parse_args(["quantize", "a", "b", "--log-file", "q.log"]).log_file == "q.log"


def test_complete_runs_the_pipeline_on_the_model_given_after_the_subcommand(tmp_path: Path, model_path: Path):
    src = tmp_path / "add.py"
    src.write_text(SOURCE)
    done = run("complete", f"{src}:2:12", "--model", str(model_path), "--json", "--explain", "--repeat", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["model"] == str(model_path)
    assert out["device"] and out["template"]
    assert isinstance(out["suggestion"], str) and (out["suggestion"] or out["reason"])
    assert "\n" not in out["suggestion"].rstrip("\n")  # one line after a statement start
    # the prompt is the file's text up to the cursor (and what the model wrote is kept)
    assert "def add(a, b):\n    return " in out["prompt"] and out["raw"] is not None
    first, second = out["runs"]
    assert first["evaluated_tokens"] > 0 and first["total_ms"] > 0
    # the second run reuses the first one's KV cache: only the tokens after the cached prefix are evaluated
    assert second["cached_tokens"] >= first["prompt_tokens"] - 2
    assert second["evaluated_tokens"] < first["evaluated_tokens"]


def test_complete_text_output_and_a_bad_location(tmp_path: Path, model_path: Path):
    src = tmp_path / "add.py"
    src.write_text(SOURCE)
    done = run("complete", f"{src}:2:12", "--model", str(model_path))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"model      {model_path.name} (") and "template " in lines[0]
    assert any(line.startswith("suggestion ") for line in lines)
    assert any(line.startswith("first      total ") for line in lines)
    missing = run("complete", f"{tmp_path / 'nope.py'}:1:1", "--model", str(model_path))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_check_loads_the_model_and_runs_a_smoke_completion(model_path: Path):
    for argv in (["check", "--model", str(model_path)], ["--model", str(model_path), "check"]):
        done = run(*argv)
        assert done.returncode == 0, done.stderr[-2000:]
        lines = done.stdout.splitlines()
        assert lines[-1] == "ok"
        assert f"model      {model_path} (from " in done.stdout
        assert any(line.startswith("device     ") for line in lines)
        smoke = next(line for line in lines if line.startswith("smoke      "))
        assert " ms (" in smoke and "tokens)" in smoke


def test_check_with_a_missing_model_fails_with_a_message(tmp_path: Path):
    done = run("check", "--model", str(tmp_path / "missing.gguf"))
    assert done.returncode == 1
    assert "\nerror: model file not found: " in "\n" + done.stderr and "missing.gguf" in done.stderr
