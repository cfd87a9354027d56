"""The VS Code extension's package.json contributes exactly the server's settings (suggest_ls.settings.OPTIONS)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from suggest_ls.settings import OPTIONS, SECTION, default_of, resolve

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "editors" / "vscode" / "package.json"
CLIENT_ONLY = {"server.path", "server.pythonPath", "server.args", "trace.server"}


def manifest() -> dict[str, Any]:
    """The extension manifest."""
    return json.loads(PACKAGE.read_text())


def properties() -> dict[str, dict[str, Any]]:
    """The contributed settings, keyed without the ``suggestLs.`` prefix."""
    props = manifest()["contributes"]["configuration"]["properties"]
    assert all(k.startswith(f"{SECTION}.") for k in props)
    return {k.removeprefix(f"{SECTION}."): v for k, v in props.items()}


def generator() -> ModuleType:
    """scripts/editors_settings.py as a module."""
    spec = importlib.util.spec_from_file_location("editors_settings", ROOT / "scripts" / "editors_settings.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_server_option_is_contributed_with_its_default_description_and_choices() -> None:
    props = properties()
    for option in OPTIONS:
        prop = props.get(option.key)
        assert prop is not None, f"suggestLs.{option.key} missing from package.json"
        assert prop["default"] == default_of(option), option.key
        assert prop["description"] == option.description, option.key
        assert prop.get("enum", []) == list(option.choices), option.key
        expected_type = {bool: "boolean", int: "integer", float: "number", str: "string"}[option.kind]
        assert prop["type"] == expected_type, option.key


def test_nothing_else_is_contributed_but_the_client_settings() -> None:
    extra = set(properties()) - {o.key for o in OPTIONS}
    assert extra == CLIENT_ONLY


def test_the_defaults_the_extension_sends_resolve_without_a_message() -> None:
    sent = {k: v["default"] for k, v in properties().items() if k not in CLIENT_ONLY}
    settings, messages = resolve({SECTION: sent})
    assert messages == []
    assert settings == resolve(None)[0]


def test_package_json_is_what_the_generator_writes() -> None:
    gen = generator()
    current = PACKAGE.read_text()
    assert gen.dump(gen.render(json.loads(current))) == current, "run: python scripts/editors_settings.py"


def test_extension_depends_on_languageclient_11_and_ships_its_lockfile() -> None:
    m = manifest()
    assert m["dependencies"]["vscode-languageclient"].lstrip("^~").startswith("11.")
    lock = json.loads((PACKAGE.parent / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/vscode-languageclient"]["version"].startswith("11.")
