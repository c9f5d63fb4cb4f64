"""OAuth settings: required secrets, key validation without echoing values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from castghl.common.crypto import generate_key
from castghl.common.settings import describe_errors
from castghl.oauth.settings import OAuthSettings

GOOD = {"BASE_URL": "https://bridge.example", "GHL_CLIENT_ID": "client",
        "GHL_CLIENT_SECRET": "secret", "ADMIN_API_KEY": "a" * 16}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*GOOD, "TOKEN_ENCRYPTION_KEYS", "REFRESH_LEASE_SECONDS",
                 "GHL_HTTP_TIMEOUT_SECONDS"):
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
