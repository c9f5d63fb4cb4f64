"""OAuth settings: required secrets, key validation without echoing values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from castghl.common.crypto import generate_key
from castghl.common.settings import describe_errors
from castghl.oauth.settings import OAuthSettings

GOOD = {"BASE_URL": "https://bridge.example", "GHL_CLIENT_ID": "client", "GHL_APP_ID": "app",
        "GHL_CLIENT_SECRET": "secret", "ADMIN_API_KEY": "a" * 16, "SENDER_API_KEY": "s" * 16,
        "CAST_API_KEY": "cast_" + "0" * 64}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*GOOD, "TOKEN_ENCRYPTION_KEYS", "REFRESH_LEASE_SECONDS",
                 "GHL_HTTP_TIMEOUT_SECONDS", "CAST_DEFAULT_KEY_FOR"):
        monkeypatch.delenv(name, raising=False)


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> OAuthSettings:
    for name, value in {**GOOD, **env}.items():
        monkeypatch.setenv(name, value)
    return OAuthSettings()


def test_good_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch, TOKEN_ENCRYPTION_KEYS=f"{generate_key()},{generate_key()}")
    assert settings.port == 3003
    assert settings.callback_url == "https://bridge.example/oauth/callback"
    assert settings.cipher().decrypt(settings.cipher().encrypt("x")) == "x"


def test_a_bad_encryption_key_is_named_by_position_never_by_value(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as bad:
        load(monkeypatch, TOKEN_ENCRYPTION_KEYS=f"{generate_key()},not-a-fernet-key-secret")
    text = describe_errors(OAuthSettings, bad.value)
    assert "TOKEN_ENCRYPTION_KEYS" in text
    assert "entry 2" in text
    assert "not-a-fernet-key-secret" not in text


def test_the_refresh_lease_must_outlive_a_ghl_call(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as bad:
        load(monkeypatch, TOKEN_ENCRYPTION_KEYS=generate_key(), GHL_HTTP_TIMEOUT_SECONDS="30",
             REFRESH_LEASE_SECONDS="30")
    assert "REFRESH_LEASE_SECONDS" in describe_errors(OAuthSettings, bad.value)


def test_a_short_admin_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as bad:
        load(monkeypatch, TOKEN_ENCRYPTION_KEYS=generate_key(), ADMIN_API_KEY="short")
    assert "ADMIN_API_KEY" in describe_errors(OAuthSettings, bad.value)


@pytest.mark.parametrize(("value", "everyone", "companies"), [
    ("", False, set()), ("*", True, set()), (" co1 , co2,", False, {"co1", "co2"}),
], ids=["nobody", "everyone", "listed"])
def test_who_may_use_the_default_cast_key(monkeypatch: pytest.MonkeyPatch, value: str,
                                          everyone: bool, companies: set[str]) -> None:
    settings = load(monkeypatch, TOKEN_ENCRYPTION_KEYS=generate_key(),
                    CAST_DEFAULT_KEY_FOR=value)
    assert settings.cast_default_key_for.everyone is everyone
    assert settings.cast_default_key_for.companies == companies


def test_the_default_is_nobody_and_bad_entries_are_named_by_position(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAST_DEFAULT_KEY_FOR", raising=False)
    assert not load(monkeypatch, TOKEN_ENCRYPTION_KEYS=generate_key()).cast_default_key_for.allows(
        "co1")
    for bad, says in (("co1,*", "stands alone"), ("co1,bad id!", "entry 2")):
        with pytest.raises(ValidationError) as refused:
            load(monkeypatch, TOKEN_ENCRYPTION_KEYS=generate_key(), CAST_DEFAULT_KEY_FOR=bad)
        text = describe_errors(OAuthSettings, refused.value)
        assert "CAST_DEFAULT_KEY_FOR" in text
        assert says in text
        assert "bad id!" not in text


def test_the_app_id_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GHL_APP_ID", raising=False)
    with pytest.raises(ValidationError) as refused:
        OAuthSettings()  # type: ignore[call-arg]
    assert "GHL_APP_ID is missing" in describe_errors(OAuthSettings, refused.value)
