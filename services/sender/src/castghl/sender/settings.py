"""Sender settings (environment variables; see the README's configuration table)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from castghl.common.settings import (
    BrokerSettings,
    CastApiSettings,
    GhlApiSettings,
    HttpUrl,
    MongoSettings,
    Port,
)
from castghl.sender.optouts import ConsentWords


def _parse_words(value: object) -> object:
    """'ALIS, HINTO' → ('ALIS', 'HINTO'): env lists are comma-separated, not JSON."""
    if isinstance(value, str):
        return tuple(word.strip() for word in value.split(",") if word.strip())
    return value


Words = Annotated[tuple[Annotated[str, Field(max_length=40)], ...], NoDecode,
                  BeforeValidator(_parse_words)]


class SenderSettings(BrokerSettings, MongoSettings, GhlApiSettings, CastApiSettings):
    host: str = "0.0.0.0"  # noqa: S104 - health port inside a container; not published
    port: Port = 3004

    # The OAuth service's internal API: tokens, location settings, inbound routes.
    oauth_url: HttpUrl
    sender_api_key: SecretStr = Field(min_length=16)
    # The operator API (`/ops`), which the OAuth service's console reads.
    admin_api_key: SecretStr = Field(min_length=16)
    oauth_timeout_seconds: float = Field(20.0, gt=0, le=120)
    # How long location settings are kept; changes are announced at once, this only
    # bounds how stale they get when an announcement is lost.
    location_cache_seconds: float = Field(60.0, ge=0, le=3600)

    cast_sender_id: str | None = Field(None, max_length=20)
    cast_rate_limit_per_second: float = Field(30.0, gt=0, le=1000)
    cast_rate_burst: int = Field(50, ge=1, le=10_000)
    # Cast's newer doc adds a per-account rate (10/s by default); the older one has none,
    # so the default is the per-IP rate, and operators lower it to what Cast granted them.
    cast_key_rate_limit_per_second: float = Field(30.0, gt=0, le=1000)
    cast_max_message_chars: int = Field(450, ge=10, le=10_000)
    cast_max_parts_per_message: int = Field(3, ge=1, le=20)
    cast_idempotency: bool = True
    cast_lane_concurrency: int = Field(64, ge=1, le=1000)
    outbound_max_attempts: int = Field(5, ge=1, le=50)
    # Each Cast account's balance is read this often (one replica per account and period).
    cast_balance_check_seconds: float = Field(300.0, ge=1, le=86_400)
    # Below this many credits (SMS parts), one WARNING each time a balance drops under it.
    cast_low_credits: float = Field(500.0, ge=0)
    # The status of a message whose receipts never came within CAST_RECEIPT_CHECK_DELAYS.
    cast_receipt_unknown_as: Literal["delivered", "failed"] = "delivered"

    status_max_attempts: int = Field(10, ge=1, le=50)
    inbound_max_attempts: int = Field(10, ge=1, le=50)
    inbound_concurrency: int = Field(8, ge=1, le=500)
    # A reply to a number no location owns goes to the one location that texted its sender
    # within this many days, if only one did (message records are kept 30 days).
    inbound_fallback_days: float = Field(30.0, ge=0, le=30)
    # Not needed by a default SMS provider; sent with inbound messages when set.
    ghl_conversation_provider_id: str | None = None
    status_concurrency: int = Field(16, ge=1, le=500)
    # GHL's limit per location (and app) that every replica keeps together: calls with a
    # location token in any 10 seconds.
    ghl_location_calls_per_10s: int = Field(100, ge=2, le=100_000)
    # Whole replies that opt a number out of (or back into) a location's SMS, besides
    # STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT and START, UNSTOP.
    opt_out_words: Words = ()
    opt_in_words: Words = ()

    @field_validator("opt_in_words")
    @classmethod
    def _words_mean_one_thing(cls, value: tuple[str, ...], info: ValidationInfo
                              ) -> tuple[str, ...]:
        ConsentWords.with_extra(info.data.get("opt_out_words", ()), value)
        return value

    def consent_words(self) -> ConsentWords:
        return ConsentWords.with_extra(self.opt_out_words, self.opt_in_words)

    @field_validator("cast_sender_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value
