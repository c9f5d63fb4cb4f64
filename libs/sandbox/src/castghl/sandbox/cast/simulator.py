"""All the state of one Cast simulator, and the send pipeline that changes it.

One instance per app (no module globals), so two simulators in one process — a test
that runs two Cast accounts side by side — never share a bucket, a key or a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from typing import Any

from fastapi import Request, Response

from castghl.sandbox.cast.accounts import Account
from castghl.sandbox.cast.errors import Answer, CastError, error_body
from castghl.sandbox.cast.faults import FaultInjector
from castghl.sandbox.cast.idempotency import Claim, IdempotencyStore
from castghl.sandbox.cast.knobs import CarrierOutcome, CastKnobs, Channel
from castghl.sandbox.cast.logs import logs_body
from castghl.sandbox.cast.messages import MessageLog, OutcomeOverride, SentMessage, mask_key
from castghl.sandbox.cast.parts import count_parts
from castghl.sandbox.cast.ratelimit import RateLimiter, retry_after
from castghl.sandbox.cast.validation import (
    Page,
    SendRequest,
    idempotency_key,
    local_form,
    parse_send,
)
from castghl.sandbox.clock import SimClock

WELL_FORMED_KEY = re.compile(r"cast_(?:test_)?[0-9a-fA-F]{64}")
REPLAY_HEADER = "X-Idempotent-Replay"


class CastSimulator:
    def __init__(self, knobs: CastKnobs, clock: SimClock | None = None) -> None:
        self.knobs = knobs
        # Every rule below reads time here, so a test moving it moves them all at once.
        self.clock = clock if clock is not None else SimClock()
        self.faults = FaultInjector(knobs)
        self.log = MessageLog(self.clock)
        self.idempotency = IdempotencyStore(clock=self.clock)
        self.ip_limiters: dict[str, RateLimiter] = {}
        self.key_limiters: dict[str, RateLimiter] = {}

    def reset(self) -> None:
        """Forget traffic (messages, idempotency, buckets, queued faults) and go back to
        real time; keep knobs.

        Swapping whole objects keeps a request in flight working on the old ones, never
        on half-reset state. Time resumes with them: a bucket stamped in an advanced time
        must not outlive the advance.
        """
        self.clock.resume()
        self.log = MessageLog(self.clock)
        self.idempotency = IdempotencyStore(clock=self.clock)
        self.ip_limiters = {}
        self.key_limiters = {}
        self.faults.reset()

    # --- every API call -------------------------------------------------------------

    def admit(self, client_ip: str) -> None:
        """Cast's per-IP limit, shared by every key used from that address; it sits in
        front of authentication, so unauthenticated calls count too."""
        self._limit(self.ip_limiters, client_ip, self.knobs.rate_per_second,
                    self.knobs.burst, "too many requests from this IP address")

    def authenticate(self, api_key: str | None) -> str:
        knobs = self.knobs
        if not api_key:
            raise CastError(401, "INVALID_API_KEY", "X-API-Key header is required")
        if api_key in knobs.revoked_keys:
            raise CastError(403, "API_KEY_REVOKED", "API key has been revoked")
        if api_key in knobs.api_keys or (
                knobs.accept_any_key and WELL_FORMED_KEY.fullmatch(api_key)):
            return api_key
        raise CastError(401, "INVALID_API_KEY", "Invalid API key")

    def account(self, api_key: str) -> Account:
        return Account(self.knobs, api_key)

    def settle(self) -> None:
        """Refund the scripted submit failures whose receipt has arrived: done at every
        API call, so a balance read after the receipt sees the credits back."""
        for message in self.log.failures_due(self.clock()):
            if message.override is None:
                self._refund(message)

    def _refund(self, message: SentMessage) -> None:
        # Once only, and never taken back: an override away from `failed` afterwards
        # does not charge the account again.
        if not message.refunded and message.charged:
            message.refunded = True
            self.account(message.api_key).charge(-message.charged)

    async def pause(self) -> None:
        delay = self.faults.latency_seconds()
        if delay > 0:
            await asyncio.sleep(delay)

    # --- send -----------------------------------------------------------------------

    async def send(self, request: Request, api_key: str, channel: Channel) -> Response:
        """`POST /{sms,sim}/send`: the same body and pipeline; the sender ID must belong
        to the channel (403 CHANNEL_NOT_ALLOWED otherwise)."""
        knobs = self.knobs
        send = parse_send(await request.body(), request.headers.get("content-type", ""), knobs)
        sender_id = self.account(api_key).sender_for(send.sender_id, channel)
        send = dataclasses.replace(send, sender_id=sender_id)
        key = idempotency_key(request.headers.get("x-idempotency-key"), knobs)
        if key is None:
            return await self._process(request, api_key, channel, send, key=None, claim=None)
        store = self.idempotency  # this request's store, even if a reset swaps it
        # The channel is part of "the same request": a key reused across channels is a
        # different send, refused like a different body.
        begun = await store.begin((api_key, key), f"{channel}:{send.fingerprint()}",
                                  knobs.idempotency_ttl_seconds)
        if isinstance(begun, Answer):
            return begun.response({REPLAY_HEADER: "true"})
        try:
            return await self._process(request, api_key, channel, send, key=key,
                                       claim=(store, begun))
        finally:
            store.release(begun)

    async def _process(self, request: Request, api_key: str, channel: Channel,
                       send: SendRequest, *, key: str | None,
                       claim: tuple[IdempotencyStore, Claim] | None) -> Response:
        knobs = self.knobs
        if knobs.key_rate_per_second is not None:
            self._limit(self.key_limiters, api_key, knobs.key_rate_per_second,
                        knobs.effective_key_burst(), "too many messages for this account")
        fault = self.faults.next_fault()
        if fault is not None and not fault.after_send:
            raise fault.error(knobs.retry_after_seconds)
        await self.pause()
        answer, sent = self._decide(api_key, channel, send, key)
        if claim is not None:
            store, held = claim
            store.complete(held, answer, knobs.idempotency_ttl_seconds)
        hang = self.faults.take_hang() if sent else None
        if fault is not None:
            # Sent (and remembered under the key), but the client only sees the failure.
            answer = fault.error(knobs.retry_after_seconds).answer()
        if hang:
            await _hold(request, hang)
        return answer.response()

    def _decide(self, api_key: str, channel: Channel, send: SendRequest, key: str | None
                ) -> tuple[Answer, bool]:
        """Cast's answer once the request is accepted for processing; True if sent."""
        account = self.account(api_key)
        if account.opted_out(send.to, send.sender_id):
            return Answer(422, error_body(
                "Recipient has unsubscribed from this sender ID", "ALREADY_UNSUBSCRIBED")), False
        encoding, parts = count_parts(send.message)
        price, balance = account.price(parts), account.credits()
        if balance is not None and balance < price:
            return Answer(402, error_body(
                f"Insufficient credits: {price} needed, {balance} left",
                "INSUFFICIENT_CREDITS")), False
        outcome, delay = self._carrier(send)
        message = self.log.add(
            api_key=api_key, channel=channel, to=send.to, message=send.message,
            sender_id=send.sender_id, scheduled_at=send.scheduled_at, encoding=encoding,
            parts=parts, charged=price if balance is not None else 0,
            idempotency_key=key, outcome=outcome, dlr_delay=delay)
        account.charge(price)
        return Answer(200, {"success": True, "message_id": message.message_id,
                            "parts": parts}), True

    def _carrier(self, send: SendRequest) -> tuple[CarrierOutcome, float]:
        """The receipt this message will get, and after how long: the first carrier rule
        that matches it, else the default outcome."""
        knobs = self.knobs
        for rule in knobs.carrier_rules:
            if ((rule.to is None or local_form(rule.to) == local_form(send.to))
                    and (rule.contains is None or rule.contains in send.message)
                    and (rule.sender_id is None or rule.sender_id == send.sender_id)):
                delay = knobs.dlr_delay_seconds if rule.delay_seconds is None \
                    else rule.delay_seconds
                return CarrierOutcome(status=rule.status, dlr_status=rule.dlr_status,
                                      error_message=rule.error_message), delay
        return CarrierOutcome(status=knobs.carrier_outcome), knobs.dlr_delay_seconds

    # --- reads ----------------------------------------------------------------------

    def message_for(self, api_key: str, message_id: str, channel: Channel) -> SentMessage:
        message = self.log.get(message_id)
        # Another account's message is "not found": existence is not leaked across keys.
        # Each channel's status path knows its own messages only, so a bridge polling a
        # SIM message on the SMS path finds out here.
        if message is None or message.api_key != api_key or message.channel != channel:
            raise CastError(404, "NOT_FOUND", f"Message {message_id} not found")
        return message

    def logs(self, api_key: str, page: Page) -> dict[str, Any]:
        return logs_body(self.log, api_key, page, self.clock())

    def override_outcome(self, message_id: str, override: OutcomeOverride, now: float
                         ) -> SentMessage:
        message = self.log.get(message_id)
        if message is None:
            raise CastError(404, "NOT_FOUND", f"Message {message_id} not found")
        message.override, message.override_at = override, now
        if override.status == "failed":
            self._refund(message)
        return message

    def state(self) -> dict[str, Any]:
        knobs = self.knobs
        key_burst = knobs.effective_key_burst()
        return {
            "ip_buckets": {ip: limiter.level(knobs.rate_per_second, knobs.burst)
                           for ip, limiter in self.ip_limiters.items()},
            "key_buckets": {
                mask_key(key): limiter.level(knobs.key_rate_per_second or 1.0, key_burst)
                for key, limiter in self.key_limiters.items()},
            "idempotency": self.idempotency.counts(),
            "sent": len(self.log.all()),
            "credits": knobs.credits,
            "credits_by_key": {mask_key(key): credits
                               for key, credits in knobs.credits_by_key.items()},
            "fail_next": [spec.model_dump() for spec in knobs.fail_next],
            "hang_next": knobs.hang_next,
        }

    def _limit(self, limiters: dict[str, RateLimiter], who: str, rate: float, burst: int,
               why: str) -> None:
        limiter = limiters.setdefault(who, RateLimiter(self.clock))
        wait = limiter.try_acquire(rate, burst)
        if wait > 0:
            seconds = retry_after(wait, self.knobs.retry_after_seconds)
            raise CastError(429, "RATE_LIMIT_EXCEEDED", f"Rate limit exceeded: {why}",
                            {"Retry-After": str(seconds)})


async def _hold(request: Request, seconds: float) -> None:
    """Delay the answer like a stalled network, but stop once the client hangs up: nobody
    is left to read it, and the server can shut down without waiting out the hang."""

    async def until_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(until_disconnect(), seconds)
