"""Gateway settings: the freshness window, and GHL's legacy RSA key turned off by a blank."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from castghl.common.signatures import WebhookVerifier
from castghl.gateway.settings import GatewaySettings

INBOUND_KEY = "inbound-key-0123456789"


def test_the_default_window_covers_ghls_three_days_of_retries() -> None:
    assert GatewaySettings(inbound_api_key=INBOUND_KEY).webhook_max_age_seconds >= 72 * 3600


def test_a_blank_rsa_key_turns_the_legacy_signature_off() -> None:
    settings = GatewaySettings(inbound_api_key=INBOUND_KEY, ghl_webhook_rsa_public_key="")
    keys = settings.public_keys()
    assert [type(key).__name__ for key in keys] == ["Ed25519PublicKey"]
    WebhookVerifier(keys)  # builds with the Ed25519 key alone


def test_the_ed25519_key_cannot_be_blank() -> None:
    with pytest.raises(ValidationError, match="only the legacy RSA key"):
        GatewaySettings(inbound_api_key=INBOUND_KEY, ghl_webhook_public_key=" ")
