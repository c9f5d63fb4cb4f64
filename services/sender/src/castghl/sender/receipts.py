"""Delivery receipts: a message is `delivered` only when the carrier said so (invariant 9).

Cast accepting an SMS is not delivery: carriers reject messages after Cast took them
(unregistered sender IDs, say), and Cast offers receipts by polling only
(reference/cast.md, "Delivery status"). So once Cast accepted every part, the pipeline
schedules check 1, a `ReceiptCheck` on the Cast lane's own queue, through its delay tiers
(CAST_RECEIPT_CHECK_DELAYS) — RabbitMQ keeps the wait, no consumer sleeps on it.

Check n, when it arrives and the message is still open, first schedules check n + 1,
then marks n due in the message's record, and is acknowledged at once, so waiting checks
never hold the lane's prefetch away from sends. The desk then asks Cast for every due
message at once, behind the sends (`Lane.acquire_behind_sends`): a few parts one by one,
many through `/sms/logs` pages of 500, as deep as the oldest of them (`_page`). For each
message:
- every part `delivered` → `delivered`;
- a part `undelivered` or `failed` → `failed`, with the carrier's reason in words a GHL
  user understands;
- otherwise it waits for the check already scheduled; at the last one,
  CAST_RECEIPT_UNKNOWN_AS decides.

Scheduling the next check before the mark keeps the chain whole whatever crashes where:
a replica that dies before answering leaves the next check on its way to the next owner
of the lane, which then answers every due message (and after the last check, a backstop
check ends it). A check for a decided message, or one already passed, ends there.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from faststream.rabbit import RabbitBroker
from prometheus_client import Counter

from castghl.common.broker import publish
from castghl.common.cast.client import LOGS_PAGE
from castghl.common.cast.models import CastReceipt, Channel
from castghl.common.errors import BridgeError, RateLimited
from castghl.common.messages import (
    CastKey,
    LocationSettings,
    ReceiptCheck,
    StatusError,
)
from castghl.common.topology import ATTEMPT_HEADER, KIND_HEADER, RECEIPT_CHECK, WorkQueue
from castghl.common.worker import Done, Outcome
from castghl.sender.final import FinalStatuses
from castghl.sender.lane import Lane
from castghl.sender.store import FinalStatus, MessageRecord, MessageStore

log = logging.getLogger(__name__)

RECEIPTS = Counter("castghl_receipts_total", "Messages decided by their carrier receipts",
                   ["outcome"])
# Messages read per round of the desk, and parts below which one look-up per part is
# cheaper than a page of logs.
ROUND_LIMIT: Final = 2_000
FEW_PARTS: Final = 5
# After Cast failed to answer, the desk waits this long before asking again.
TROUBLE_PAUSE_SECONDS: Final = 5.0
# Cast stamps `sent_at` with its own clock: the pages stop this far before our oldest send.
SEND_CLOCK_SLACK_SECONDS: Final = 300.0
# After the last check, one more in case the replica making it died before deciding.
BACKSTOP_SECONDS: Final = 60.0

# What a GHL user reads when the carrier did not deliver (reference/cast.md: undelivered
# covers UNDELIV, REJECTD and EXPIRED; failed means Cast could not submit it).
CARRIER_REASONS: Final[dict[str, tuple[str, str]]] = {
    "REJECTD": ("carrier_rejected", "Cast SMS: the carrier rejected this message; the sender "
                                    "ID may not be registered with this network"),
    "EXPIRED": ("carrier_expired", "Cast SMS: the phone was unreachable until the message "
                                   "expired"),
    "UNDELIV": ("carrier_undelivered", "Cast SMS: the carrier could not deliver it"),
}
SUBMIT_FAILED: Final = ("cast_submit_failed",
                        "Cast SMS: Cast.ph could not hand the message to the carrier")


class ReceiptSource(Protocol):
    """Cast's receipt reads (castghl.common.cast.client.CastClient)."""

    async def receipt(self, cast_message_id: str, *, api_key: str,
                      channel: Channel = "sms") -> CastReceipt | None: ...

    async def recent(self, *, api_key: str, offset: int = 0,
                     limit: int = LOGS_PAGE) -> list[CastReceipt]: ...


class CheckQueue(Protocol):
    async def schedule(self, check: ReceiptCheck, delay: float) -> None: ...


class LaneCheckQueue:
    """Checks wait in the Cast lane queue's delay tiers and come back to its owner."""

    def __init__(self, broker: RabbitBroker, work: WorkQueue) -> None:
        self.broker = broker
        self.work = work

    async def schedule(self, check: ReceiptCheck, delay: float) -> None:
        await publish(self.broker, self.work.tier_for(delay), check,
                      headers={KIND_HEADER: RECEIPT_CHECK, ATTEMPT_HEADER: 1},
                      message_id=f"{check.message_id}#receipt{check.check}")


class LocationSource(Protocol):
    async def location(self, location_id: str) -> LocationSettings: ...


@dataclass(frozen=True)
class ReceiptPolicy:
    delays: Sequence[float]
    unknown_as: Literal["delivered", "failed"]
    default_api_key: str


def verdict(record: MessageRecord) -> tuple[FinalStatus, StatusError | None] | None:
    """What the parts' receipts say of the message, or None while one is still open."""
    parts = [record.parts[n] for n in sorted(record.parts)]
    for part in parts:
        if part.receipt == "failed":
            return "failed", StatusError(code=SUBMIT_FAILED[0], message=SUBMIT_FAILED[1])
        if part.receipt == "undelivered":
            code, message = CARRIER_REASONS.get(part.dlr or "UNDELIV",
                                                CARRIER_REASONS["UNDELIV"])
            return "failed", StatusError(code=code, message=message)
    if parts and all(part.receipt == "delivered" for part in parts):
        return "delivered", None
    return None


class ReceiptDesk:
    def __init__(self, *, store: MessageStore, cast: ReceiptSource, lane: Lane,
                 locations: LocationSource, checks: CheckQueue, final: FinalStatuses,
                 policy: ReceiptPolicy) -> None:
        self.store = store
        self.cast = cast
        self.lane = lane
        self.locations = locations
        self.checks = checks
        self.final = final
        self.policy = policy
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    # --- the Cast lane's side -----------------------------------------------------------------

    async def expect(self, message_id: str, location_id: str) -> None:
        """Cast accepted every part: ask for the receipts after the first delay."""
        await self.checks.schedule(ReceiptCheck(message_id=message_id,
                                                location_id=location_id, check=1),
                                   self.policy.delays[0])

    async def check(self, check: ReceiptCheck, attempt: int) -> Outcome:
        """A check came due: schedule the next, mark this one, and let the desk ask Cast."""
        if not await self.store.receipt_wanted(check.message_id, check.check):
            return Done()  # decided, or a copy of a check already passed
        delays = self.policy.delays
        if check.check <= len(delays):
            after = delays[check.check] if check.check < len(delays) else BACKSTOP_SECONDS
            await self.checks.schedule(check.model_copy(update={"check": check.check + 1}),
                                       after)
        await self.store.receipt_due(check.message_id, check.check)
        self.wake()
        return Done()

    def wake(self) -> None:
        """Have the desk look at what is due."""
        self._wake.set()
        self.on_duty()

    def on_duty(self) -> None:
        """Called on every delivery of the Cast lane: the first one means this process
        owns the lane (only its owner asks Cast), so the desk starts with a round, which
        takes up checks a previous owner marked due and died before answering."""
        if self._runner is None:
            log.info("this replica owns the Cast lane now (sms.outbound has one active "
                     "consumer at a time)")
        if self._runner is None or self._runner.done():
            self._wake.set()
            self._runner = asyncio.create_task(self._run(), name="receipt-desk")

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    # --- the desk -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while await self.round() >= ROUND_LIMIT:
                    pass  # a full round: there is more due right now
            except Exception:
                log.exception("receipt round failed; asking again shortly")
                await asyncio.sleep(TROUBLE_PAUSE_SECONDS)
                self._wake.set()

    async def round(self) -> int:
        """Ask Cast about every message due; returns how many were looked at."""
        due = await self.store.due_receipts(ROUND_LIMIT)
        by_key: dict[str, list[MessageRecord]] = {}
        for record in due:
            settings = await self.locations.location(record.location_id)
            own = record.key is CastKey.OWN and settings.cast_api_key
            key = settings.cast_api_key if own else self.policy.default_api_key
            by_key.setdefault(key or self.policy.default_api_key, []).append(record)
        for api_key, records in by_key.items():
            try:
                found = await self._ask(api_key, records)
            except RateLimited as limited:
                self.lane.pause(limited.retry_after or 1.0)
                self._wake.set()
                continue
            except BridgeError as error:
                log.warning("Cast did not answer a receipt look-up; asking again shortly",
                            extra={"error_code": error.code})
                await asyncio.sleep(TROUBLE_PAUSE_SECONDS)
                self._wake.set()
                continue
            for record in records:
                await self._settle(record, found)
        return len(due)

    async def _ask(self, api_key: str, records: list[MessageRecord]) -> dict[str, CastReceipt]:
        """The receipts Cast has for the open parts of `records`, by Cast message id."""
        wanted = {part.cast_message_id: record.channel for record in records
                  for part in record.parts.values()
                  if part.cast_message_id and part.receipt not in {"delivered", "undelivered",
                                                                    "failed"}}
        # SIM receipts are read one by one, where Cast documents them (`/sim/status`).
        sims = {cast_id for cast_id, channel in wanted.items() if channel == "sim"}
        paged = set() if len(wanted) - len(sims) <= FEW_PARTS else set(wanted) - sims
        found: dict[str, CastReceipt] = {}
        if paged:
            oldest = min(record.sent_ts for record in records)
            found = await self._page(api_key, paged, oldest - SEND_CLOCK_SLACK_SECONDS)
        # Whatever the pages did not hold, one by one.
        for cast_id in [cast_id for cast_id in wanted if cast_id not in found]:
            await self.lane.acquire_behind_sends()
            receipt = await self.cast.receipt(cast_id, api_key=api_key,
                                              channel=wanted[cast_id])
            if receipt is not None:
                found[cast_id] = receipt
        return found

    async def _page(self, api_key: str, wanted: set[str], since: float) -> dict[str, CastReceipt]:
        """Rows of `/sms/logs` for `wanted`, newest first, as deep as pays off.

        The parts asked for may lie under many newer sends (a burst's first messages come
        due after the rest were sent), so the pages go on until every part is found, the
        rows are older than the oldest send asked for, or the log ends. Once more pages
        have been read than parts are missing, one look-up per part is cheaper: stop."""
        found: dict[str, CastReceipt] = {}
        for page in itertools.count():
            missing = len(wanted) - len(found)
            if missing == 0 or page > missing:
                break
            await self.lane.acquire_behind_sends()
            rows = await self.cast.recent(api_key=api_key, offset=page * LOGS_PAGE)
            found.update({row.message_id: row for row in rows if row.message_id in wanted})
            last = rows[-1].sent_ts if rows else None
            if len(rows) < LOGS_PAGE or (last is not None and last < since):
                break
        return found

    async def _settle(self, record: MessageRecord, found: dict[str, CastReceipt]) -> None:
        changed: dict[int, tuple[str, str | None]] = {}
        for n, part in record.parts.items():
            receipt = found.get(part.cast_message_id or "")
            if receipt is not None and receipt.status != part.receipt:
                part.receipt, part.dlr = receipt.status, receipt.dlr_status
                changed[n] = (receipt.status, receipt.dlr_status)
        decided = verdict(record)
        if decided is None and record.receipt_check >= len(self.policy.delays):
            decided = self._unknown()
        if decided is None:
            await self.store.receipts_read(record.message_id, changed)
            return
        status, error = decided
        RECEIPTS.labels(error.code if error else status).inc()
        # The check stays due until the status is queued: a crash in between is answered
        # again by the next round.
        await self.final.decide(record.message_id, status, error, changed)

    def _unknown(self) -> tuple[FinalStatus, StatusError | None]:
        if self.policy.unknown_as == "delivered":
            return "delivered", None
        return "failed", StatusError(
            code="no_receipt", message="Cast SMS: the carrier never confirmed delivery")
