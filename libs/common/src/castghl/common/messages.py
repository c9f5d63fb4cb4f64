"""The contracts that cross between our services: RabbitMQ messages, and the bodies of
the OAuth service's internal API.

Producers and consumers import these and nothing else, so a format is defined in one
place. Unknown fields are ignored so a newer producer can add one during a rolling
upgrade without older consumers parking its messages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from castghl.common.ghl.webhooks import ProviderOutboundMessage
from castghl.common.phone import PhMobile


def utcnow() -> datetime:
    return datetime.now(UTC)


class QueueMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class OutboundSms(QueueMessage):
    """`sms.outbound`: a verified ProviderOutboundMessage, as the sender needs it."""

    message_id: str
    location_id: str
    contact_id: str | None = None
    phone: str | None = None
    message: str = ""
    attachments: list[str] = Field(default_factory=list)
    conversation_id: str | None = None
    received_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def from_webhook(cls, webhook: ProviderOutboundMessage) -> OutboundSms:
        return cls(
            message_id=webhook.message_id,
            location_id=webhook.location_id,
            contact_id=webhook.contact_id,
            phone=webhook.phone,
            message=webhook.message,
            attachments=webhook.attachments,
            conversation_id=webhook.conversation_id,
        )


class ReceiptCheck(QueueMessage):
    """On the Cast lane's queue (KIND_HEADER = RECEIPT_CHECK): a tick for the receipt desk
    of the lane's owner, empty. Senders before the schedule moved into the message record
    sent one per message and check (`check` from 1 through CAST_RECEIPT_CHECK_DELAYS);
    such a check still makes its message due."""

    message_id: str | None = None
    location_id: str | None = None
    check: int = Field(1, ge=1)


class StatusError(QueueMessage):
    """GHL's `error` object of a failed status: all strings; `message` is for the GHL user."""

    code: str
    type: str = "cast_sms"
    message: str


class StatusUpdate(QueueMessage):
    """`ghl.status`: the final outcome of one GHL message, to be written back to GHL."""

    message_id: str
    location_id: str
    status: Literal["delivered", "failed"]
    error: StatusError | None = None
    decided_at: datetime = Field(default_factory=utcnow)


class InboundSms(QueueMessage):
    """`sms.inbound`: a reply received by Cast's SIM gateway (contract: docs/inbound.md).
    Numbers travel in E.164, parsed once by the gateway."""

    from_number: PhMobile = Field(alias="from")
    to_number: PhMobile | None = Field(None, alias="to")
    message: str
    cast_message_id: str
    received_at: datetime = Field(default_factory=utcnow)


# Look-ups per internal API call (castghl.common.batching gathers them).
MAX_LOOKUPS: Final = 500
LocationId = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class TokenRequest(QueueMessage):
    """One token asked for. With `stale_token`, refresh only if the stored token is still
    it (the caller just saw GHL reject it with 401); otherwise a token valid for at least
    `min_valid_seconds`."""

    location_id: LocationId
    stale_token: str | None = None
    min_valid_seconds: int = Field(300, ge=0, le=86_400)


class TokensRequest(QueueMessage):
    """`POST /internal/tokens`: the tokens of many locations at once."""

    requests: list[TokenRequest] = Field(min_length=1, max_length=MAX_LOOKUPS)


class TokenAnswer(QueueMessage):
    """A token and its expiry, or the error family's `code` saying why there is none."""

    location_id: str
    access_token: str | None = None
    expires_at: datetime | None = None
    code: str | None = None
    detail: str = ""


class TokensReply(QueueMessage):
    tokens: list[TokenAnswer]


class InstallStatus(StrEnum):
    """Where an installation of this app stands (the OAuth service keeps it)."""

    ACTIVE = "active"
    # GHL refused the refresh token: the app is still installed in GHL, but only a
    # reinstall brings back a token to write statuses and replies with.
    NEEDS_REAUTH = "needs_reauth"
    UNINSTALLED = "uninstalled"


class CastKey(StrEnum):
    """Which Cast account a location's SMS go out on (docs/oauth.md, "Tenants")."""

    OWN = "own"  # the location's own Cast API key, set by the operator
    DEFAULT = "default"  # the operator's default key, which CAST_DEFAULT_KEY_FOR allows
    NONE = "none"  # neither: the location is not set up, and nothing is sent


class LocationsRequest(QueueMessage):
    """`POST /internal/locations`: the settings of many locations at once."""

    location_ids: list[LocationId] = Field(min_length=1, max_length=MAX_LOOKUPS)


class LocationSettings(QueueMessage):
    """What the sender needs to send for a location."""

    location_id: str
    # None: this app was never installed on the location (nor through its agency).
    status: InstallStatus | None = None
    company_id: str | None = None
    cast_key: CastKey = CastKey.NONE
    sender_id: str | None = None
    cast_api_key: str | None = None
    rate_limit_per_second: float | None = None
    inbound_numbers: list[str] = Field(default_factory=list)
    # The operator stopped its SMS (unpaid, abuse): each fails at once, no Cast call.
    stopped: bool = False

    @property
    def installed(self) -> bool:
        """GHL may send for this location: an installation exists and is not uninstalled.
        A location awaiting reauthorisation still sends; its statuses wait for the
        reinstall in the parking queue."""
        return self.status in (InstallStatus.ACTIVE, InstallStatus.NEEDS_REAUTH)


class LocationsReply(QueueMessage):
    locations: list[LocationSettings]


class CastKeysReply(QueueMessage):
    """`GET /internal/cast-keys`: the distinct Cast keys of installed locations that
    have their own (the sender checks each account's credits)."""

    api_keys: list[str]


class LocationChanged(QueueMessage):
    """A notice on `Topology.location_changes`: what was cached of this location (or of
    every location of this company) is out of date."""

    location_id: str | None = None
    company_id: str | None = None


class RouteReply(QueueMessage):
    """`GET /internal/routes/{number}`: the location owning a receiving number, if any."""

    location_id: str | None = None
