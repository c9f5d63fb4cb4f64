"""The public webhook routes: verify, validate, publish, answer.

The gateway makes no outbound calls and keeps no state: everything it accepts is in a
durable queue before it answers 2xx (invariant 1), and everything it rejects changed
nothing (invariant 7).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from faststream.rabbit import RabbitBroker, RabbitQueue
from prometheus_client import Counter
from pydantic import TypeAdapter, ValidationError

from castghl.common.broker import publish
from castghl.common.ghl.webhooks import AppEvent, ProviderOutboundMessage
from castghl.common.logging import log_context
from castghl.common.messages import OutboundSms
from castghl.common.signatures import WebhookVerifier
from castghl.common.topology import Topology
from castghl.gateway.answers import Rejected

log = logging.getLogger(__name__)

ACCEPTED = Counter("castghl_webhooks_accepted_total", "Webhooks published to RabbitMQ",
                   ["route"])
IGNORED = Counter("castghl_webhooks_ignored_total", "Valid webhooks we do not act on",
                  ["route", "type"])

_APP_EVENT: TypeAdapter[Any] = TypeAdapter(AppEvent)
# Clocks differ a little; a time further ahead than this is not a clock's error.
MAX_FUTURE_SKEW = timedelta(minutes=5)
_LIFECYCLE_TYPES = frozenset({"INSTALL", "UNINSTALL"})


def describe(exc: ValidationError) -> str:
    """'messageId is missing; phone: Input should be a valid string' (never the values)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        if error["type"] == "json_invalid":
            return "body is not valid JSON"
        if error["type"] in {"model_type", "model_attributes_type"} or not error["loc"]:
            return "body must be a JSON object"
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{where} is missing" if error["type"] == "missing"
                        else f"{where}: {error['msg']}")
    return "; ".join(problems)


class Webhooks:
    """The routes' collaborators, built once by the composition root."""

    def __init__(self, broker: RabbitBroker, topology: Topology, verifier: WebhookVerifier,
                 max_body_bytes: int, max_age_seconds: int) -> None:
        self.broker = broker
        self.topology = topology
        self.verifier = verifier
        self.max_body_bytes = max_body_bytes
        self.max_age_seconds = max_age_seconds

    async def read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise Rejected(413, f"body larger than {self.max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body_bytes:
                raise Rejected(413, f"body larger than {self.max_body_bytes} bytes")
        return bytes(body)

    async def verified_body(self, request: Request) -> bytes:
        """The raw bytes, exactly as signed: verification never sees re-serialised JSON."""
        body = await self.read_body(request)
        if not self.verifier.has_signature(request.headers):
            raise Rejected(401, "missing signature (X-GHL-Signature or X-WH-Signature)")
        if not self.verifier.verify(body, request.headers):
            raise Rejected(401, "invalid signature")
        return body

    def check_fresh(self, timestamp: datetime | None) -> None:
        """Refuse a replay of an old signed body, but never a retry GHL may still send: the
        window covers GHL's retry horizon, and the dedupe records outlive it."""
        if timestamp is None:
            return
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=UTC)
        age = (datetime.now(UTC) - timestamp).total_seconds()
        if age > self.max_age_seconds:
            raise Rejected(401, f"stale webhook: timestamp is {age:.0f} s old")
        if -age > MAX_FUTURE_SKEW.total_seconds():
            raise Rejected(401, f"webhook timestamp is {-age:.0f} s in the future")

    async def publish(self, queue: RabbitQueue, message: Any, message_id: str | None) -> None:
        try:
            await publish(self.broker, queue, message, message_id=message_id)
        except Exception as exc:
            # Nothing was stored, so GHL must retry later: the one case for a 5xx.
            log.exception("publish failed", extra={"queue": queue.name})
            raise Rejected(503, "temporarily unable to accept webhooks") from exc


def webhook_router(hooks: Webhooks) -> APIRouter:
    router = APIRouter(prefix="/webhooks")

    @router.post("/ghl/provider-outbound")
    async def provider_outbound(request: Request) -> dict[str, str]:
        body = await hooks.verified_body(request)
        try:
            webhook = ProviderOutboundMessage.model_validate_json(body)
        except ValidationError as exc:
            raise Rejected(400, describe(exc)) from None
        with log_context(messageId=webhook.message_id, locationId=webhook.location_id):
            hooks.check_fresh(webhook.timestamp)
            if not webhook.is_sms:
                IGNORED.labels("provider-outbound", webhook.type[:20]).inc()
                log.info("ignored non-SMS webhook", extra={"type": webhook.type[:20]})
                return {"status": "ignored", "reason": f"type {webhook.type[:20]} is not SMS"}
            await hooks.publish(hooks.topology.outbound.queue,
                                OutboundSms.from_webhook(webhook), webhook.message_id)
            ACCEPTED.labels("provider-outbound").inc()
            log.info("outbound SMS accepted")
        return {"status": "accepted"}

    @router.post("/ghl/app")
    async def app_lifecycle(request: Request) -> dict[str, str]:
        body = await hooks.verified_body(request)
        try:
            payload = json.loads(body)
        except ValueError:
            raise Rejected(400, "body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise Rejected(400, "body must be a JSON object")
        kind = str(payload.get("type", ""))
        if kind not in _LIFECYCLE_TYPES:
            IGNORED.labels("app", kind[:20]).inc()
            return {"status": "ignored", "reason": f"event type {kind[:20]!r} is not handled"}
        try:
            event = _APP_EVENT.validate_python(payload)
        except ValidationError as exc:
            raise Rejected(400, describe(exc)) from None
        if not (event.location_id or event.company_id):
            raise Rejected(400, "locationId or companyId is required")
        with log_context(locationId=event.location_id):
            hooks.check_fresh(event.timestamp)
            await hooks.publish(hooks.topology.lifecycle.queue, event, event.webhook_id)
            ACCEPTED.labels("app").inc()
            log.info("app lifecycle event accepted", extra={"type": kind,
                                                             "companyId": event.company_id})
        return {"status": "accepted"}

    return router
