"""The Cast simulator's live knobs: read at request time, changed by `PATCH /_sandbox/config`.

Defaults follow the *old* Cast doc (reference/cast.md), as the bridge's settings do; each
newer-doc behaviour is a knob away (`accept_e164`, `key_rate_per_second`, bigger limits).
`fail_next` and `hang_next` are queues the simulator consumes as requests arrive, so
`GET /_sandbox/config` shows what is still pending.
"""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Sandbox keys begin `cast_test_` (reference/cast.md); a recognisable value operators can copy.
DEFAULT_API_KEY = "cast_test_" + "0123456789abcdef" * 4
DEFAULT_INBOUND_API_KEY = "castghl-sandbox-inbound-secret"

Outcome = Literal["sent", "pending", "delivered", "undelivered", "failed"]

# The error code Cast pairs with each status (reference/cast.md, "Errors"); an injected
# fault uses it unless the fault names another code of the same status.
DEFAULT_ERROR_CODES: dict[int, str] = {
    400: "VALIDATION_ERROR",
    401: "INVALID_API_KEY",
    402: "INSUFFICIENT_CREDITS",
    403: "API_KEY_REVOKED",
    404: "NOT_FOUND",
    422: "ALREADY_UNSUBSCRIBED",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    502: "PROVIDER_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


class FaultSpec(BaseModel):
    """`count` sends answered `status` before anything else happens to them, or after the
    message was really sent when `after_send` (5xx only: "outcome unknown")."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    status: int
    count: int = Field(default=1, ge=1)
    after_send: bool | None = None  # None: the `fault_after_send` knob decides (500/502)
    error_code: str | None = None

    @field_validator("status")
    @classmethod
    def _known_status(cls, status: int) -> int:
        if status not in DEFAULT_ERROR_CODES:
            raise ValueError(f"status must be one of {sorted(DEFAULT_ERROR_CODES)}")
        return status

    @model_validator(mode="after")
    def _after_send_only_for_server_errors(self) -> Self:
        if self.after_send and self.status < 500:
            raise ValueError("after_send applies to 5xx faults only")
        return self


class LatencySpec(BaseModel):
    """Processing time added to every API answer, in milliseconds.

    Uniform between `min` and `max`; with `mode` set, triangular peaking at `mode`, which
    gives the long right tail of a real service (most answers fast, a few slow).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    min: float = Field(default=0.0, ge=0)
    max: float = Field(default=0.0, ge=0)
    mode: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError("latency_ms.min must not exceed latency_ms.max")
        if self.mode is not None and not self.min <= self.mode <= self.max:
            raise ValueError("latency_ms.mode must lie between min and max")
        return self


class CastKnobs(BaseModel):
    """Everything an operator or test may change while the simulator runs."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Accounts and keys
    api_keys: list[str] = Field(default_factory=lambda: [DEFAULT_API_KEY])
    accept_any_key: bool = False  # any well-formed `cast_[test_]<64 hex>` key is an account
    revoked_keys: list[str] = Field(default_factory=list)
    credits: int | None = Field(default=None, ge=0)  # None: unlimited; else the live balance
    sender_ids: list[str] = Field(default_factory=list)  # empty: any sender ID is approved
    opted_out: list[str] = Field(default_factory=list)  # numbers answered 422

    # Request rules (old doc defaults; the new doc allows E.164, 10,000 chars, 20-char IDs)
    accept_e164: bool = False
    max_message_chars: int = Field(default=450, ge=1)
    max_sender_id_chars: int = Field(default=11, ge=1)

    # Idempotency (new doc); off = the old API, which ignores the header
    idempotency: bool = True
    idempotency_ttl_seconds: float = Field(default=24 * 3600, gt=0)

    # Rate limits: per source IP, and optionally per API key (new doc: 10 msg/s)
    rate_per_second: float = Field(default=30.0, gt=0)
    burst: int = Field(default=50, ge=1)
    key_rate_per_second: float | None = Field(default=None, gt=0)
    key_burst: int | None = Field(default=None, ge=1)  # None: the key rate, rounded up
    retry_after_seconds: int = Field(default=1, ge=1)

    # Fault injection (sends only)
    fault_rates: dict[str, float] = Field(
        default_factory=lambda: {"500": 0.0, "502": 0.0, "503": 0.0})
    fault_after_send: bool = True  # random and unqualified 500/502 happen after sending
    fail_next: list[FaultSpec] = Field(default_factory=list)
    hang_next: int = Field(default=0, ge=0)
    hang_rate: float = Field(default=0.0, ge=0, le=1)
    hang_seconds: float = Field(default=30.0, ge=0)
    latency_ms: LatencySpec = Field(default_factory=LatencySpec)
    seed: int | None = None

    # Delivery receipts, fixed per message when it is sent
    carrier_outcome: Outcome = "delivered"
    dlr_delay_seconds: float = Field(default=0.0, ge=0)

    # Inbound trigger (the simulated Cast SIM gateway posting replies to the bridge)
    inbound_api_key: str = DEFAULT_INBOUND_API_KEY
    inbound_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("fault_rates")
    @classmethod
    def _rates_are_probabilities(cls, rates: dict[str, float]) -> dict[str, float]:
        for status, rate in rates.items():
            if not status.isdigit() or int(status) not in DEFAULT_ERROR_CODES:
                raise ValueError(f"fault_rates: unknown status {status!r}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault_rates[{status!r}] must be between 0 and 1")
        if sum(rates.values()) > 1.0:
            raise ValueError("fault_rates must add up to at most 1")
        return rates

    def effective_key_burst(self) -> int:
        if self.key_burst is not None:
            return self.key_burst
        return max(1, math.ceil(self.key_rate_per_second or 1))
