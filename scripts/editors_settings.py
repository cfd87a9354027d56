"""Write every server setting (suggest_ls.settings.OPTIONS) into the VS Code extension's package.json.

``--check`` only compares and exits non-zero when package.json is out of date.
Extension-only settings live under ``suggestLs.server.*`` and ``suggestLs.trace.*`` and are kept as they are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from suggest_ls.settings import OPTIONS, SECTION, Option, default_of

PACKAGE = Path(__file__).resolve().parent.parent / "editors" / "vscode" / "package.json"
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
CLIENT_PREFIXES = (f"{SECTION}.server.", f"{SECTION}.trace.")


def prop(option: Option, order: int) -> dict[str, Any]:
    """The package.json configuration property of one server option."""
    out: dict[str, Any] = {
        "type": JSON_TYPES[option.kind],
        "default": default_of(option),
        "description": option.description,
    }
    if option.choices:
        out["enum"] = list(option.choices)
    out["scope"] = "machine-overridable" if option.key in ("model", "endpoint", "threads", "gpuLayers") else "window"
    out["order"] = order
    return out


def render(package: dict[str, Any]) -> dict[str, Any]:
    """package.json with the server settings regenerated (client-only settings kept, after them)."""
    props = package["contributes"]["configuration"]["properties"]
    client = {k: v for k, v in props.items() if k.startswith(CLIENT_PREFIXES)}
    server = {f"{SECTION}.{o.key}": prop(o, i) for i, o in enumerate(OPTIONS)}
    package["contributes"]["configuration"]["properties"] = {**server, **client}
    return package


def dump(package: dict[str, Any]) -> str:
    """package.json text as committed."""
    return json.dumps(package, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    current = PACKAGE.read_text()
    wanted = dump(render(json.loads(current)))
    if "--check" in sys.argv:
        sys.exit(
            0 if current == wanted else "package.json settings are out of date: run python scripts/editors_settings.py"
        )
    PACKAGE.write_text(wanted)
