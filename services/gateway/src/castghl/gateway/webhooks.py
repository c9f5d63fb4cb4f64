"""GHL's webhooks: outbound SMS (the Delivery URL) and app INSTALL/UNINSTALL events.

Each route gets the raw body from the intake (castghl.gateway.intake), which also
verifies, publishes and answers; a route only says what a valid webhook means.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from prometheus_client import Counter
from pydantic import TypeAdapter, ValidationError

from castghl.common.errors import InvalidRequest
from castghl.common.ghl.webhooks import AppEvent, ProviderOutboundMessage
from castghl.common.logging import log_context
from castghl.common.messages import OutboundSms
from castghl.common.validation import describe
from castghl.gateway.intake import ACCEPTED, Headers, Intake, Route, json_answer, parse

log = logging.getLogger(__name__)

ACCEPTED_TOTAL = Counter("castghl_webhooks_accepted_total", "Webhooks published to RabbitMQ",
                         ["route"])
IGNORED = Counter("castghl_webhooks_ignored_total", "Valid webhooks we do not act on",
                  ["route", "type"])

_APP_EVENT: TypeAdapter[Any] = TypeAdapter(AppEvent)
_LIFECYCLE_TYPES = frozenset({"INSTALL", "UNINSTALL"})


def webhook_routes(intake: Intake) -> dict[str, Route]:
    outbound_accepted = ACCEPTED_TOTAL.labels("provider-outbound")
    app_accepted = ACCEPTED_TOTAL.labels("app")

    async def provider_outbound(headers: Headers, body: bytes) -> bytes:
        intake.verify(headers, body)
        webhook = parse(ProviderOutboundMessage, body)
        with log_context(messageId=webhook.message_id, locationId=webhook.location_id):
            intake.check_fresh(webhook.timestamp)
            if not webhook.is_sms:
                IGNORED.labels("provider-outbound", webhook.type[:20]).inc()
                log.info("ignored non-SMS webhook", extra={"type": webhook.type[:20]})
                return json_answer(status="ignored",
                                   reason=f"type {webhook.type[:20]} is not SMS")
            await intake.publish(intake.topology.outbound.queue,
                                 OutboundSms.from_webhook(webhook), webhook.message_id)
            outbound_accepted.inc()
            # DEBUG: at INFO this one line cost ~55-70 µs of CPU per webhook, a third of
            # all the rest (bench/README.md). The counter counts; the sender logs each
            # message with its messageId; refusals and failures are logged at INFO.
            log.debug("outbound SMS accepted")
        return ACCEPTED

    async def app_lifecycle(headers: Headers, body: bytes) -> bytes:
        intake.verify(headers, body)
        try:
            payload = json.loads(body)
        except ValueError:
            raise InvalidRequest("body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise InvalidRequest("body must be a JSON object")
        kind = str(payload.get("type", ""))
        if kind not in _LIFECYCLE_TYPES:
            IGNORED.labels("app", kind[:20]).inc()
            return json_answer(status="ignored", reason=f"event type {kind[:20]!r} is not handled")
        try:
            event = _APP_EVENT.validate_python(payload)
        except ValidationError as exc:
            raise InvalidRequest(describe(exc)) from None
        if not (event.location_id or event.company_id):
            raise InvalidRequest("locationId or companyId is required")
        with log_context(locationId=event.location_id):
            intake.check_fresh(event.timestamp)
            await intake.publish(intake.topology.lifecycle.queue, event, event.webhook_id)
            app_accepted.inc()
            log.info("app lifecycle event accepted", extra={"type": kind,
                                                             "companyId": event.company_id})
        return ACCEPTED

    return {"/webhooks/ghl/provider-outbound": provider_outbound,
            "/webhooks/ghl/app": app_lifecycle}
