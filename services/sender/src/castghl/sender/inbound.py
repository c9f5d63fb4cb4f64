"""Replies from recipients: route to a location, find the contact, add the GHL message.

Routing, in order: the location that owns the receiving number (admin-assigned
`inbound_numbers`, asked of the OAuth service); else the location that most recently
texted the sender; else the reply is parked as unroutable — counted, and replayable once
an operator assigns the number. Delivery dedupes on Cast's message id, so a reply posted
again or redelivered by the broker becomes one GHL message.

GHL has no idempotency for inbound messages: if it created the message and its answer
was lost (timeout, crash before we record it), the retry adds a second copy. That window
is narrow and a duplicate reply beats a lost one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from prometheus_client import Counter

from castghl.common import phone
from castghl.common.errors import BridgeError, PermanentError
from castghl.common.ghl.api import GhlApi
from castghl.common.messages import InboundSms
from castghl.common.worker import Done, Outcome, Park, Retry, outcome_for
from castghl.sender.store import InboundStore, MessageStore
from castghl.sender.tokens import Tokens, with_token

log = logging.getLogger(__name__)

DELIVERED = Counter("castghl_inbound_delivered_total", "Replies added to GHL conversations",
                    ["routed_by"])
UNROUTABLE = Counter("castghl_inbound_unroutable_total",
                     "Replies no location claims (parked in sms.inbound.parked)")


class Router(Protocol):
    async def route(self, to_number: str) -> str | None: ...


class InboundDelivery:
    def __init__(self, *, inbound: InboundStore, messages: MessageStore, router: Router,
                 tokens: Tokens, ghl: GhlApi, backoff: Sequence[float],
                 conversation_provider_id: str | None = None) -> None:
        self.inbound = inbound
        self.messages = messages
        self.router = router
        self.tokens = tokens
        self.ghl = ghl
        self.backoff = backoff
        self.conversation_provider_id = conversation_provider_id

    async def route(self, sms: InboundSms) -> tuple[str, str] | None:
        """(location id, rule that matched), or None when nothing claims the reply."""
        if sms.to_number and (location := await self.router.route(sms.to_number)):
            return location, "inbound_number"
        sender = phone.to_cast_number(sms.from_number)
        if location := await self.messages.last_location_for(sender):
            return location, "last_outbound"
        return None

    async def process(self, sms: InboundSms, attempt: int) -> Outcome:
        claim = await self.inbound.claim(sms.cast_message_id)
        if claim == "done":
            log.info("duplicate reply ignored", extra={"castMessageId": sms.cast_message_id})
            return Done()
        if claim == "busy":
            # Another copy is being delivered right now: look again after it finished.
            return Retry(self.backoff[0], "inbound_in_progress", counts=False)
        try:
            routed = await self.route(sms)
            if routed is None:
                UNROUTABLE.inc()
                await self.inbound.release(sms.cast_message_id)
                return Park("unroutable", f"no location owns {sms.to_number or 'the number'}"
                                          " and none texted the sender")
            location_id, rule = routed
            ghl_message_id = await self._deliver(sms, location_id)
        except BridgeError as error:
            await self.inbound.release(sms.cast_message_id)
            log.info("reply not delivered yet", extra={"error_code": error.code,
                                                       "attempt": attempt})
            return outcome_for(error, attempt, self.backoff)
        await self.inbound.delivered(sms.cast_message_id, location_id, ghl_message_id)
        DELIVERED.labels(rule).inc()
        log.info("reply added to the GHL conversation", extra={
            "locationId": location_id, "routed_by": rule, "ghl_message_id": ghl_message_id})
        return Done()

    async def _deliver(self, sms: InboundSms, location_id: str) -> str:
        cached = await self.inbound.contact(location_id, sms.from_number)
        if cached is not None:
            try:
                return await self._add(sms, location_id, cached)
            except PermanentError:
                # The cached contact may have been merged or deleted in GHL: look it up again.
                log.info("cached contact refused; upserting it again")
        contact_id = await with_token(self.tokens, location_id, lambda token:
                                      self.ghl.upsert_contact(token, location_id,
                                                              sms.from_number))
        await self.inbound.remember_contact(location_id, sms.from_number, contact_id)
        return await self._add(sms, location_id, contact_id)

    async def _add(self, sms: InboundSms, location_id: str, contact_id: str) -> str:
        return await with_token(self.tokens, location_id, lambda token:
                                self.ghl.add_inbound_message(
                                    token, contact_id=contact_id, message=sms.message,
                                    alt_id=sms.cast_message_id, date=sms.received_at,
                                    conversation_provider_id=self.conversation_provider_id))
