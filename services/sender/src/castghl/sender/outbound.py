"""The outbound pipeline: dedupe → normalise → opt-out check → split → rate-limited Cast
send → receipts.

Every message ends in exactly one final status (invariant 3). Cast accepting every part
is not delivery: the pipeline then hands the message to the receipt desk (receipts.py),
which decides `delivered` or `failed` from the carrier's receipts (final.py).
A message Cast refused, or that cannot be sent, fails here with a message the GHL user
can act on. A decided status is handed to the status queue before the outbound message
is acked, and each step is
recorded first, so a crash or redelivery at any point resumes without texting twice:
parts already accepted are skipped, and a part whose answer was lost is re-sent with the
same `X-Idempotency-Key`, which Cast answers from its cache (invariant 2). Where the
operator's Cast has no idempotency (CAST_IDEMPOTENCY=false), such a part is not re-sent;
the message fails saying the SMS may have been delivered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from prometheus_client import Counter

from castghl.common import sms
from castghl.common.cast.accounts import fingerprint
from castghl.common.cast.models import CastSendRequest, CastSendResponse, Channel
from castghl.common.errors import (
    AccountError,
    BridgeError,
    PermanentError,
    RateLimited,
    UncertainError,
)
from castghl.common.messages import (
    CastKey,
    LocationSettings,
    OutboundSms,
    StatusError,
)
from castghl.common.outages import outlast
from castghl.common.phone import PhMobile
from castghl.common.worker import Done, Outcome, Retry
from castghl.sender.channels import Channels
from castghl.sender.final import FinalStatuses
from castghl.sender.lane import Lane
from castghl.sender.locks import KeyedLocks
from castghl.sender.optouts import CAST_UNSUBSCRIBED, OPTED_OUT, Suppressed
from castghl.sender.store import MessageRecord, MessageStore, Sent

log = logging.getLogger(__name__)

SENT_PARTS = Counter("castghl_cast_parts_sent_total", "SMS parts Cast accepted")
ACCOUNT_ALERTS = Counter("castghl_account_alerts_total",
                         "Failures that need the operator (Cast credit, keys, whitelist)",
                         ["code"])
REFUSED = Counter("castghl_outbound_refused_total",
                  "Outbound webhooks dropped: no active installation of this app", ["reason"])
OPTED_OUT_SENDS = Counter("castghl_outbound_opted_out_total",
                          "Outbound SMS failed without a Cast call: the recipient opted out "
                          "(by a reply of STOP, or through Cast's opt-out link)", ["source"])
RATE_LIMITED_RUNS = Counter("castghl_cast_rate_limited_runs_total",
                            "Messages that met MAX_RATE_LIMITED_IN_A_ROW 429s in a row")
# A 429 pauses the lane and the same part waits in-process; past this many in a row the
# message goes back through a retry tier instead of holding a lane slot.
MAX_RATE_LIMITED_IN_A_ROW = 5
NOT_SET_UP = ("Cast SMS is not set up for this location yet: ask your agency to add a Cast "
              "API key")
STOPPED = "Cast SMS sending is stopped for this location: ask your agency"


class CastSender(Protocol):
    async def send(self, request: CastSendRequest, *, api_key: str,
                   idempotency_key: str, channel: Channel = "sms") -> CastSendResponse: ...


class LocationSource(Protocol):
    async def location(self, location_id: str) -> LocationSettings: ...


class OptOuts(Protocol):
    async def why_suppressed(self, location_id: str, phone: PhMobile, *, account: str,
                             sender_id: str | None) -> Suppressed | None: ...


class Receipts(Protocol):
    def first_check(self) -> float: ...
    async def expect(self, at: float) -> None: ...


@dataclass(frozen=True)
class OutboundPolicy:
    default_api_key: str
    default_sender_id: str | None
    max_message_chars: int
    max_parts: int
    idempotency: bool


@dataclass(frozen=True)
class Plan:
    to: PhMobile
    parts: list[str]


def idempotency_key(message_id: str, n: int) -> str:
    """Stable per GHL message and part: a retry of part n can never become a second SMS."""
    return f"ghl-{message_id}-{n}"


def plan(message: OutboundSms, policy: OutboundPolicy) -> Plan:
    """What to send: the recipient and the ordered texts. Raises PermanentError. The
    webhook's phone is parsed here, once: this is where it enters the bridge."""
    to = PhMobile.parse(message.phone or "")
    text = sms.compose(message.message, message.attachments)
    return Plan(to, sms.split(text, policy.max_message_chars, policy.max_parts))


class OutboundPipeline:
    def __init__(self, *, store: MessageStore, cast: CastSender, lane: Lane,
                 locations: LocationSource, final: FinalStatuses, receipts: Receipts,
                 opt_outs: OptOuts, channels: Channels,
                 policy: OutboundPolicy) -> None:
        self.store = store
        self.cast = cast
        self.lane = lane
        self.locations = locations
        self.final = final
        self.receipts = receipts
        self.opt_outs = opt_outs
        self.channels = channels
        self.policy = policy
        self.in_progress = KeyedLocks()

    async def process(self, message: OutboundSms, attempt: int) -> Outcome:
        # GHL's retries of one webhook can sit side by side in the lane's prefetch: they
        # take turns, and the later ones find the message decided. The lane has a single
        # active consumer, so this in-process lock covers every replica.
        async with self.in_progress.hold(message.message_id):
            return await self._process(message, attempt)

    async def _process(self, message: OutboundSms, attempt: int) -> Outcome:
        location = await self.locations.location(message.location_id)
        if not location.installed:
            # GHL signs every app's webhooks with one key: a valid signature does not say
            # this app is installed here. Nobody to text for, nobody to report to.
            reason = "uninstalled" if location.status is not None else "not_installed"
            REFUSED.labels(reason).inc()
            log.warning("outbound SMS dropped: this app is not installed on the location",
                        extra={"reason": reason})
            return Done()
        record = await self.store.claim(message)
        if record.status is not None:
            log.info("duplicate delivery of a decided message", extra={"status": record.status})
            return await self.final.hand_over(record)
        try:
            parts = await self._send(message, record, location)
        except BridgeError as error:
            return await self._failed(message, error)
        # One INFO line per message here and one at its decision (final.py): the parts'
        # Cast ids are at DEBUG, and in the message's record (the console's timeline).
        log.info("Cast accepted the message", extra={"parts": parts})
        # Accepted is not delivered (invariant 9): the carrier's receipts decide. The write
        # recording the last part accepted also recorded when to ask first.
        await self.receipts.expect(self.receipts.first_check())
        return Done()

    def _cast_key(self, location: LocationSettings) -> str:
        if location.cast_key is CastKey.OWN and location.cast_api_key:
            return location.cast_api_key
        if location.cast_key is CastKey.DEFAULT:
            return self.policy.default_api_key
        raise PermanentError("no Cast key the location may use", code="not_set_up",
                             user_message=NOT_SET_UP)

    async def _send(self, message: OutboundSms, record: MessageRecord,
                    location: LocationSettings) -> int:
        """Send every part not yet accepted; how many parts the message has."""
        # A message already on its way when the location was stopped is finished, not cut.
        if location.stopped and not record.parts:
            raise PermanentError("the operator stopped this location's SMS",
                                 code="location_stopped", user_message=STOPPED)
        todo = plan(message, self.policy)
        api_key = self._cast_key(location)
        sender_id = location.sender_id or self.policy.default_sender_id
        # A message already on its way when the person opted out is finished, not cut.
        if not record.parts:
            await self._check_consent(message.location_id, todo.to, api_key, sender_id)
        channel = await self.channels.channel(
            api_key, sender_id, lambda: self.lane.acquire(api_key, location.rate_limit_per_second))
        for n, text in enumerate(todo.parts):
            if record.accepted(n):
                continue
            if record.maybe_sent(n) and not self.policy.idempotency:
                raise UncertainError(f"part {n} was in flight when the last attempt stopped")
            request = CastSendRequest(to=todo.to, message=text, sender_id=sender_id)
            await self._send_part(message.message_id, n, request, api_key, location,
                                  channel=channel, last=n == len(todo.parts) - 1)
        return len(todo.parts)

    async def _check_consent(self, location_id: str, to: PhMobile, api_key: str,
                             sender_id: str | None) -> None:
        why = await self.opt_outs.why_suppressed(location_id, to, account=fingerprint(api_key),
                                                 sender_id=sender_id)
        if why is None:
            return
        OPTED_OUT_SENDS.labels(why).inc()
        if why == "reply":
            raise PermanentError("the recipient replied STOP", code="opted_out",
                                 user_message=OPTED_OUT)
        raise PermanentError("the recipient is on Cast's opt-out list", code="cast_unsubscribed",
                             user_message=CAST_UNSUBSCRIBED)

    async def _send_part(self, message_id: str, n: int, request: CastSendRequest,
                         api_key: str, location: LocationSettings, *,
                         channel: Channel, last: bool) -> None:
        sent = Sent(request.to, channel, location.cast_key)
        for _ in range(MAX_RATE_LIMITED_IN_A_ROW):
            # Without Cast's idempotency a part whose answer was lost must never be sent
            # again, so its attempt is recorded before the call; with it, a retry sends
            # the same key and Cast answers from its cache, and the record is written once,
            # on acceptance. Recorded before the lane, not between the lane and the call:
            # the lane counts a call when it grants it, so the request must follow the
            # grant at once. (A crash while waiting in the lane leaves a part marked
            # sending that never left: the message fails as "may have been delivered",
            # the safe side.)
            if not self.policy.idempotency:
                await self.store.part_sending(message_id, n, sent)
            await self.lane.acquire(api_key, location.rate_limit_per_second)
            try:
                answer = await self.cast.send(request, api_key=api_key, channel=channel,
                                              idempotency_key=idempotency_key(message_id, n))
            except AccountError as refused:
                if refused.code == "cast_channel_not_allowed":
                    self.channels.forget(api_key)  # the list changed since it was read
                raise
            except RateLimited as limited:
                self.lane.pause(limited.retry_after or 1.0)
                log.warning("Cast rate limit hit; lane paused",
                            extra={"retry_after": limited.retry_after})
                continue
            # Cast took it: without this record a retry would send it again. The last part's
            # record also says when to ask for receipts: the first delay after this send.
            receipts_at = self.receipts.first_check() if last else None
            await outlast(partial(self.store.part_accepted, message_id, n, answer.message_id,
                                  sent, receipts_at=receipts_at), what="part_accepted")
            SENT_PARTS.inc()
            log.debug("Cast accepted part", extra={"part": n, "cast_message_id":
                                                  answer.message_id, "parts": answer.parts})
            return
        RATE_LIMITED_RUNS.inc()
        log.warning("Cast kept answering 429; the message waits in a retry tier",
                    extra={"in_a_row": MAX_RATE_LIMITED_IN_A_ROW})
        raise RateLimited("Cast kept answering 429")

    async def _failed(self, message: OutboundSms, error: BridgeError) -> Outcome:
        """Decide what only the pipeline can (a failed status with its reason); anything
        worth another try goes back to the Settler, which owns the attempt budget."""
        if isinstance(error, UncertainError) and not self.policy.idempotency:
            # Without idempotency a retry could text twice: give up, and say why.
            return await self.final.decide(message.message_id, "failed", StatusError(
                code="uncertain_delivery", message=UncertainError.user_message))
        if isinstance(error, PermanentError):
            if isinstance(error, AccountError):
                ACCOUNT_ALERTS.labels(error.code).inc()
                log.error("Cast account problem: operator action needed",
                          extra={"error_code": error.code, "detail": error.detail})
            return await self.final.decide(message.message_id, "failed",
                                      StatusError(code=error.code, message=error.user_message))
        log.warning("send failed, will retry", extra={"error_code": error.code,
                                                      "detail": error.detail})
        raise error

    async def exhausted(self, message: OutboundSms, retry: Retry, attempt: int) -> Outcome:
        """The Settler's hook when the attempts ran out: an SMS ends with a failed status
        the GHL user can read, never silently in a parking queue."""
        away = "Cast.ph" if retry.code.startswith("cast_") else "a service it needs"
        return await self.final.decide(message.message_id, "failed", StatusError(
            code=retry.code, message=f"Cast SMS could not reach {away} after {attempt} "
                                     "attempts; please try again later"))
