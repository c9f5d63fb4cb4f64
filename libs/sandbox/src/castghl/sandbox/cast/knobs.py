"""The Cast simulator's live knobs: read at request time, changed by `PATCH /_sandbox/config`.

Defaults follow the *old* Cast doc (reference/cast.md), as the bridge's settings do; each
newer-doc behaviour is a knob away (`accept_e164`, `key_rate_per_second`, bigger limits).
`fail_next` and `hang_next` are queues the simulator consumes as requests arrive, so
`GET /_sandbox/config` shows what is still pending.

Account knobs come in pairs, because an operator may hold several Cast accounts (each GHL
location may bring its own key): `credits`, `sender_ids`, `profile` and `opted_out`
describe the default account, which every key not named in the `*_by_key` twin shares;
a key named there is an account of its own (see `accounts.py`).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Sandbox keys begin `cast_test_` (reference/cast.md); a recognisable value operators can copy.
DEFAULT_API_KEY = "cast_test_" + "0123456789abcdef" * 4
DEFAULT_INBOUND_API_KEY = "castghl-sandbox-inbound-secret"

Outcome = Literal["sent", "pending", "delivered", "undelivered", "failed"]
Channel = Literal["sms", "sim"]

# The carrier receipt codes each status may carry (reference/cast.md, "Delivery status"),
# the usual one first: `sent` has no receipt yet and `failed` never reached a carrier.
DLR_CODES: dict[str, tuple[str | None, ...]] = {
    "sent": (None,),
    "failed": (None,),
    "pending": ("ACCEPTD",),
    "delivered": ("DELIVRD",),
    "undelivered": ("UNDELIV", "REJECTD", "EXPIRED"),
}

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


class CarrierOutcome(BaseModel):
    """What a carrier's receipt says: a status and a receipt code that goes with it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    status: Outcome
    dlr_status: str | None = None  # None: the usual code (UNDELIV for undelivered)
    error_message: str | None = None  # None: a sentence of the simulator's for the status

    @model_validator(mode="after")
    def _code_fits_the_status(self) -> Self:
        allowed = DLR_CODES[self.status]
        if self.dlr_status is not None and self.dlr_status not in allowed:
            codes = ", ".join(str(code) for code in allowed if code) or "none"
            raise ValueError(f"dlr_status {self.dlr_status!r} does not go with status "
                             f"{self.status!r} (allowed: {codes})")
        return self


class CarrierRule(CarrierOutcome):
    """The receipt of every message that matches, scripted before it is sent: an e2e test
    says "the carrier rejects messages to 09170000001" without knowing a Cast message id.
    Every matcher given must hold; the first matching rule in `carrier_rules` wins."""

    to: str | None = Field(default=None, min_length=1)  # 09… or +63…: either form matches
    contains: str | None = Field(default=None, min_length=1)  # a marker in the text
    sender_id: str | None = Field(default=None, min_length=1)  # e.g. a trial sender ID
    delay_seconds: float | None = Field(default=None, ge=0)  # None: `dlr_delay_seconds`

    @model_validator(mode="after")
    def _matches_something(self) -> Self:
        if self.to is None and self.contains is None and self.sender_id is None:
            raise ValueError("a carrier rule needs at least one of to, contains, sender_id")
        return self


class SenderId(BaseModel):
    """One approved sender ID; a plain string in the knob is an SMS one labelled as itself."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    sender_id: str = Field(min_length=1)
    label: str | None = None  # None: the sender ID itself
    channel: Channel = "sms"


class OptOut(BaseModel):
    """A number that unsubscribed through Cast's opt-out link; a plain string in the knob
    is a number unsubscribed from every sender ID of the account, at an unknown time."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    number: str = Field(min_length=1)  # 09… or +63…: either form matches
    sender_id: str | None = None  # None: every sender ID of the account
    unsubscribed_at: datetime | None = None


class AccountProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field(min_length=1)
    email: str | None = None


Credits = Annotated[int, Field(ge=0)] | None  # None: unlimited


class CastKnobs(BaseModel):
    """Everything an operator or test may change while the simulator runs."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Accounts and keys
    api_keys: list[str] = Field(default_factory=lambda: [DEFAULT_API_KEY])
    accept_any_key: bool = False  # any well-formed `cast_[test_]<64 hex>` key is an account
    revoked_keys: list[str] = Field(default_factory=list)
    # The live balance in credits (one per part); a failed submit is refunded.
    credits: Credits = None
    credits_by_key: dict[str, Credits] = Field(default_factory=dict)
    # The real API charges `cast_test_` keys nothing; the simulator does by default
    # because every test drives it with one and credit behaviour must stay testable.
    charge_sandbox_keys: bool = True
    # Empty: any sender ID is an approved SMS one, and the account has no SIM channel.
    sender_ids: list[str | SenderId] = Field(default_factory=list)
    sender_ids_by_key: dict[str, list[str | SenderId]] = Field(default_factory=dict)
    profile: AccountProfile = Field(default_factory=lambda: AccountProfile(
        name="Cast Sandbox", email="sandbox@example.com"))
    profile_by_key: dict[str, AccountProfile] = Field(default_factory=dict)
    # Sends to these are answered 422 ALREADY_UNSUBSCRIBED, and listed by /unsubscribed.
    opted_out: list[str | OptOut] = Field(default_factory=list)
    opted_out_by_key: dict[str, list[str | OptOut]] = Field(default_factory=dict)

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

    # Delivery receipts, fixed per message when it is sent: the first matching rule,
    # else `carrier_outcome` after `dlr_delay_seconds`
    carrier_outcome: Outcome = "delivered"
    dlr_delay_seconds: float = Field(default=0.0, ge=0)
    carrier_rules: list[CarrierRule] = Field(default_factory=list)

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
