"""OAuth service settings (environment variables; see docs/oauth.md)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, PlainValidator, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from castghl.common.crypto import TokenCipher
from castghl.common.ghl.oauth import UserType
from castghl.common.settings import (
    BrokerSettings,
    CastApiSettings,
    GhlApiSettings,
    HttpUrl,
    MongoSettings,
    Port,
)
from castghl.oauth.tenancy import DefaultKeyFor

# A CSP source for frame-ancestors: a scheme and a host, optionally a wildcard subdomain
# and a port; nothing that could end the directive.
_ORIGIN = re.compile(r"^https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


class OAuthSettings(BrokerSettings, MongoSettings, GhlApiSettings, CastApiSettings):
    host: str = "0.0.0.0"  # noqa: S104 - in a container; compose publishes on 127.0.0.1
    port: Port = 3003
    base_url: HttpUrl
    ghl_client_id: str = Field(min_length=1)
    ghl_client_secret: SecretStr = Field(min_length=1)
    # Lifecycle events of other apps are ignored by this id; agency installs list their
    # locations with it. Required: GHL signs every app's webhooks with one shared key.
    ghl_app_id: str = Field(min_length=1, max_length=128)
    ghl_marketplace_url: HttpUrl = HttpUrl("https://marketplace.gohighlevel.com")
    # How to exchange the code of an install started in the Marketplace (no state of ours):
    # Location for a sub-account app, Company for an app agencies install in bulk.
    ghl_marketplace_user_type: UserType = "Location"
    # Who may send on the operator's default Cast key: `*`, GHL company ids, or nobody.
    cast_default_key_for: Annotated[DefaultKeyFor, NoDecode,
                                    PlainValidator(DefaultKeyFor.parse)] = DefaultKeyFor()
    token_encryption_keys: SecretStr
    admin_api_key: SecretStr = Field(min_length=16)
    # The sender presents it to the internal API, whose answers carry tokens and Cast keys.
    sender_api_key: SecretStr = Field(min_length=16)
    # The console reads the sender's operator API (with ADMIN_API_KEY) and the gateway's
    # readiness; with several sender replicas, any one of them answers.
    sender_url: HttpUrl = HttpUrl("http://127.0.0.1:3004")
    # The Marketplace app's Shared Secret: GHL encrypts the user context of the app's
    # Custom Page (/ghl/settings) with it. Unset, that page is off.
    ghl_sso_key: SecretStr | None = None
    # Who may frame that page (CSP frame-ancestors): GHL's app domains; add an agency's
    # white-label app domain here.
    ghl_frame_ancestors: str = ("https://app.gohighlevel.com https://*.gohighlevel.com "
                                "https://*.leadconnectorhq.com")
    gateway_url: HttpUrl = HttpUrl("http://127.0.0.1:3002")

    # A token handed out is valid at least this long, whatever a caller asks for less.
    token_min_valid_seconds: int = Field(300, ge=0, le=3600)
    # The lease must outlive the longest GHL call, or a second replica could refresh with
    # the same single-use refresh token (checked below against the HTTP timeout).
    refresh_lease_seconds: float = Field(45.0, gt=0, le=600)
    # How often a replica looks at Mongo while another one holds the refresh lease.
    refresh_poll_seconds: float = Field(0.05, gt=0, le=5)
    sweep_interval_seconds: float = Field(3600.0, ge=10)
    # GHL refresh tokens live a year; refreshing those idle this long keeps them alive.
    refresh_idle_days: float = Field(30.0, gt=0, le=300)
    oauth_state_ttl_seconds: int = Field(900, ge=60, le=86400)
    lifecycle_max_attempts: int = Field(8, ge=1, le=100)

    @field_validator("ghl_frame_ancestors")
    @classmethod
    def _origins(cls, value: str) -> str:
        sources = value.split()
        if not sources:
            raise ValueError("name at least one origin, e.g. https://app.gohighlevel.com")
        for position, source in enumerate(sources, 1):
            if not _ORIGIN.fullmatch(source):
                raise ValueError(f"entry {position} is not an origin like "
                                 "https://app.example.com or https://*.example.com")
        return " ".join(sources)

    @field_validator("ghl_sso_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("token_encryption_keys")
    @classmethod
    def _keys_decrypt(cls, value: SecretStr) -> SecretStr:
        # TokenCipher's errors name the entry by position only, never its value.
        TokenCipher.from_setting(value.get_secret_value())
        return value

    @field_validator("refresh_lease_seconds")
    @classmethod
    def _lease_outlives_calls(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("ghl_http_timeout_seconds")
        if isinstance(timeout, float | int) and value <= timeout + 5:
            raise ValueError("must exceed GHL_HTTP_TIMEOUT_SECONDS by more than 5 seconds")
        return value

    @property
    def callback_url(self) -> str:
        return f"{str(self.base_url).rstrip('/')}/oauth/callback"

    def cipher(self) -> TokenCipher:
        return TokenCipher.from_setting(self.token_encryption_keys.get_secret_value())
