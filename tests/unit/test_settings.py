import pytest

from worker.core.settings import load_settings


def test_secret_from_env(monkeypatch):
    monkeypatch.setenv("LIVEDUB_HOOK_SECRET", "abc")
    assert load_settings().require_hook_secret() == "abc"


def test_secret_from_file(tmp_path, monkeypatch):
    monkeypatch.delenv("LIVEDUB_HOOK_SECRET", raising=False)
    f = tmp_path / "s"
    f.write_text("fromfile\n")
    assert load_settings(hook_secret_file=f).require_hook_secret() == "fromfile"


def test_no_secret_refuses_unless_insecure(monkeypatch):
    monkeypatch.delenv("LIVEDUB_HOOK_SECRET", raising=False)
    with pytest.raises(RuntimeError, match="no hook secret"):
        load_settings().require_hook_secret()
    assert load_settings(hook_insecure=True).require_hook_secret() is None


def test_secret_is_not_in_repr(monkeypatch):
    monkeypatch.setenv("LIVEDUB_HOOK_SECRET", "topsecret")
    assert "topsecret" not in repr(load_settings())
