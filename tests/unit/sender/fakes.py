"""In-memory fakes of the sender's ports (store, Cast, locations, status queue, tokens)."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar, cast

from faststream.rabbit import RabbitBroker
from pydantic import BaseModel

from castghl.common.cast.client import LOGS_PAGE
from castghl.common.cast.models import (
    CastReceipt,
    CastSenderId,
    CastSenderIds,
    CastSendRequest,
    CastSendResponse,
    Channel,
)
from castghl.common.errors import BridgeError
from castghl.common.messages import (
    CastKey,
    InstallStatus,
    LocationSettings,
    OutboundSms,
    StatusError,
    StatusUpdate,
)
from castghl.common.phone import PhMobile
from castghl.common.topology import WorkQueue
from castghl.common.usage import usage_day
from castghl.common.worker import Exhausted, Outcome, Settler
from castghl.sender import store
from castghl.sender.credits import Account
from castghl.sender.optouts import Consent, Suppressed
from castghl.sender.store import Claim, FinalStatus, MessageRecord, Part, Receipts

M = TypeVar("M", bound=BaseModel)


class Settled(Generic[M]):
    """A handler as its queue's `Settler` ends each delivery — its errors mapped to retry
    or park, the attempt budget applied, the `exhausted` hook called — with no broker:
    the outcome is returned instead of acted on."""

    def __init__(self, handle: Callable[[M, int], Awaitable[Outcome]], *,
                 backoff: Sequence[float] = (5, 30), max_attempts: int = 10,
                 exhausted: Exhausted | None = None) -> None:
        self.handle = handle
        self.settler = Settler(cast("RabbitBroker", None), WorkQueue("unit.work", tuple(backoff)),
                               max_attempts, backoff, exhausted=exhausted)

    async def process(self, message: M, attempt: int) -> Outcome:
        return await self.settler.outcome(message, attempt, self.handle)


class MemoryMessageStore:
    """Yields to the event loop on every call, as a real database round trip does.

    Mirrors `MongoMessageStore` (tests/integration/sender/test_store.py runs both through
    one table): a step on a message that was never claimed changes nothing, as an update
    without upsert does."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.records: dict[str, MessageRecord] = {}
        self.sent_to: list[tuple[PhMobile, float, str]] = []  # (number, when, location)
        self.written: set[str] = set()  # ids whose status GHL took
        self.receipt_at: dict[str, float] = {}  # id → when its next receipt check is due
        self.status_leases: dict[str, float] = {}  # id → end of its status writer's lease
        self.clock = clock

    async def claim(self, sms: OutboundSms) -> MessageRecord:
        await asyncio.sleep(0)
        if sms.message_id not in self.records:
            self.records[sms.message_id] = MessageRecord(sms.message_id, sms.location_id,
                                                         created_ts=self.clock())
        return copy.deepcopy(self.records[sms.message_id])

    def _sent(self, record: MessageRecord, sent: store.Sent) -> None:
        record.channel, record.key, record.sent_ts = sent.channel, sent.key, self.clock()
        self.sent_to.append((sent.to, self.clock(), record.location_id))

    async def part_sending(self, message_id: str, n: int, sent: store.Sent) -> None:
        await asyncio.sleep(0)
        if (record := self.records.get(message_id)) is None:
            return
        part = record.parts.setdefault(n, Part("sending"))
        part.state = "sending"
        part.attempts += 1
        self._sent(record, sent)

    async def part_accepted(self, message_id: str, n: int, cast_message_id: str,
                            sent: store.Sent, *, receipts_at: float | None = None) -> None:
        if (record := self.records.get(message_id)) is None:
            return
        part = record.parts.setdefault(n, Part("sending"))
        if part.state != "accepted":
            part.state, part.cast_message_id = "accepted", cast_message_id
            self._sent(record, sent)
            if receipts_at:
                record.receipt_check, self.receipt_at[message_id] = 1, receipts_at

    async def receipts_due_now(self, message_id: str, check: int, now: float) -> None:
        record = self.records.get(message_id)
        if record is not None and record.status is None and message_id not in self.receipt_at:
            record.receipt_check, self.receipt_at[message_id] = check, now

    async def due_receipts(self, now: float, limit: int) -> list[MessageRecord]:
        await asyncio.sleep(0)
        due = sorted((at, m) for m, at in self.receipt_at.items() if at <= now)
        return [copy.deepcopy(self.records[m]) for _, m in due[:limit]]

    async def next_receipt_at(self) -> float | None:
        return min(self.receipt_at.values(), default=None)

    def _receipts(self, record: MessageRecord, receipts: Receipts) -> None:
        for n, (status, dlr) in receipts.items():
            part = record.parts.setdefault(n, Part("accepted"))
            part.receipt, part.dlr = status, dlr

    async def receipts_read(self, message_id: str, receipts: Receipts, *, check: int,
                            at: float) -> None:
        record = self.records.get(message_id)
        if record is not None and record.status is None:
            self._receipts(record, receipts)
            record.receipt_check, self.receipt_at[message_id] = check, at

    async def decide(self, message_id: str, status: FinalStatus, error: StatusError | None,
                     receipts: Receipts | None = None, *,
                     held: MessageRecord | None = None) -> MessageRecord:
        await asyncio.sleep(0)
        record = self.records[message_id]
        decided_now = record.status is None
        if decided_now:
            record.status, record.error = status, error
            self._receipts(record, receipts or {})
        answer = copy.deepcopy(record)
        answer.decided_now = decided_now
        return answer

    async def status_queued(self, message_id: str) -> None:
        if (record := self.records.get(message_id)) is not None:
            record.status_queued = True
        self.receipt_at.pop(message_id, None)

    async def status_written(self, message_id: str) -> bool:
        record = self.records.get(message_id)
        return record is not None and message_id in self.written

    async def claim_status_write(self, message_id: str, lease: float) -> Claim:
        await asyncio.sleep(0)
        if message_id not in self.records:
            return "mine"
        if message_id in self.written:
            return "done"
        if self.status_leases.get(message_id, 0.0) >= self.clock():
            return "busy"
        self.status_leases[message_id] = self.clock() + lease
        return "mine"

    async def release_status_write(self, message_id: str) -> None:
        if message_id in self.status_leases and message_id not in self.written:
            self.status_leases[message_id] = 0.0

    async def mark_status_written(self, message_id: str) -> None:
        if message_id in self.records:
            self.written.add(message_id)

    async def locations_that_texted(self, to: PhMobile, since: float) -> list[str]:
        found = sorted(((at, location) for number, at, location in self.sent_to
                        if number == to and at >= since), reverse=True)
        return list(dict.fromkeys(location for _, location in found))


@dataclass
class Sent:
    request: CastSendRequest
    api_key: str
    idempotency_key: str
    channel: Channel = "sms"


@dataclass
class FakeCast:
    """Answers each send in turn from `script` (an exception to raise, or None = accept).
    Receipts: `receipts[cast id]` if set, else `delivered`; reads are counted."""

    script: list[BridgeError | None] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    receipts: dict[str, CastReceipt] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)  # "status:<id>" or "logs:<offset>"
    read_error: BridgeError | None = None
    # The account's sender IDs, as (sender ID, channel); None: an API without the list.
    senders: list[tuple[str, str]] | None = None
    sender_id_reads: int = 0
    # Other sends on the same account, listed around ours by `/sms/logs`: `later` ones
    # newer (above ours), `earlier` ones a day older (below ours).
    later: int = 0
    earlier: int = 0
    unlisted: bool = False  # ours not in the listing (yet), only in status look-ups

    async def sender_ids(self, *, api_key: str) -> CastSenderIds | None:
        self.sender_id_reads += 1
        if self.senders is None:
            return None
        return CastSenderIds(sender_ids=[CastSenderId(sender_id=s, channel=c)
                                         for s, c in self.senders])

    async def send(self, request: CastSendRequest, *, api_key: str,
                   idempotency_key: str, channel: Channel = "sms") -> CastSendResponse:
        self.sent.append(Sent(request, api_key, idempotency_key, channel))
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        return CastSendResponse(success=True, message_id=f"CAST{len(self.sent)}", parts=1)

    def receipt_of(self, cast_id: str) -> CastReceipt:
        return self.receipts.get(cast_id) or CastReceipt(message_id=cast_id, status="delivered",
                                                         dlr_status="DELIVRD")

    async def receipt(self, cast_message_id: str, *, api_key: str,
                      channel: Channel = "sms") -> CastReceipt | None:
        self.reads.append(f"status:{cast_message_id}")
        if self.read_error is not None:
            raise self.read_error
        known = {f"CAST{n}" for n in range(1, len(self.sent) + 1)}
        return self.receipt_of(cast_message_id) if cast_message_id in known else None

    async def recent(self, *, api_key: str, offset: int = 0,
                     limit: int = LOGS_PAGE) -> list[CastReceipt]:
        self.reads.append(f"logs:{offset}")
        if self.read_error is not None:
            raise self.read_error
        day_before = datetime.fromtimestamp(time.time() - 86_400, UTC).isoformat()
        ours = [] if self.unlisted else [f"CAST{n}" for n in range(len(self.sent), 0, -1)]
        window = range(offset, min(offset + limit, self.later + len(ours) + self.earlier))
        rows = []
        for i in window:  # only the page asked for: `later` may be large
            if i < self.later:
                rows.append(self.receipt_of(f"LATER{i}"))
            elif i < self.later + len(ours):
                rows.append(self.receipt_of(ours[i - self.later]))
            else:
                rows.append(self.receipt_of(f"EARLIER{i}").model_copy(
                    update={"sent_at": day_before}))
        return rows


@dataclass
class FakeTicks:
    every: float = 10.0
    sent: int = 0

    async def send(self) -> None:
        self.sent += 1


def installed(location_id: str, **settings: object) -> LocationSettings:
    """An active installation that may send on the operator's default key, unless told."""
    return LocationSettings.model_validate({
        "location_id": location_id, "status": InstallStatus.ACTIVE,
        "cast_key": CastKey.DEFAULT, **settings})


@dataclass
class FakeLocations:
    """Every location is installed and on the default key, except those in `settings`."""

    settings: dict[str, LocationSettings] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def location(self, location_id: str) -> LocationSettings:
        self.asked.append(location_id)
        return self.settings.get(location_id, installed(location_id))


@dataclass
class FakeStatusQueue:
    queued: list[StatusUpdate] = field(default_factory=list)

    async def queue(self, update: StatusUpdate, since: float) -> None:
        self.queued.append(update)


class MemoryInboundStore:
    """Mirrors `MongoInboundStore`: a claim holds a lease of `INBOUND_LEASE_SECONDS` (read
    at each claim), released on failure or taken over once it ran out; delivered is final."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.delivered_ids: dict[str, tuple[str, str]] = {}
        self.leases: dict[str, float] = {}  # claimed, not yet delivered: id → lease end
        self.contacts: dict[tuple[str, PhMobile], str] = {}
        self.clock = clock

    @property
    def claimed(self) -> set[str]:
        return set(self.leases)

    async def claim(self, cast_message_id: str) -> Claim:
        await asyncio.sleep(0)
        if cast_message_id in self.delivered_ids:
            return "done"
        now = self.clock()
        lease = self.leases.get(cast_message_id)
        if lease is not None and lease >= now:
            return "busy"
        self.leases[cast_message_id] = now + store.INBOUND_LEASE_SECONDS
        return "mine"

    async def release(self, cast_message_id: str) -> None:
        if cast_message_id in self.leases:
            self.leases[cast_message_id] = 0.0

    async def delivered(self, cast_message_id: str, location_id: str,
                        ghl_message_id: str) -> None:
        if cast_message_id in self.leases or cast_message_id in self.delivered_ids:
            self.delivered_ids[cast_message_id] = (location_id, ghl_message_id)
            self.leases.pop(cast_message_id, None)

    async def contact(self, location_id: str, phone: PhMobile) -> str | None:
        return self.contacts.get((location_id, phone))

    async def remember_contact(self, location_id: str, phone: PhMobile,
                               contact_id: str) -> None:
        self.contacts[(location_id, phone)] = contact_id


@dataclass
class FakeRouter:
    numbers: dict[str, str] = field(default_factory=dict)

    async def route(self, to_number: str) -> str | None:
        return self.numbers.get(to_number)


@dataclass
class FakeTokens:
    tokens: list[str] = field(default_factory=lambda: ["tok1", "tok2", "tok3"])
    refreshed: list[str] = field(default_factory=list)
    error: Exception | None = None

    async def token(self, location_id: str) -> str:
        if self.error:
            raise self.error
        return self.tokens[0]

    async def refresh(self, location_id: str, stale_token: str) -> str:
        self.refreshed.append(stale_token)
        self.tokens.pop(0)
        return self.tokens[0]


class MemorySuppressions:
    """Mirrors `MongoSuppressions`: per location and number, the latest change by time."""

    def __init__(self) -> None:
        self.changes: dict[tuple[str, str], tuple[float, Consent]] = {}
        self.cast: dict[str, set[tuple[str, str | None]]] = {}

    async def record(self, location_id: str, phone: PhMobile, consent: Consent, *,
                     at: float, word: str) -> Consent:
        await asyncio.sleep(0)
        key = (location_id, phone.e164)
        if key not in self.changes or self.changes[key][0] <= at:
            self.changes[key] = (at, consent)
        return self.changes[key][1]

    async def opted_out(self, location_id: str, phone: PhMobile) -> bool:
        found = self.changes.get((location_id, phone.e164))
        return found is not None and found[1] == "opted_out"

    async def why_suppressed(self, location_id: str, phone: PhMobile, *, account: str,
                             sender_id: str | None) -> Suppressed | None:
        if await self.opted_out(location_id, phone):
            return "reply"
        listed = self.cast.get(account, set())
        if (phone.e164, None) in listed or (sender_id and (phone.e164, sender_id) in listed):
            return "cast"
        return None

    async def replace_cast_opt_outs(self, account: str,
                                    numbers: set[tuple[PhMobile, str | None]],
                                    now: float) -> None:
        self.cast[account] = {(phone.e164, sender_id) for phone, sender_id in numbers}


class MemorySchedules:
    """Mirrors `MongoSchedules`: one tat per key, changed only by compare-and-set."""

    def __init__(self) -> None:
        self.tats: dict[str, int] = {}

    async def tat(self, key: str) -> int | None:
        await asyncio.sleep(0)
        return self.tats.get(key)

    async def swap(self, key: str, old: int | None, new: int) -> bool:
        await asyncio.sleep(0)
        if self.tats.get(key) != old:
            return False
        self.tats[key] = new
        return True


class MemoryAccounts:
    """Mirrors `MongoAccounts`: one check per account and period, the last balance kept."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, object]] = {}

    async def claim_check(self, fingerprint: str, every: float, now: float) -> bool:
        await asyncio.sleep(0)
        doc = self.docs.get(fingerprint)
        if doc is not None and float(cast(float, doc["checked_ts"])) > now - every:
            return False
        if doc is None:
            self.docs[fingerprint] = {"label": f"key {fingerprint}", "credits": None,
                                      "sandbox": False}
        self.docs[fingerprint]["checked_ts"] = now
        return True

    async def record(self, fingerprint: str, *, label: str, credits: float, sandbox: bool,
                     now: float) -> float | None:
        doc = self.docs[fingerprint]
        before = doc.get("credits")
        doc.update(label=label, credits=credits, sandbox=sandbox)
        return None if before is None else float(cast(float, before))

    async def accounts_list(self) -> list[Account]:
        return [Account(fingerprint=f, label=str(d["label"]),
                        credits=None if d["credits"] is None else float(cast(float,
                                                                             d["credits"])),
                        sandbox=bool(d["sandbox"]))
                for f, d in self.docs.items()]


class MemoryUsage:
    """Mirrors `MongoUsage`: counts per location and Philippine day."""

    def __init__(self) -> None:
        self.days: dict[tuple[str, str], dict[str, int]] = {}

    async def add(self, location_id: str, at: float, counts: dict[str, int]) -> None:
        row = self.days.setdefault((location_id, usage_day(at)), {})
        for name, n in counts.items():
            row[name] = row.get(name, 0) + n

    def total(self, location_id: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for (location, _), row in self.days.items():
            if location == location_id:
                for name, n in row.items():
                    found[name] = found.get(name, 0) + n
        return found
