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

from fastapi import APIRouter, Request
from prometheus_client import Counter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from castghl.common import phone
from castghl.common.logging import log_context
from castghl.common.messages import InboundSms
from castghl.gateway.answers import Rejected
from castghl.gateway.webhooks import MAX_FUTURE_SKEW, Webhooks, describe

log = logging.getLogger(__name__)

ACCEPTED = Counter("castghl_inbound_accepted_total", "Inbound SMS published to RabbitMQ")


def _philippine(value: object) -> object:
    """Any Philippine mobile form → +639…; the error names what is wrong, not the input."""
    if not isinstance(value, str):
        return value
    try:
        return phone.to_e164(value)
    except phone.InvalidPhoneNumber:
        raise ValueError("must be a Philippine mobile number") from None


Phone = Annotated[str, BeforeValidator(_philippine)]
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

    from_number: Phone = Field(alias="from")
    to_number: Phone | None = Field(None, alias="to")
    message: str = Field(min_length=1, max_length=10_000)
    message_id: str | None = Field(None, min_length=1, max_length=128)
    received_at: ReceivedAt = None

    def stable_id(self) -> str:
        """Cast's id; without one, a hash of the other fields (a re-post dedupes)."""
        if self.message_id:
            return self.message_id
        fields = "\x1f".join([self.from_number, self.to_number or "", self.message,
                              self.received_at.isoformat() if self.received_at else ""])
        return "sha256-" + hashlib.sha256(fields.encode()).hexdigest()[:40]


def presented_key(request: Request) -> str | None:
    if key := request.headers.get("x-api-key"):
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def inbound_router(hooks: Webhooks, api_key: str) -> APIRouter:
    router = APIRouter(prefix="/webhooks")
    expected = api_key.encode()

    @router.post("/cast/inbound")
    async def cast_inbound(request: Request) -> dict[str, str]:
        key = presented_key(request)
        if key is None:
            raise Rejected(401, "missing API key (X-API-Key or Authorization: Bearer)")
        if not hmac.compare_digest(key.encode(), expected):
            raise Rejected(401, "invalid API key")
        body = await hooks.read_body(request)
        try:
            reply = CastInboundWebhook.model_validate_json(body)
        except ValidationError as exc:
            raise Rejected(400, describe(exc)) from None
        message = InboundSms(
            from_number=reply.from_number,
            to_number=phone.to_cast_number(reply.to_number) if reply.to_number else None,
            message=reply.message,
            cast_message_id=reply.stable_id(),
            received_at=reply.received_at or datetime.now(UTC),
        )
        with log_context(castMessageId=message.cast_message_id):
            await hooks.publish(hooks.topology.inbound.queue, message, message.cast_message_id)
            ACCEPTED.inc()
            log.info("inbound SMS accepted")
        return {"status": "accepted"}

    return router
