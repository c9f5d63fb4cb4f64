"""The `messages` collection: one document per GHL messageId, the memory that makes
redelivery harmless (invariant 2).

The document records how far a message got — each Cast part's state and id, the final
status once decided, whether that status was queued and whether GHL took it — so a
redelivered webhook or broker message resumes where the last attempt stopped, and never
repeats a step that finished.

Times written by `$set` are epoch seconds (numbers): the MongoDB-wire emulator used on
machines without MongoDB stores a `$set` datetime as a string (reference/stack.md), and
numbers compare the same on both. BSON dates are only written on insert (`created_at`,
and `expires_at`, which a TTL index uses to forget old messages).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from castghl.common.bulk import BulkReads, BulkWrites
from castghl.common.cast.models import Channel
from castghl.common.messages import CastKey, OutboundSms, StatusError
from castghl.common.phone import PhMobile
from castghl.common.usage import USAGE_COLLECTION, USAGE_RETENTION, day_row, usage_day
from castghl.sender.credits import Account
from castghl.sender.optouts import Consent, Suppressed

# Long past any webhook GHL may still retry (72 h; the dedupe must outlive it) and the
# inbound routing window (INBOUND_FALLBACK_DAYS, at most 30).
RETENTION = timedelta(days=30)
# Messages read to find who texted a number: enough to see two locations in any real case.
TEXTED_LOOKUP_LIMIT = 500
PartState = Literal["sending", "accepted"]
# Who may do a step that must happen once: this caller, another one now, or nobody (done).
Claim = Literal["mine", "done", "busy"]
FinalStatus = Literal["delivered", "failed"]
# Receipts read for a message's parts: part number -> (Cast's status, the carrier's code).
Receipts = dict[int, tuple[str, str | None]]


@dataclass(frozen=True)
class Sent:
    """How a part went out: its recipient, channel and Cast account (receipts and inbound
    routing need them)."""

    to: PhMobile
    channel: Channel = "sms"
    key: CastKey = CastKey.DEFAULT

    def fields(self, now: float) -> dict[str, Any]:
        return {"to": self.to.e164, "sent_ts": now, "channel": self.channel,
                "key": self.key.value, "updated_ts": now}


def _receipt_fields(receipts: Receipts, now: float) -> dict[str, Any]:
    return {key: value for n, (status, dlr) in receipts.items()
            for key, value in ((f"parts.{n}.receipt", status), (f"parts.{n}.dlr", dlr),
                               (f"parts.{n}.receipt_ts", now))}


@dataclass
class Part:
    state: PartState
    cast_message_id: str | None = None
    attempts: int = 0
    receipt: str | None = None  # Cast's receipt status, once asked (castghl.common.cast)
    dlr: str | None = None  # the carrier's code (DELIVRD, REJECTD, EXPIRED, UNDELIV, …)


@dataclass
class MessageRecord:
    message_id: str
    location_id: str
    parts: dict[int, Part] = field(default_factory=dict)
    status: FinalStatus | None = None
    error: StatusError | None = None
    status_queued: bool = False
    # How it was sent, so its receipts are asked for where they are (the same channel,
    # the same Cast account), and how far the asking got.
    channel: Channel = "sms"
    key: CastKey = CastKey.DEFAULT
    sent_ts: float = 0.0
    receipt_check: int = 0
    created_ts: float = 0.0  # when its webhook was first seen
    # Set by `decide` only: this call made the decision (usage counts it once).
    decided_now: bool = False

    def accepted(self, n: int) -> bool:
        part = self.parts.get(n)
        return part is not None and part.state == "accepted"

    @property
    def parts_accepted(self) -> int:
        return sum(1 for part in self.parts.values() if part.state == "accepted")

    def maybe_sent(self, n: int) -> bool:
        """A call for part `n` started and never recorded an answer: Cast may have sent it."""
        part = self.parts.get(n)
        return part is not None and part.state == "sending"


class MessageStore(Protocol):
    async def claim(self, sms: OutboundSms) -> MessageRecord: ...
    async def part_sending(self, message_id: str, n: int, sent: Sent) -> None: ...
    async def part_accepted(self, message_id: str, n: int, cast_message_id: str,
                            sent: Sent, *, receipts_at: float | None = None) -> None:
        """Record Cast's acceptance (once: a repeat changes nothing). With `receipts_at`
        (the last part), the first receipt check comes due then."""
        ...
    async def receipts_due_now(self, message_id: str, check: int, now: float) -> None: ...
    async def due_receipts(self, now: float, limit: int) -> list[MessageRecord]: ...
    async def next_receipt_at(self) -> float | None: ...
    async def receipts_read(self, message_id: str, receipts: Receipts, *, check: int,
                            at: float) -> None: ...
    async def decide(self, message_id: str, status: FinalStatus, error: StatusError | None,
                     receipts: Receipts | None = None, *,
                     held: MessageRecord | None = None) -> MessageRecord: ...
    async def status_queued(self, message_id: str) -> None: ...
    async def status_written(self, message_id: str) -> bool: ...
    async def claim_status_write(self, message_id: str, lease: float) -> Claim: ...
    async def release_status_write(self, message_id: str) -> None: ...
    async def mark_status_written(self, message_id: str) -> None: ...
    async def locations_that_texted(self, to: PhMobile, since: float) -> list[str]: ...


def _record(doc: dict[str, Any]) -> MessageRecord:
    parts = {int(n): Part(state=p.get("state", "sending"), cast_message_id=p.get("cast_id"),
                          attempts=int(p.get("attempts", 0)), receipt=p.get("receipt"),
                          dlr=p.get("dlr"))
             for n, p in (doc.get("parts") or {}).items()}
    error = doc.get("error")
    return MessageRecord(
        message_id=doc["_id"],
        location_id=doc.get("location_id", ""),
        parts=parts,
        status=doc.get("status"),
        error=StatusError.model_validate(error) if error else None,
        status_queued=bool(doc.get("status_queued")),
        channel="sim" if doc.get("channel") == "sim" else "sms",
        key=CastKey(doc.get("key") or CastKey.DEFAULT),
        sent_ts=float(doc.get("sent_ts") or 0.0),
        receipt_check=int(doc.get("receipt_check") or 0),
        created_ts=float(doc.get("created_ts") or 0.0),
    )


def _decided(held: MessageRecord, status: FinalStatus, error: StatusError | None,
             receipts: Receipts) -> MessageRecord:
    parts = {n: replace(part) for n, part in held.parts.items()}
    for n, (receipt, dlr) in receipts.items():
        part = parts.setdefault(n, Part("accepted"))
        part.receipt, part.dlr = receipt, dlr
    return replace(held, parts=parts, status=status, error=error, decided_now=True)


class MongoMessageStore:
    """The pipeline's writes go through `BulkWrites`: messages in flight together share
    their round trips, the receipt desk's decisions and status leases as compare-and-sets
    (`update_if`). Reads, and decisions made outside the desk, go alone."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.messages: AsyncCollection[dict[str, Any]] = db["messages"]
        self.bulk = BulkWrites(self.messages)

    async def ensure_indexes(self) -> None:
        await self.messages.create_index("expires_at", expireAfterSeconds=0)
        # Inbound routing: the location that most recently texted a number.
        await self.messages.create_index([("to", ASCENDING), ("sent_ts", DESCENDING)])
        # The receipt desk's work list: open messages by when their next check is due
        # (sparse: a message has the field only while it waits for receipts).
        await self.messages.create_index("receipt_at", sparse=True)
        # The console's "last send" and "last status written" (sender/ops.py).
        await self.messages.create_index([("sent_ts", DESCENDING)])
        await self.messages.create_index([("written_ts", DESCENDING)])

    async def claim(self, sms: OutboundSms) -> MessageRecord:
        """Insert the message if it is new; either way return what is known of it. A new
        message (the common case) costs one round trip, the insert, whose document is the
        record; only a duplicate reads the stored one."""
        now, ts = datetime.now(UTC), time.time()
        fresh: dict[str, Any] = {
            "_id": sms.message_id, "location_id": sms.location_id, "parts": {},
            "status": None, "error": None, "status_queued": False, "status_written": False,
            "status_lease_ts": 0.0, "to": None, "sent_ts": 0.0, "updated_ts": ts,
            "created_ts": ts, "channel": "sms", "key": CastKey.DEFAULT.value,
            "receipt_check": 0, "created_at": now,
            "expires_at": now + RETENTION,
        }
        if await self.bulk.insert(fresh):
            return _record(fresh)
        doc = await self.messages.find_one({"_id": sms.message_id})
        if doc is None:  # expired between the two calls: it is new again
            return await self.claim(sms)
        return _record(doc)

    async def part_sending(self, message_id: str, n: int, sent: Sent) -> None:
        await self.bulk.update(
            {"_id": message_id},
            {"$set": {f"parts.{n}.state": "sending", **sent.fields(time.time())},
             "$inc": {f"parts.{n}.attempts": 1}})

    async def part_accepted(self, message_id: str, n: int, cast_message_id: str,
                            sent: Sent, *, receipts_at: float | None = None) -> None:
        # With idempotency a part has no "sending" state before its call: `$in` with None
        # matches a missing field on MongoDB and on the emulator alike.
        now = time.time()
        due = {"receipt_check": 1, "receipt_at": receipts_at} if receipts_at else {}
        await self.bulk.update(
            {"_id": message_id, f"parts.{n}.state": {"$in": ["sending", None]}},
            {"$set": {f"parts.{n}.state": "accepted", f"parts.{n}.cast_id": cast_message_id,
                      f"parts.{n}.accepted_ts": now, **sent.fields(now), **due}})

    async def receipts_due_now(self, message_id: str, check: int, now: float) -> None:
        """A check of the one-message-per-check scheme (senders before receipts were kept
        in the record) came due: the message's receipts are due now, at that check."""
        await self.bulk.update(
            {"_id": message_id, "status": None, "receipt_at": {"$exists": False}},
            {"$set": {"receipt_check": check, "receipt_at": now}})

    async def due_receipts(self, now: float, limit: int) -> list[MessageRecord]:
        """Messages whose receipt check is due at `now`, the longest waiting first; also
        decided ones whose status was not queued yet (a crash in between)."""
        cursor = self.messages.find({"receipt_at": {"$lte": now}},
                                    sort=[("receipt_at", ASCENDING)], limit=limit)
        return [_record(doc) async for doc in cursor]

    async def next_receipt_at(self) -> float | None:
        """When the next receipt check comes due, if any message waits for one."""
        doc = await self.messages.find_one({"receipt_at": {"$gt": 0}}, {"receipt_at": 1},
                                           sort=[("receipt_at", ASCENDING)])
        return float(doc["receipt_at"]) if doc else None

    async def receipts_read(self, message_id: str, receipts: Receipts, *, check: int,
                            at: float) -> None:
        """A look-up that did not decide: keep what it read, and when check number `check`
        comes due (one write)."""
        await self.bulk.update({"_id": message_id, "status": None}, {"$set": {
            **_receipt_fields(receipts, time.time()), "receipt_check": check,
            "receipt_at": at}})

    async def decide(self, message_id: str, status: FinalStatus, error: StatusError | None,
                     receipts: Receipts | None = None, *,
                     held: MessageRecord | None = None) -> MessageRecord:
        """Record the final status, with the receipts that decided it; the first decision
        wins and is returned. A due check stays due (`receipt_at`) until the status is
        queued (`status_queued`): a crash in between is answered again by the receipt desk.

        `held` is the caller's copy of the undecided record with every part settled (the
        receipt desk's): a decision made here is then answered from it, and the write goes
        with the others asked at the same moment (`BulkWrites.update_if`)."""
        now = time.time()
        undecided = {"_id": message_id, "status": None}
        change = {"$set": {"status": status, "error": error.model_dump() if error else None,
                           "decided_ts": now, "updated_ts": now,
                           **_receipt_fields(receipts or {}, now)}}
        if held is not None:
            if await self.bulk.update_if(undecided, change):
                return _decided(held, status, error, receipts or {})
            doc = None
        else:
            doc = await self.messages.find_one_and_update(undecided, change,
                                                          return_document=ReturnDocument.AFTER)
        decided_now = doc is not None
        if doc is None:
            doc = await self.messages.find_one({"_id": message_id})
        assert doc is not None
        record = _record(doc)
        record.decided_now = decided_now
        return record

    async def status_queued(self, message_id: str) -> None:
        """The decided status is on its way to GHL: no receipt check is left to answer."""
        await self.bulk.update({"_id": message_id}, {"$set": {"status_queued": True},
                                                     "$unset": {"receipt_at": ""}})

    async def status_written(self, message_id: str) -> bool:
        doc = await self.messages.find_one({"_id": message_id}, {"status_written": 1})
        return bool(doc and doc.get("status_written"))

    async def claim_status_write(self, message_id: str, lease: float) -> Claim:
        """Take the right to write the message's status to GHL for `lease` seconds: two
        copies of one status (queued again after a crash) must not both be written.
        `mine` also when the record is gone (it expired): nothing left to coordinate on."""
        now = time.time()
        # No `$or` here: the emulator applies such an update to another document that
        # matches the `$or` alone (docs/architecture.md, "Mongo"). Records from before the
        # lease existed get one, free, on their first claim.
        for _ in range(2):
            if await self.bulk.update_if({"_id": message_id, "status_written": {"$ne": True},
                                          "status_lease_ts": {"$lt": now}},
                                         {"$set": {"status_lease_ts": now + lease}}):
                return "mine"
            added = await self.messages.update_one(
                {"_id": message_id, "status_lease_ts": {"$exists": False}},
                {"$set": {"status_lease_ts": 0.0}})
            if added.modified_count == 0:
                break
        doc = await self.messages.find_one({"_id": message_id}, {"status_written": 1})
        if doc is None:
            return "mine"
        return "done" if doc.get("status_written") else "busy"

    async def release_status_write(self, message_id: str) -> None:
        await self.bulk.update({"_id": message_id, "status_written": {"$ne": True}},
                               {"$set": {"status_lease_ts": 0.0}})

    async def mark_status_written(self, message_id: str) -> None:
        now = time.time()
        await self.bulk.update({"_id": message_id},
                               {"$set": {"status_written": True, "written_ts": now,
                                         "updated_ts": now}})

    async def locations_that_texted(self, to: PhMobile, since: float) -> list[str]:
        """The locations that sent to `to` since `since` (epoch seconds), latest first."""
        # Records written before numbers were stored as E.164 hold the national form;
        # they expire with RETENTION, and until then both forms are looked for.
        forms = [to.e164, to.national]
        cursor = self.messages.find({"to": {"$in": forms}, "sent_ts": {"$gte": since}},
                                    {"location_id": 1}, sort=[("sent_ts", DESCENDING)],
                                    limit=TEXTED_LOOKUP_LIMIT)
        found: dict[str, None] = {}
        async for doc in cursor:
            found.setdefault(str(doc["location_id"]))
        return list(found)

    # Read by the operator's look-ups (sender/ops.py), never by the pipeline.

    async def record_of(self, message_id: str) -> dict[str, Any] | None:
        return await self.messages.find_one({"_id": message_id})

    async def sent_to(self, digits: str, limit: int) -> list[dict[str, Any]]:
        """The latest messages to numbers ending in `digits` (digits only, checked by the
        caller), newest first."""
        cursor = self.messages.find({"to": {"$regex": f"{digits}$"}},
                                    sort=[("sent_ts", DESCENDING)], limit=limit)
        return [doc async for doc in cursor]

    async def latest(self, field: str) -> float | None:
        """The largest value of an epoch-seconds field (`sent_ts`, `written_ts`)."""
        async for doc in self.messages.find({field: {"$gt": 0}}, {field: 1},
                                            sort=[(field, DESCENDING)], limit=1):
            return float(doc[field])
        return None


# Long enough for a contact upsert, a token refresh and the inbound call to finish.
INBOUND_LEASE_SECONDS = 60.0


class InboundStore(Protocol):
    async def claim(self, cast_message_id: str) -> Claim: ...
    async def release(self, cast_message_id: str) -> None: ...
    async def delivered(self, cast_message_id: str, location_id: str,
                        ghl_message_id: str) -> None: ...
    async def contact(self, location_id: str, phone: PhMobile) -> str | None: ...
    async def remember_contact(self, location_id: str, phone: PhMobile,
                               contact_id: str) -> None: ...


class MongoInboundStore:
    """`inbound`: one document per Cast message id — claimed (with a lease) while one
    worker delivers it, then delivered — so copies handled by other replicas at the same
    moment wait, then find it done. `contacts`: the GHL contact of each phone per
    location, so a conversation needs one upsert."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.inbound: AsyncCollection[dict[str, Any]] = db["inbound"]
        self.contacts: AsyncCollection[dict[str, Any]] = db["contacts"]

    async def ensure_indexes(self) -> None:
        await self.inbound.create_index("expires_at", expireAfterSeconds=0)

    async def claim(self, cast_message_id: str) -> Claim:
        now = time.time()
        created = datetime.now(UTC)
        result = await self.inbound.update_one(
            {"_id": cast_message_id},
            {"$setOnInsert": {"state": "claimed", "lease_ts": now + INBOUND_LEASE_SECONDS,
                              "created_at": created, "expires_at": created + RETENTION}},
            upsert=True)
        if result.upserted_id is not None:
            return "mine"
        doc = await self.inbound.find_one({"_id": cast_message_id})
        if doc is None or doc.get("state") == "delivered":
            return "done"
        # A lease left by a worker that died (or released after a failure) is taken over.
        taken = await self.inbound.update_one(
            {"_id": cast_message_id, "state": "claimed", "lease_ts": {"$lt": now}},
            {"$set": {"lease_ts": now + INBOUND_LEASE_SECONDS}})
        return "mine" if taken.modified_count else "busy"

    async def release(self, cast_message_id: str) -> None:
        await self.inbound.update_one({"_id": cast_message_id, "state": "claimed"},
                                      {"$set": {"lease_ts": 0.0}})

    async def delivered(self, cast_message_id: str, location_id: str,
                        ghl_message_id: str) -> None:
        await self.inbound.update_one(
            {"_id": cast_message_id},
            {"$set": {"state": "delivered", "location_id": location_id,
                      "ghl_message_id": ghl_message_id}})

    async def contact(self, location_id: str, phone: PhMobile) -> str | None:
        doc = await self.contacts.find_one({"_id": f"{location_id}:{phone.e164}"})
        return str(doc["contact_id"]) if doc else None

    async def remember_contact(self, location_id: str, phone: PhMobile,
                               contact_id: str) -> None:
        await self.contacts.update_one({"_id": f"{location_id}:{phone.e164}"},
                                       {"$set": {"contact_id": contact_id}}, upsert=True)


class MongoSuppressions:
    """`suppressions`: each number's latest opt-out or opt-in per location, kept for good
    (an opt-out does not expire). The latest change by receiving time wins, whichever
    worker records it last."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.suppressions: AsyncCollection[dict[str, Any]] = db["suppressions"]
        # Every outbound SMS asks before its send: asked together, one find.
        self.consents = BulkReads(self.suppressions)

    async def record(self, location_id: str, phone: PhMobile, consent: Consent, *,
                     at: float, word: str) -> Consent:
        key = f"{location_id}:{phone.e164}"
        newer = {"_id": key, "at": {"$lte": at}}
        change = {"$set": {"state": consent, "at": at, "word": word,
                           "location_id": location_id, "phone": phone.e164}}
        try:
            await self.suppressions.update_one(newer, change, upsert=True)
        except DuplicateKeyError:
            # The document exists: inserted by another writer just now (apply this change
            # if it is the later one), or holding a later change (which then stands).
            await self.suppressions.update_one(newer, change)
        doc = await self.suppressions.find_one({"_id": key})
        return "opted_out" if doc and doc.get("state") == "opted_out" else "opted_in"

    async def opted_out(self, location_id: str, phone: PhMobile) -> bool:
        found = await self.suppressions.find_one(
            {"_id": f"{location_id}:{phone.e164}", "state": "opted_out"}, projection=["_id"])
        return found is not None

    async def why_suppressed(self, location_id: str, phone: PhMobile, *, account: str,
                             sender_id: str | None) -> Suppressed | None:
        keys = [f"{location_id}:{phone.e164}", _cast_key(account, None, phone)]
        if sender_id is not None:
            keys.append(_cast_key(account, sender_id, phone))
        found = {key for key, doc in (await self.consents.get_many(keys)).items()
                 if doc.get("state") == "opted_out"}
        if keys[0] in found:
            return "reply"
        return "cast" if found else None

    async def replace_cast_opt_outs(self, account: str,
                                    numbers: set[tuple[PhMobile, str | None]],
                                    now: float) -> None:
        for phone, sender_id in numbers:
            await self.suppressions.update_one(
                {"_id": _cast_key(account, sender_id, phone)},
                {"$set": {"state": "opted_out", "source": "cast", "account": account,
                          "phone": phone.e164, "sync_ts": now}},
                upsert=True)
        # Whoever Cast no longer lists may be texted again.
        await self.suppressions.update_many(
            {"account": account, "source": "cast", "sync_ts": {"$lt": now}},
            {"$set": {"state": "opted_in"}})


def _cast_key(account: str, sender_id: str | None, phone: PhMobile) -> str:
    return f"cast:{account}:{sender_id or '*'}:{phone.e164}"


class MongoSchedules:
    """`ghl_rate`: each location's GHL call schedule (ghl_rate.py), one integer per
    location, changed only by compare-and-set."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.schedules: AsyncCollection[dict[str, Any]] = db["ghl_rate"]

    async def tat(self, key: str) -> int | None:
        doc = await self.schedules.find_one({"_id": key})
        return int(doc["tat"]) if doc else None

    async def swap(self, key: str, old: int | None, new: int) -> bool:
        if old is None:
            try:
                await self.schedules.insert_one({"_id": key, "tat": new})
            except DuplicateKeyError:
                return False
            return True
        done = await self.schedules.update_one({"_id": key, "tat": old}, {"$set": {"tat": new}})
        return done.modified_count == 1


class MongoAccounts:
    """`cast_accounts`: each Cast account's last balance, by key fingerprint (never the
    key), and when it was last checked — the claim that lets one replica check it."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.accounts: AsyncCollection[dict[str, Any]] = db["cast_accounts"]

    async def claim_check(self, fingerprint: str, every: float, now: float) -> bool:
        taken = await self.accounts.update_one(
            {"_id": fingerprint, "checked_ts": {"$lte": now - every}},
            {"$set": {"checked_ts": now}})
        if taken.modified_count == 1:
            return True
        try:
            await self.accounts.insert_one({"_id": fingerprint, "checked_ts": now,
                                            "label": f"key {fingerprint}", "credits": None,
                                            "sandbox": False})
        except DuplicateKeyError:
            return False  # checked lately, by this replica or another
        return True

    async def record(self, fingerprint: str, *, label: str, credits: float, sandbox: bool,
                     now: float) -> float | None:
        before = await self.accounts.find_one({"_id": fingerprint})
        await self.accounts.update_one(
            {"_id": fingerprint},
            {"$set": {"label": label, "credits": credits, "sandbox": "yes" if sandbox else "no",
                      "balance_ts": now}})
        credits_before = before.get("credits") if before else None
        return float(credits_before) if credits_before is not None else None

    async def accounts_list(self) -> list[Account]:
        return [Account(fingerprint=str(doc["_id"]), label=str(doc.get("label") or ""),
                        credits=(float(doc["credits"]) if doc.get("credits") is not None
                                 else None),
                        sandbox=doc.get("sandbox") == "yes",
                        balance_ts=float(doc["balance_ts"]) if doc.get("balance_ts") else None)
                async for doc in self.accounts.find({})]


class UsageLog(Protocol):
    async def add(self, location_id: str, at: float, counts: dict[str, int]) -> None: ...


class MongoUsage:
    """`usage`: parts sent and messages delivered or failed, per location and Philippine
    day, kept USAGE_RETENTION (message records expire after RETENTION): what clients are
    billed by. Read through the operator API (sender/ops.py) by the OAuth service's admin
    API and console (`castghl.common.usage`)."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.usage: AsyncCollection[dict[str, Any]] = db[USAGE_COLLECTION]
        self.bulk = BulkWrites(self.usage)

    async def ensure_indexes(self) -> None:
        await self.usage.create_index("expires_at", expireAfterSeconds=0)
        await self.usage.create_index([("location_id", ASCENDING), ("day", ASCENDING)])

    async def add(self, location_id: str, at: float, counts: dict[str, int]) -> None:
        day = usage_day(at)
        await self.bulk.update(
            {"_id": f"{location_id}:{day}"},
            {"$inc": counts,
             "$setOnInsert": {"location_id": location_id, "day": day,
                              "expires_at": datetime.fromisoformat(day).replace(tzinfo=UTC)
                              + USAGE_RETENTION}},
            upsert=True)

    async def days(self, location_id: str | None, first: str, last: str
                   ) -> list[dict[str, Any]]:
        """Usage rows from day `first` to `last`, of one location or of all, each with its
        location; by location, then day."""
        query: dict[str, Any] = {"day": {"$gte": first, "$lte": last}}
        if location_id is not None:
            query["location_id"] = location_id
        cursor = self.usage.find(query).sort([("location_id", ASCENDING), ("day", ASCENDING)])
        return [{"location_id": doc["location_id"], **day_row(doc)} async for doc in cursor]
