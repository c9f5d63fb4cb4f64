"""The Cast lane's two users — the outbound pipeline and the receipt desk — wired on the
in-memory fakes, as the sender's composition root wires them on the real adapters."""

from __future__ import annotations

from castghl.common.messages import OutboundSms
from castghl.common.worker import Outcome
from castghl.sender.channels import Channels
from castghl.sender.final import FinalStatuses
from castghl.sender.lane import Lane
from castghl.sender.outbound import OutboundPipeline, OutboundPolicy
from castghl.sender.receipts import ReceiptDesk, ReceiptPolicy

from .fakes import (
    FakeCast,
    FakeCheckQueue,
    FakeLocations,
    FakeStatusQueue,
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


class StillDesk(ReceiptDesk):
    """Makes a round only when the test says, never in a background task."""

    def wake(self) -> None:
        pass


class Harness:
    """The pipeline and the receipt desk on fakes; after each delivery the checks it
    scheduled come due and the desk makes one round (Cast's receipts say `delivered`
    unless a test scripts them)."""

    def __init__(self, *script: object, idempotency: bool = True, max_attempts: int = 3,
                 locations: FakeLocations | None = None,
                 receipts: ReceiptPolicy | None = None) -> None:
        self.store = MemoryMessageStore()
        self.suppressions = MemorySuppressions()
        self.cast = FakeCast(list(script))  # type: ignore[arg-type]
        self.statuses = FakeStatusQueue()
        self.checks = FakeCheckQueue()
        self.lane = Lane(rate=10_000, burst=10_000, default_key_rate=10_000)
        locations = locations or FakeLocations()
        self.usage = MemoryUsage()
        final = FinalStatuses(self.store, self.statuses, self.usage)
        self.desk = StillDesk(
            store=self.store, cast=self.cast, lane=self.lane, locations=locations,
            checks=self.checks, final=final,
            policy=receipts or ReceiptPolicy(delays=(10, 30), unknown_as="delivered",
                                             default_api_key=DEFAULT_KEY))
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
        checks, self.checks.scheduled = self.checks.scheduled, []
        for check, _ in checks:
            await self.desk.check(check, attempt=1)
        await self.desk.round()

    def status(self) -> tuple[str, str | None, str | None]:
        [update] = self.statuses.queued
        return (update.status, update.error.code if update.error else None,
                update.error.message if update.error else None)
