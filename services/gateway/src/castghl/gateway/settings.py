"""Gateway settings (environment variables; see the README's configuration table)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, SecretStr, field_validator

from castghl.common.settings import BrokerSettings, Port
from castghl.common.signatures import (
    GHL_ED25519_PUBLIC_KEY_PEM,
    GHL_RSA_PUBLIC_KEY_PEM,
    load_public_key,
)

_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


def split_pem_blocks(value: str) -> list[str]:
    """One variable may hold several PEM keys (old and new, during a key rotation); a
    blank one holds none (the legacy RSA key is turned off that way)."""
    text = value.replace("\\n", "\n")
    if not text.strip():
        return []
    return _PEM_BLOCK.findall(text) or [text]


class GatewaySettings(BrokerSettings):
    host: str = "0.0.0.0"  # noqa: S104 - in a container; compose publishes on 127.0.0.1
    port: Port = 3002
    ghl_webhook_public_key: str = GHL_ED25519_PUBLIC_KEY_PEM
    ghl_webhook_rsa_public_key: str = GHL_RSA_PUBLIC_KEY_PEM
    # GHL retries a failed webhook with the same body for up to about three days: a
    # shorter window would refuse the retries that follow an outage of our own. Replays
    # within it are harmless: the messageId dedupe outlives it (docs/architecture.md).
    webhook_max_age_seconds: int = Field(72 * 3600, ge=300, le=30 * 86_400)
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    # Webhooks in hand at once per process, beyond which it answers 503 + Retry-After:
    # 256 x 64 KiB bodies is 16 MiB at most, far inside the container's memory limit, and
    # far above what one process needs (a webhook takes ~1 ms of its time; docs/deploy.md).
    max_concurrent_requests: int = Field(256, ge=1, le=10_000)
    inbound_api_key: SecretStr = Field(min_length=16)

    @field_validator("ghl_webhook_public_key", "ghl_webhook_rsa_public_key")
    @classmethod
    def _keys_load(cls, value: str) -> str:
        for block in split_pem_blocks(value):
            load_public_key(block)  # raises ValueError naming the problem
        return value

    @field_validator("ghl_webhook_public_key")
    @classmethod
    def _ed25519_key_given(cls, value: str) -> str:
        if not split_pem_blocks(value):
            raise ValueError("must hold GHL's webhook public key (only the legacy RSA key "
                             "may be blank, to turn it off)")
        return value

    def public_keys(self) -> list[Any]:
        return [load_public_key(block)
                for value in (self.ghl_webhook_public_key, self.ghl_webhook_rsa_public_key)
                for block in split_pem_blocks(value)]
