"""Delivery receipts: a message is `delivered` only when the carrier said so (invariant 9).

Cast accepting an SMS is not delivery: carriers reject messages after Cast took them
(unregistered sender IDs, say), and Cast offers receipts by polling only
(reference/cast.md, "Delivery status"). So the write that records a message's last part
accepted also records when to ask first (`receipt_at`, the first of
CAST_RECEIPT_CHECK_DELAYS after the send; `receipt_check` counts the checks). The desk, a
task of the process that owns the Cast lane, asks Cast for every message due, in rounds
at most `round_gap` apart, behind the sends (`Lane.acquire_behind_sends`): a few parts one
by one, many through `/sms/logs` pages of 500, as deep as the oldest of them (`_page`).
For each message:
- every part `delivered` → `delivered`;
- a part `undelivered` or `failed` → `failed`, with the carrier's reason in words a GHL
  user understands;
- otherwise the same write keeps what was read and when the next check is due; at the
  last one, CAST_RECEIPT_UNKNOWN_AS decides.

The schedule lives in Mongo, so a check costs no broker message and no write of its own
(docs/architecture.md, "Receipts"). What the broker still carries is a *tick*: while
receipts are awaited, one small message at a time waits in a delay tier of the lane's
queue (`LaneTicks`) and comes back to whoever owns the lane. It keeps the owner's desk on
duty, and if the owner dies it reaches the next owner, whose desk then takes up every due
message from the record. A desk stops when the channel of its last lane delivery closes
(after a reconnect the lane may be another replica's) or when no lane delivery came for
`duty_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
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
SETTLED_AT_ONCE: Final = 100
FEW_PARTS: Final = 5
# Rounds are at least this far apart (less when the first check comes sooner): what comes
# due meanwhile is read together, a page of logs instead of a look-up per message.
ROUND_GAP_SECONDS: Final = 1.0
# After Cast failed to answer, the desk waits this long before asking again.
TROUBLE_PAUSE_SECONDS: Final = 5.0
# Cast stamps `sent_at` with its own clock: the pages stop this far before our oldest send.
SEND_CLOCK_SLACK_SECONDS: Final = 300.0
# How long a tick waits in the lane queue's tiers before it comes back (the shortest tier
# at least this long), and how many such waits without any lane delivery end a desk's duty.
TICK_SECONDS: Final = 10.0
TICKS_TO_DUTY: Final = 3

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


class Ticks(Protocol):
    every: float  # seconds a tick takes to come back

    async def send(self) -> None: ...


class LaneTicks:
    """Ticks wait in a delay tier of the Cast lane's queue and come back to its owner."""

    def __init__(self, broker: RabbitBroker, work: WorkQueue,
                 every: float = TICK_SECONDS) -> None:
        self.broker = broker
        self.tier = work.tier_for(every)
        self.every = work.tier_delay(every)

    async def send(self) -> None:
        await publish(self.broker, self.tier, ReceiptCheck(),
                      headers={KIND_HEADER: RECEIPT_CHECK, ATTEMPT_HEADER: 1},
                      message_id=f"receipt-tick-{uuid.uuid4().hex}")


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
                 locations: LocationSource, ticks: Ticks, final: FinalStatuses,
                 policy: ReceiptPolicy, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.cast = cast
        self.lane = lane
        self.locations = locations
        self.ticks = ticks
        self.final = final
        self.policy = policy
        self.clock = clock
        self.round_gap = min(ROUND_GAP_SECONDS, policy.delays[0] / 4)
        self.duty_seconds = TICKS_TO_DUTY * ticks.every
        self._next: float | None = None  # the earliest moment a check may be due
        self._on_duty_until = 0.0
        self._lane_open: Callable[[], bool] = lambda: False
        self._tick_back_by = 0.0  # until then, the tick last sent is still on its way
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    # --- the Cast lane's side -----------------------------------------------------------------

    def first_check(self) -> float:
        """When the first receipt check of a message sent now comes due."""
        return self.clock() + self.policy.delays[0]

    async def expect(self, at: float) -> None:
        """Cast accepted every part of a message whose first check is due `at` (recorded
        with its last part): look then, and keep a tick on its way for whoever owns the
        lane by then."""
        self._soon(at)
        await self._keep_ticking()

    async def check(self, check: ReceiptCheck, attempt: int) -> Outcome:
        """A tick came back: a round now. (A check naming a message was sent by a sender
        before the schedule moved into the record: that message is due now.)"""
        self._tick_back_by = 0.0
        if check.message_id:
            await self.store.receipts_due_now(check.message_id, check.check, self.clock())
        self._soon(self.clock())
        # The tick is acked when this returns: while receipts are awaited, the next one is
        # on its way first, or an owner dying before its round sent one would leave the
        # checks due with nobody to wake for them until the next SMS.
        if await self.store.next_receipt_at() is not None:
            await self._keep_ticking()
        return Done()

    def on_duty(self, lane_open: Callable[[], bool]) -> None:
        """Called on every delivery of the Cast lane, with whether the channel it came on
        is still open: the first one means this process owns the lane (only its owner
        asks Cast), so the desk starts with a round, which takes up checks a previous
        owner left due. The desk stops when that channel closes: after a reconnect the
        lane may be another replica's, whose sends a read from here would not wait for."""
        self._on_duty_until = self.clock() + self.duty_seconds
        self._lane_open = lane_open
        if self._runner is None or self._runner.done():
            log.info("this replica owns the Cast lane now (sms.outbound has one active "
                     "consumer at a time): receipt desk on duty")
            self._next = self.clock()
            self._runner = asyncio.create_task(self._run(), name="receipt-desk")

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    def _soon(self, at: float) -> None:
        if self._next is None or at < self._next:
            self._next = at
            self._wake.set()

    async def _keep_ticking(self) -> None:
        """One tick on its way while receipts are awaited. A tick that has not come back
        well after its time went to another owner of the lane, or was lost with one."""
        now = self.clock()
        if now < self._tick_back_by:
            return
        self._tick_back_by = now + self.duty_seconds
        try:
            await self.ticks.send()
        except BaseException:
            self._tick_back_by = 0.0
            raise

    # --- the desk -------------------------------------------------------------------------

    async def _run(self) -> None:
        while (now := self.clock()) < self._on_duty_until and self._lane_open():
            if self._next is None or self._next > now:
                until = min(self._on_duty_until, self._next or self._on_duty_until)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), until - now)
                continue
            self._next = None
            try:
                upcoming = await self.round()
                if upcoming is not None:
                    self._soon(upcoming)
                    await self._keep_ticking()
            except Exception:
                log.exception("receipt round failed; asking again shortly")
                self._soon(self.clock() + TROUBLE_PAUSE_SECONDS)
                continue
            await asyncio.sleep(self.round_gap)
        log.info("receipt desk off duty: no Cast lane delivery lately, or its channel closed")

    async def round(self) -> float | None:
        """Ask Cast about every message due; returns when the next check comes due."""
        now = self.clock()
        due = await self.store.due_receipts(now, ROUND_LIMIT)
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
                continue  # still due: the next round asks again
            except BridgeError as error:
                log.warning("Cast did not answer a receipt look-up; asking again shortly",
                            extra={"error_code": error.code})
                return now + TROUBLE_PAUSE_SECONDS
            # Settled side by side, a slice at a time: their writes share round trips
            # (castghl.common.bulk), and the lane's own writes wait behind one slice at
            # most, not behind a whole round.
            for start in range(0, len(records), SETTLED_AT_ONCE):
                await asyncio.gather(*(self._settle(record, found) for record
                                       in records[start:start + SETTLED_AT_ONCE]))
        if len(due) >= ROUND_LIMIT:
            return now  # a full round: there is more due right now
        return await self.store.next_receipt_at()

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
        if record.status is not None:  # decided, and the status not queued yet: a crash
            await self.final.hand_over(record)
            return
        changed: dict[int, tuple[str, str | None]] = {}
        for n, part in record.parts.items():
            receipt = found.get(part.cast_message_id or "")
            if receipt is not None and receipt.status != part.receipt:
                part.receipt, part.dlr = receipt.status, receipt.dlr_status
                changed[n] = (receipt.status, receipt.dlr_status)
        decided = verdict(record)
        delays = self.policy.delays
        if decided is None and record.receipt_check >= len(delays):
            decided = self._unknown()
        if decided is None:
            await self.store.receipts_read(record.message_id, changed,
                                           check=record.receipt_check + 1,
                                           at=self.clock() + delays[record.receipt_check])
            return
        status, error = decided
        RECEIPTS.labels(error.code if error else status).inc()
        # The check stays due until the status is queued: a crash in between is answered
        # again by the next round.
        await self.final.decide(record.message_id, status, error, changed, held=record)

    def _unknown(self) -> tuple[FinalStatus, StatusError | None]:
        if self.policy.unknown_as == "delivered":
            return "delivered", None
        return "failed", StatusError(
            code="no_receipt", message="Cast SMS: the carrier never confirmed delivery")
