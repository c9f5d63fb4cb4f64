"""POST /webhooks/cast/inbound: replies received by Cast's SIM gateway (docs/inbound.md).

Cast publishes no contract for this, so the bridge defines one and is strict about it:
a shared secret compared in constant time, a small JSON body with a Philippine sender
number, and a stable id — Cast's, or a hash of the fields — so a reply posted twice
becomes one GHL message.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

from prometheus_client import Counter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from castghl.common.errors import Unauthorized
from castghl.common.logging import log_context
from castghl.common.messages import InboundSms
from castghl.common.phone import PhMobile
from castghl.gateway.intake import ACCEPTED, MAX_FUTURE_SKEW, Headers, Intake, Route, parse

log = logging.getLogger(__name__)

ACCEPTED_TOTAL = Counter("castghl_inbound_accepted_total", "Inbound SMS published to RabbitMQ")


# A reply Cast's gateway held back this long is still worth delivering; older is a bug.
RECEIVED_AT_MAX_AGE = timedelta(days=7)


def _received_at(value: object) -> object:
    """An ISO-8601 string within a sane window: a number (epoch seconds?) or a time far
    off would put the reply in the wrong place of the conversation."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 time, e.g. 2026-11-30T08:15:00Z")  # noqa: TRY004
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO-8601 time, e.g. 2026-11-30T08:15:00Z") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if not now - RECEIVED_AT_MAX_AGE <= at <= now + MAX_FUTURE_SKEW:
        raise ValueError("must be within the last 7 days and not in the future")
    return at


ReceivedAt = Annotated[datetime | None, BeforeValidator(_received_at)]


class CastInboundWebhook(BaseModel):
    """The contract of docs/inbound.md; unknown fields are tolerated."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    # Parsed here, once: the rest of the bridge only sees `PhMobile` (E.164 on the wire).
    from_number: PhMobile = Field(alias="from")
    to_number: PhMobile | None = Field(None, alias="to")
    message: str = Field(min_length=1, max_length=10_000)
    message_id: str | None = Field(None, min_length=1, max_length=128)
    received_at: ReceivedAt = None

    def stable_id(self) -> str:
        """Cast's id; without one, a hash of the other fields (a re-post dedupes)."""
        if self.message_id:
            return self.message_id
        fields = "\x1f".join([self.from_number.e164,
                              self.to_number.e164 if self.to_number else "", self.message,
                              self.received_at.isoformat() if self.received_at else ""])
        return "sha256-" + hashlib.sha256(fields.encode()).hexdigest()[:40]


def presented_key(headers: Headers) -> str | None:
    if key := headers.get("x-api-key"):
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def inbound_routes(intake: Intake, api_key: str) -> dict[str, Route]:
    expected = api_key.encode()

    async def cast_inbound(headers: Headers, body: bytes) -> bytes:
        key = presented_key(headers)
        if key is None:
            raise Unauthorized("missing API key (X-API-Key or Authorization: Bearer)")
        if not hmac.compare_digest(key.encode(), expected):
            raise Unauthorized("invalid API key")
        reply = parse(CastInboundWebhook, body)
        message = InboundSms(
            from_number=reply.from_number,
            to_number=reply.to_number,
            message=reply.message,
            cast_message_id=reply.stable_id(),
            received_at=reply.received_at or datetime.now(UTC),
        )
        with log_context(castMessageId=message.cast_message_id):
            await intake.publish(intake.topology.inbound.queue, message,
                                 message.cast_message_id)
            ACCEPTED_TOTAL.inc()
            log.debug("inbound SMS accepted")
        return ACCEPTED

    return {"/webhooks/cast/inbound": cast_inbound}
