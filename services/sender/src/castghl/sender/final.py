"""A message's one final status (invariant 3): decided once, then handed to GHL.

Both deciders come here: the outbound pipeline (a message Cast refused or that cannot be
sent) and the receipt desk (what the carrier said). The first decision recorded wins; a
later one returns it unchanged.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from prometheus_client import Counter

from castghl.common.messages import StatusError, StatusUpdate
from castghl.common.worker import Done, Outcome
from castghl.sender.store import FinalStatus, MessageRecord, MessageStore, Receipts, UsageLog

log = logging.getLogger(__name__)

OUTCOMES = Counter("castghl_outbound_final_total", "Final outbound statuses", ["status", "code"])


class StatusQueue(Protocol):
    async def queue(self, update: StatusUpdate, since: float) -> None: ...


class FinalStatuses:
    def __init__(self, store: MessageStore, statuses: StatusQueue, usage: UsageLog) -> None:
        self.store = store
        self.statuses = statuses
        self.usage = usage

    async def decide(self, message_id: str, status: FinalStatus, error: StatusError | None,
                     receipts: Receipts | None = None, *,
                     held: MessageRecord | None = None) -> Outcome:
        record = await self.store.decide(message_id, status, error, receipts, held=held)
        if record.decided_now and record.status is not None:
            # Counted once, with the decision: the parts Cast accepted and the outcome.
            counts: dict[str, int] = {record.status: 1}
            if record.parts_accepted:
                counts["parts_sent"] = record.parts_accepted
            await self.usage.add(record.location_id, time.time(), counts)
        OUTCOMES.labels(record.status or status, record.error.code if record.error else "").inc()
        log.info("outbound message decided", extra={
            "status": record.status, "error_code": record.error.code if record.error else None})
        return await self.hand_over(record)

    async def hand_over(self, record: MessageRecord) -> Outcome:
        """Queue the decided status once; a crash before the flag is set queues it again,
        and the status worker drops the duplicate."""
        if record.status is None:
            return Done()
        if not record.status_queued:
            await self.statuses.queue(StatusUpdate(
                message_id=record.message_id, location_id=record.location_id,
                status=record.status, error=record.error), since=record.created_ts)
        # Also when it was queued before: the write ends any receipt check still due.
        await self.store.status_queued(record.message_id)
        return Done()
