from suggest_ls.settings import DEFAULTS, OPTIONS, Settings, resolve


def test_defaults_when_nothing_given():
    settings, messages = resolve(None)
    assert settings == Settings()
    assert messages == []


def test_camel_case_options_resolve_to_fields():
    settings, messages = resolve({"temperature": 0, "debounceMs": 20, "parallel": 2, "model": "/m.gguf"})
    assert (settings.temperature, settings.debounce_ms, settings.parallel, settings.model) == (0.0, 20, 2, "/m.gguf")
    assert messages == []


def test_section_wrapper_is_accepted():
    settings, _ = resolve({"suggestLs": {"enabled": False}})
    assert settings.enabled is False


def test_invalid_values_fall_back_with_a_message():
    settings, messages = resolve({"parallel": 0, "temperature": "hot", "multiline": "sometimes", "enabled": 1})
    assert settings.parallel == DEFAULTS.parallel
    assert settings.temperature == DEFAULTS.temperature
    assert settings.multiline == DEFAULTS.multiline
    assert settings.enabled is True
    assert len(messages) == 4
    assert all("keeping" in m for m in messages)


def test_unknown_setting_is_reported():
    _, messages = resolve({"colour": "blue"})
    assert messages == ["unknown setting suggestLs.colour ignored"]


def test_resolution_is_layered_over_a_base():
    first, _ = resolve({"parallel": 2})
    second, _ = resolve({"temperature": 0.5}, first)
    assert (second.parallel, second.temperature) == (2, 0.5)


def test_every_field_has_one_documented_option():
    fields = {f for f in Settings.__dataclass_fields__}
    assert {o.field for o in OPTIONS} == fields
    assert all(o.description.endswith(".") for o in OPTIONS)


def test_readme_settings_table_is_current():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "settings_table.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_empty_section_as_a_list_is_no_options():
    assert resolve({"suggestLs": []}) == (DEFAULTS, [])
    assert resolve({"suggestLs": 3})[1] == ["suggestLs must be an object; ignored"]


def test_key_value_pairs_from_the_command_line():
    from suggest_ls.settings import parse_pairs

    raw = parse_pairs(["maxTokens=8", "template=bare", "enabled=false", "suffixShare=0.5", "model=a=b.gguf"])
    assert raw == {"maxTokens": 8, "template": "bare", "enabled": False, "suffixShare": 0.5, "model": "a=b.gguf"}
    settings, messages = resolve(raw)
    assert not messages and settings.max_tokens == 8 and settings.template == "bare"
