"""Emacs + eglot end to end through the completion fallback (needs Debian emacs-nox and elpa-eglot).

Not collected by the default suite (the packages come from apt): scripts/editors-e2e.sh runs
``pytest tests/editors/emacs_check.py`` after installing them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

DRIVER = Path(__file__).with_name("emacs_e2e.el")


def test_eglot_completion_inserts_the_model_suggestion(tmp_path: Path) -> None:
    emacs = shutil.which("emacs")
    assert emacs, "emacs not found: apt-get install emacs-nox elpa-eglot"
    source = tmp_path / "add.py"
    source.write_text("def add(a, b):\n    return ")
    out = tmp_path / "out.json"
    env = dict(os.environ, SUGGEST_PYTHON=sys.executable, SUGGEST_FILE=str(source), SUGGEST_OUT=str(out))
    proc = subprocess.run(
        [emacs, "--batch", "-Q", "-l", str(DRIVER)], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert out.exists(), proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["error"] is None, result["error"]
    assert result["state"] == "ready"
    assert result["line_before"] == "    return "
    assert len(result["candidates"]) == 1 and result["candidates"][0].strip()
    # completion-at-point applied the item's text edit: the line now holds the model's suggestion
    assert result["line_after"].startswith("    return ") and len(result["line_after"]) > len("    return ")
    assert result["candidates"][0].split("\n")[0] in result["line_after"]
