"""Replies from recipients: route to a location, find the contact, add the GHL message.

Routing never guesses across clients (docs/oauth.md, "Tenants"):
1. the installed location that owns the receiving number (admin-assigned
   `inbound_numbers`, asked of the OAuth service);
2. else the one installed location that texted the sender within INBOUND_FALLBACK_DAYS,
   if exactly one did: a person texted by two clients may be answering either;
3. else the reply is parked (`ambiguous` or `unroutable`), counted, and delivered once an
   operator assigns the receiving number and replays it.
Delivery dedupes on Cast's message id, so a reply posted again or redelivered by the
broker becomes one GHL message. A reply of STOP or START also changes the number's
consent for that location (optouts.py) before it is added.

GHL has no idempotency for inbound messages: if it created the message and its answer
was lost (timeout, crash before we record it), the retry adds a second copy. That window
is narrow and a duplicate reply beats a lost one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

from prometheus_client import Counter

from castghl.common.errors import BridgeError, PermanentError
from castghl.common.ghl.api import GhlApi
from castghl.common.messages import InboundSms, LocationSettings
from castghl.common.worker import Done, Outcome, Park, Retry
from castghl.sender.optouts import (
    CHANGES,
    DND_NOT_SET,
    Consent,
    ConsentWords,
    Suppressions,
    dnd_note,
)
from castghl.sender.store import InboundStore, MessageStore
from castghl.sender.tokens import Tokens, with_token

log = logging.getLogger(__name__)

DELIVERED = Counter("castghl_inbound_delivered_total", "Replies added to GHL conversations",
                    ["routed_by"])
UNROUTABLE = Counter("castghl_inbound_unroutable_total",
                     "Replies parked in sms.inbound.parked because no one location claims them",
                     ["reason"])
NEXT_STEP = ("assign the receiving number to the right location (PUT /admin/installations/"
             "{locationId} inbound_numbers), then run `castghl-sender replay inbound`")


class Router(Protocol):
    async def route(self, to_number: str) -> str | None: ...


class LocationSource(Protocol):
    async def location(self, location_id: str) -> LocationSettings: ...


@dataclass(frozen=True)
class Unrouted:
    code: Literal["ambiguous", "unroutable"]
    reason: str


class InboundDelivery:
    def __init__(self, *, inbound: InboundStore, messages: MessageStore, router: Router,
                 locations: LocationSource, tokens: Tokens, ghl: GhlApi,
                 suppressions: Suppressions, words: ConsentWords,
                 fallback: timedelta = timedelta(days=30),
                 conversation_provider_id: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.inbound = inbound
        self.messages = messages
        self.router = router
        self.locations = locations
        self.fallback = fallback
        self.clock = clock
        self.tokens = tokens
        self.ghl = ghl
        self.suppressions = suppressions
        self.words = words
        self.conversation_provider_id = conversation_provider_id

    async def route(self, sms: InboundSms) -> tuple[str, str] | Unrouted:
        """(location id, rule that matched), or why no one location may have the reply."""
        if sms.to_number and (location := await self.router.route(sms.to_number.e164)):
            return location, "inbound_number"
        since = self.clock() - self.fallback.total_seconds()
        texted = await self.messages.locations_that_texted(sms.from_number, since)
        installed = [location_id for location_id in texted
                     if (await self.locations.location(location_id)).installed]
        if len(installed) == 1:
            return installed[0], "last_outbound"
        to = sms.to_number or "an unknown number"
        if installed:
            return Unrouted("ambiguous", f"{len(installed)} locations texted the sender and "
                                         f"none owns {to}: {NEXT_STEP}")
        return Unrouted("unroutable", f"no location owns {to} and none texted the sender "
                                      f"lately: {NEXT_STEP}")

    async def process(self, sms: InboundSms, attempt: int) -> Outcome:
        claim = await self.inbound.claim(sms.cast_message_id)
        if claim == "done":
            log.info("duplicate reply ignored", extra={"castMessageId": sms.cast_message_id})
            return Done()
        if claim == "busy":
            # Another copy is being delivered right now: look again after the queue's
            # shortest wait, by when it will most likely have finished.
            return Retry(0, "inbound_in_progress", counts=False)
        try:
            routed = await self.route(sms)
            if isinstance(routed, Unrouted):
                UNROUTABLE.labels(routed.code).inc()
                await self.inbound.release(sms.cast_message_id)
                log.warning("reply parked: no one location may have it", extra={
                    "castMessageId": sms.cast_message_id, "reason": routed.code,
                    "next_step": NEXT_STEP})
                return Park(routed.code, routed.reason)
            location_id, rule = routed
            consent = await self._record_consent(sms, location_id)
            ghl_message_id = await self._deliver(sms, location_id, consent)
        except BridgeError as error:
            await self.inbound.release(sms.cast_message_id)
            log.info("reply not delivered yet", extra={"error_code": error.code,
                                                       "attempt": attempt})
            raise
        await self.inbound.delivered(sms.cast_message_id, location_id, ghl_message_id)
        DELIVERED.labels(rule).inc()
        log.info("reply added to the GHL conversation", extra={
            "locationId": location_id, "routed_by": rule, "ghl_message_id": ghl_message_id})
        return Done()

    async def _record_consent(self, sms: InboundSms, location_id: str) -> Consent | None:
        """The consent in force after this reply, if the reply is a consent word."""
        change = self.words.read(sms.message)
        if change is None:
            return None
        consent = await self.suppressions.record(location_id, sms.from_number, change,
                                                 at=sms.received_at.timestamp(),
                                                 word=sms.message)
        CHANGES.labels(change).inc()
        log.info("consent changed by a reply", extra={"locationId": location_id,
                                                      "change": change, "in_force": consent})
        return consent

    async def _deliver(self, sms: InboundSms, location_id: str, consent: Consent | None
                       ) -> str:
        cached = await self.inbound.contact(location_id, sms.from_number)
        if cached is not None:
            try:
                return await self._deliver_to(sms, location_id, cached, consent, fresh=False)
            except PermanentError:
                # The cached contact may have been merged or deleted in GHL: look it up again.
                log.info("cached contact refused; upserting it again")
        contact_id = await with_token(self.tokens, location_id, lambda token:
                                      self.ghl.upsert_contact(token, location_id,
                                                              sms.from_number.e164))
        await self.inbound.remember_contact(location_id, sms.from_number, contact_id)
        return await self._deliver_to(sms, location_id, contact_id, consent, fresh=True)

    async def _deliver_to(self, sms: InboundSms, location_id: str, contact_id: str,
                          consent: Consent | None, *, fresh: bool) -> str:
        # DND first: setting it again is harmless, adding the message again is not.
        if consent is not None:
            message, code = dnd_note(consent, sms.message)
            try:
                await with_token(self.tokens, location_id, lambda token: self.ghl.set_sms_dnd(
                    token, contact_id, active=consent == "opted_out", message=message,
                    code=code))
            except PermanentError as error:
                if not fresh:
                    raise
                # The suppression already stops sends; the reply must still be shown.
                DND_NOT_SET.inc()
                log.warning("GHL refused the contact's DND; the suppression stands",
                          extra={"locationId": location_id, "error_code": error.code})
        return await self._add(sms, location_id, contact_id)

    async def _add(self, sms: InboundSms, location_id: str, contact_id: str) -> str:
        return await with_token(self.tokens, location_id, lambda token:
                                self.ghl.add_inbound_message(
                                    token, contact_id=contact_id, message=sms.message,
                                    alt_id=sms.cast_message_id, date=sms.received_at,
                                    conversation_provider_id=self.conversation_provider_id))
