import pytest

from worker.core.settings import load_settings


def test_secret_from_env(monkeypatch):
    monkeypatch.setenv("LIVEDUB_HOOK_SECRET", "abc-0123456789abcdef")
    assert load_settings().require_hook_secret() == "abc-0123456789abcdef"


def test_secret_from_file(tmp_path, monkeypatch):
    monkeypatch.delenv("LIVEDUB_HOOK_SECRET", raising=False)
    f = tmp_path / "s"
    f.write_text("fromfile-0123456789\n")
    assert load_settings(hook_secret_file=f).require_hook_secret() == "fromfile-0123456789"


def test_no_secret_refuses_unless_insecure(monkeypatch):
    monkeypatch.delenv("LIVEDUB_HOOK_SECRET", raising=False)
    with pytest.raises(RuntimeError, match="no hook secret"):
        load_settings().require_hook_secret()
    assert load_settings(hook_insecure=True).require_hook_secret() is None


def test_secret_is_not_in_repr(monkeypatch):
    monkeypatch.setenv("LIVEDUB_HOOK_SECRET", "topsecret-0123456789")
    assert "topsecret-0123456789" not in repr(load_settings())


def test_placeholder_and_short_secrets_are_refused_at_start():
    with pytest.raises(ValueError, match="placeholder"):
        load_settings(hook_secret="change-me-to-a-long-random-string")
    with pytest.raises(ValueError, match="shorter than 16"):
        load_settings(operator_token="short")
    assert load_settings(internal_key="a" * 16).internal_key_value() == "a" * 16


def test_speech_mode_is_the_default(monkeypatch):
    from worker.core.units import Segmentation

    monkeypatch.delenv("LIVEDUB_SEGMENTATION", raising=False)
    assert load_settings().segmentation is Segmentation.SPEECH
    monkeypatch.setenv("LIVEDUB_SEGMENTATION", "fixed")
    assert load_settings().segmentation is Segmentation.FIXED
