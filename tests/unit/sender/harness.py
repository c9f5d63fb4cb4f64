"""The Cast lane's two users — the outbound pipeline and the receipt desk — wired on the
in-memory fakes, as the sender's composition root wires them on the real adapters."""

from __future__ import annotations

import time

from castghl.common.messages import OutboundSms
from castghl.common.worker import Outcome
from castghl.sender.channels import Channels
from castghl.sender.final import FinalStatuses
from castghl.sender.lane import Lane
from castghl.sender.outbound import OutboundPipeline, OutboundPolicy
from castghl.sender.receipts import ReceiptDesk, ReceiptPolicy

from .fakes import (
    FakeCast,
    FakeLocations,
    FakeStatusQueue,
    FakeTicks,
    MemoryMessageStore,
    MemorySuppressions,
    MemoryUsage,
    Settled,
)

DEFAULT_KEY = "cast_default_key"


def sms(**overrides: object) -> OutboundSms:
    fields: dict[str, object] = {"message_id": "m1", "location_id": "loc1",
                                 "phone": "+63 917 123 4567", "message": "Hello"}
    return OutboundSms.model_validate({**fields, **overrides})


class Clock:
    """Time that moves only when a test moves it."""

    def __init__(self, now: float | None = None) -> None:
        # From the real time: the fake Cast dates its log rows by it.
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


class Harness:
    """The pipeline and the receipt desk on fakes, on a clock of the test's; after each
    delivery the clock moves to the next receipt check and the desk makes one round
    (Cast's receipts say `delivered` unless a test scripts them). The desk's own task
    never runs here: it starts only on a lane delivery (`on_duty`)."""

    def __init__(self, *script: object, idempotency: bool = True, max_attempts: int = 3,
                 locations: FakeLocations | None = None,
                 receipts: ReceiptPolicy | None = None) -> None:
        self.clock = Clock()
        self.store = MemoryMessageStore(clock=self.clock)
        self.suppressions = MemorySuppressions()
        self.cast = FakeCast(list(script))  # type: ignore[arg-type]
        self.statuses = FakeStatusQueue()
        self.ticks = FakeTicks()
        self.lane = Lane(rate=10_000, burst=10_000, default_key_rate=10_000)
        locations = locations or FakeLocations()
        self.usage = MemoryUsage()
        final = FinalStatuses(self.store, self.statuses, self.usage)
        self.desk = ReceiptDesk(
            store=self.store, cast=self.cast, lane=self.lane, locations=locations,
            ticks=self.ticks, final=final,
            policy=receipts or ReceiptPolicy(delays=(10, 30), unknown_as="delivered",
                                             default_api_key=DEFAULT_KEY),
            clock=self.clock)
        self.pipeline = OutboundPipeline(
            store=self.store, cast=self.cast, lane=self.lane, locations=locations,
            final=final, receipts=self.desk, opt_outs=self.suppressions,
            channels=Channels(self.cast),
            policy=OutboundPolicy(default_api_key=DEFAULT_KEY, default_sender_id="CASTDEMO",
                                  max_message_chars=450, max_parts=3,
                                  idempotency=idempotency))
        self.settled = Settled(self.pipeline.process, backoff=(5, 30, 120),
                               max_attempts=max_attempts, exhausted=self.pipeline.exhausted)

    async def process(self, message: OutboundSms, attempt: int) -> Outcome:
        outcome = await self.settled.process(message, attempt)
        await self.checks_come_due()
        return outcome

    async def checks_come_due(self) -> None:
        """Move the clock to the next receipt check, if one is awaited, and make a round."""
        if (at := await self.store.next_receipt_at()) is not None:
            self.clock.now = max(self.clock.now, at)
        await self.desk.round()

    async def next_check(self, message_id: str = "m1") -> tuple[int, float] | None:
        """The message's next receipt check: its number and how far off it is."""
        at = self.store.receipt_at.get(message_id)
        if at is None:
            return None
        return self.store.records[message_id].receipt_check, at - self.clock.now

    def status(self) -> tuple[str, str | None, str | None]:
        [update] = self.statuses.queued
        return (update.status, update.error.code if update.error else None,
                update.error.message if update.error else None)
