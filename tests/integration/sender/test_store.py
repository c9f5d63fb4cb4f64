"""The sender's stores, one table of behaviour run twice: against the in-memory fakes the
unit tests use and against the Mongo adapters on a real Mongo wire server — so the fakes
cannot drift from what production does (MongoDB's semantics are the reference).

Every test takes one of the stores (`messages`, `inbound`, …), each parametrized over both
implementations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from castghl.common.messages import CastKey, OutboundSms, StatusError
from castghl.common.phone import PhMobile
from castghl.sender import store as store_module
from castghl.sender.credits import AccountStore
from castghl.sender.ghl_rate import Schedules
from castghl.sender.optouts import Suppressions
from castghl.sender.store import (
    InboundStore,
    MessageStore,
    MongoAccounts,
    MongoInboundStore,
    MongoMessageStore,
    MongoSchedules,
    MongoSuppressions,
    MongoUsage,
    Part,
    Sent,
)
from tests.unit.sender.fakes import (
    MemoryAccounts,
    MemoryInboundStore,
    MemoryMessageStore,
    MemorySchedules,
    MemorySuppressions,
    MemoryUsage,
)

IMPLEMENTATIONS = ["memory", "mongo"]
# Only ends a run gone wrong: generous, so a slow machine never reaches it.
DEADLINE_SECONDS = 120.0
FAILED = StatusError(code="cast_insufficient_credits",
                     message="Cast SMS account is out of credit")

SENT = Sent(PhMobile.parse("09171234567"))


def sms(message_id: str, location_id: str = "loc1") -> OutboundSms:
    return OutboundSms(message_id=message_id, location_id=location_id, phone="+639171234567",
                       message="Hello")


async def _database(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    uri: str = request.getfixturevalue("mongo_uri")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    try:
        yield client.get_default_database()
    finally:
        await client.close()


@pytest.fixture(params=IMPLEMENTATIONS)
async def messages(request: pytest.FixtureRequest) -> AsyncIterator[MessageStore]:
    if request.param == "memory":
        yield MemoryMessageStore()
        return
    async for db in _database(request):
        store = MongoMessageStore(db)
        await store.ensure_indexes()
        yield store


@pytest.fixture(params=IMPLEMENTATIONS)
async def inbound(request: pytest.FixtureRequest) -> AsyncIterator[InboundStore]:
    if request.param == "memory":
        yield MemoryInboundStore()
        return
    async for db in _database(request):
        store = MongoInboundStore(db)
        await store.ensure_indexes()
        yield store


@pytest.fixture(params=IMPLEMENTATIONS)
async def suppressions(request: pytest.FixtureRequest) -> AsyncIterator[Suppressions]:
    if request.param == "memory":
        yield MemorySuppressions()
        return
    async for db in _database(request):
        yield MongoSuppressions(db)


@pytest.fixture(params=IMPLEMENTATIONS)
async def schedules(request: pytest.FixtureRequest) -> AsyncIterator[Schedules]:
    if request.param == "memory":
        yield MemorySchedules()
        return
    async for db in _database(request):
        yield MongoSchedules(db)


@pytest.fixture(params=IMPLEMENTATIONS)
async def accounts(request: pytest.FixtureRequest) -> AsyncIterator[AccountStore]:
    if request.param == "memory":
        yield MemoryAccounts()
        return
    async for db in _database(request):
        yield MongoAccounts(db)


# --- messages: claim ------------------------------------------------------------------------

async def test_the_first_claim_of_a_message_knows_nothing_yet(
        messages: MessageStore) -> None:
    record = await messages.claim(sms("m1", "loc1"))

    assert (record.message_id, record.location_id) == ("m1", "loc1")
    assert record.parts == {}
    assert (record.status, record.error) == (None, None)
    assert not record.status_queued
    assert not await messages.status_written("m1")


async def test_a_second_claim_of_the_same_message_sees_the_first(
        messages: MessageStore) -> None:
    await messages.claim(sms("m1", "loc1"))

    await messages.part_sending("m1", 0, Sent(PhMobile.parse("+639171234567")))
    again = await messages.claim(sms("m1", "loc2"))

    assert again.location_id == "loc1"  # the first claim's; a copy cannot move it
    assert again.maybe_sent(0)
    assert (await messages.claim(sms("m2", "loc1"))).parts == {}  # another message


async def test_claims_of_one_message_at_the_same_moment_make_one_record(
        messages: MessageStore) -> None:
    claims = await asyncio.gather(*(messages.claim(sms("m1", f"loc{n}")) for n in range(5)))

    # One of them created it; all see that one (its location), none a second record.
    assert len({c.location_id for c in claims}) == 1


async def test_a_claim_returns_how_far_each_part_got(messages: MessageStore) -> None:
    await messages.claim(sms("m1"))
    await messages.part_sending("m1", 0, Sent(PhMobile.parse("09171234567")))
    await messages.part_accepted("m1", 0, "CAST-A", SENT)
    await messages.part_sending("m1", 1, Sent(PhMobile.parse("09171234567")))

    record = await messages.claim(sms("m1"))

    assert record.parts == {0: Part("accepted", "CAST-A", 1), 1: Part("sending", None, 1)}
    assert record.accepted(0)
    assert not record.maybe_sent(0)
    assert record.maybe_sent(1)
    assert not record.accepted(1)
    assert not record.maybe_sent(2)
    assert not record.accepted(2)


async def test_sending_a_part_again_counts_the_attempt_and_keeps_it_maybe_sent(
        messages: MessageStore) -> None:
    await messages.claim(sms("m1"))
    for _ in range(3):
        await messages.part_sending("m1", 0, Sent(PhMobile.parse("09171234567")))

    record = await messages.claim(sms("m1"))

    assert record.parts == {0: Part("sending", None, 3)}
    await messages.part_accepted("m1", 0, "CAST-B", SENT)
    assert (await messages.claim(sms("m1"))).parts == {0: Part("accepted", "CAST-B", 3)}


async def test_a_record_is_a_snapshot_not_a_view(messages: MessageStore) -> None:
    first = await messages.claim(sms("m1"))
    first.parts[0] = Part("accepted", "mine", 9)
    first.status = "delivered"

    again = await messages.claim(sms("m1"))

    assert again.parts == {}
    assert again.status is None


async def test_steps_on_an_unknown_message_change_nothing(messages: MessageStore) -> None:
    # A status replayed after the record expired (RETENTION), say.
    await messages.part_sending("gone", 0, Sent(PhMobile.parse("09171234567")))
    await messages.part_accepted("gone", 0, "CAST-X", SENT)
    await messages.status_queued("gone")
    await messages.mark_status_written("gone")

    assert not await messages.status_written("gone")
    assert await messages.locations_that_texted(PhMobile.parse("09171234567"), 0.0) == []
    record = await messages.claim(sms("gone"))
    assert record.parts == {}
    assert not record.status_queued


# --- messages: decide and the status flags --------------------------------------------------

async def test_the_first_decision_wins(messages: MessageStore) -> None:
    await messages.claim(sms("m1"))

    first = await messages.decide("m1", "failed", FAILED)
    second = await messages.decide("m1", "delivered", None)

    assert (first.status, first.error) == ("failed", FAILED)
    assert (second.status, second.error) == ("failed", FAILED)
    assert (second.message_id, second.location_id) == ("m1", "loc1")
    record = await messages.claim(sms("m1"))
    assert (record.status, record.error) == ("failed", FAILED)


async def test_decisions_at_the_same_moment_agree_on_one(messages: MessageStore) -> None:
    await messages.claim(sms("m1"))

    decided = await asyncio.gather(messages.decide("m1", "delivered", None),
                                   messages.decide("m1", "failed", FAILED))

    assert {(r.status, r.error) for r in decided} in (
        {("delivered", None)}, {("failed", FAILED)})


async def test_decisions_on_a_held_record_agree_on_one_and_answer_it(
        messages: MessageStore) -> None:
    # The receipt desk's way: it holds the record it read, every part settled.
    await messages.claim(sms("m1"))
    await messages.part_accepted("m1", 0, "CAST-A", SENT, receipts_at=100.0)
    [held] = await messages.due_receipts(100.0, 10)

    decided = await asyncio.gather(*(
        messages.decide("m1", status, error, {0: (status, dlr)}, held=held)
        for status, error, dlr in [("delivered", None, "DELIVRD"),
                                   ("failed", FAILED, "UNDELIV")] * 3))

    [first] = [record for record in decided if record.decided_now]
    assert {(r.status, r.error, r.parts[0].dlr) for r in decided} == {
        (first.status, first.error, first.parts[0].dlr)}
    assert first.parts[0].cast_message_id == "CAST-A"
    assert first.location_id == "loc1"
    stored = await messages.claim(sms("m1"))
    assert (stored.status, stored.parts[0].dlr) == (first.status, first.parts[0].dlr)
    assert held.status is None  # the caller's copy is left as it was


async def test_a_decision_keeps_the_parts(messages: MessageStore) -> None:
    await messages.claim(sms("m1"))
    await messages.part_sending("m1", 0, Sent(PhMobile.parse("09171234567")))
    await messages.part_accepted("m1", 0, "CAST-A", SENT)

    decided = await messages.decide("m1", "delivered", None)

    assert decided.status == "delivered"
    assert decided.error is None
    assert decided.parts == {0: Part("accepted", "CAST-A", 1)}


async def test_status_queued_is_remembered(messages: MessageStore) -> None:
    await messages.claim(sms("m1"))
    await messages.decide("m1", "delivered", None)
    assert not (await messages.claim(sms("m1"))).status_queued

    await messages.status_queued("m1")

    assert (await messages.claim(sms("m1"))).status_queued
    assert (await messages.decide("m1", "failed", FAILED)).status_queued


async def test_status_written_is_false_until_marked(messages: MessageStore) -> None:
    await messages.claim(sms("m1"))
    await messages.claim(sms("m2"))
    assert not await messages.status_written("m1")

    await messages.mark_status_written("m1")
    await messages.mark_status_written("m1")  # a duplicate status is harmless

    assert await messages.status_written("m1")
    assert not await messages.status_written("m2")
    assert not await messages.status_written("never-seen")


# --- messages: receipts ---------------------------------------------------------------------

async def test_a_send_remembers_where_its_receipts_are_asked_for(
        messages: MessageStore) -> None:
    await messages.claim(sms("m1"))
    assert (await messages.claim(sms("m1"))).key is CastKey.DEFAULT

    await messages.part_sending("m1", 0, Sent(PhMobile.parse("09171234567"), channel="sim",
                                              key=CastKey.OWN))

    record = await messages.claim(sms("m1"))
    assert (record.channel, record.key) == ("sim", CastKey.OWN)
    assert record.sent_ts > 0


async def test_the_last_part_accepted_schedules_the_first_check(
        messages: MessageStore) -> None:
    await messages.claim(sms("m1"))
    await messages.part_accepted("m1", 0, "CAST-A", SENT)
    assert await messages.next_receipt_at() is None  # more parts to come

    await messages.part_accepted("m1", 1, "CAST-B", SENT, receipts_at=1_000.0)
    assert await messages.next_receipt_at() == 1_000.0
    assert await messages.due_receipts(999.0, 10) == []
    [due] = await messages.due_receipts(1_000.0, 10)
    assert (due.message_id, due.receipt_check) == ("m1", 1)


async def test_due_receipts_come_longest_waiting_first_and_bounded(
        messages: MessageStore) -> None:
    for n in range(5):
        await messages.claim(sms(f"m{n}"))
        await messages.part_accepted(f"m{n}", 0, f"CAST{n}", SENT, receipts_at=100.0 - n)

    assert [r.message_id for r in await messages.due_receipts(100.0, 3)] == ["m4", "m3", "m2"]
    await messages.receipts_read("m4", {}, check=2, at=130.0)
    await messages.receipts_read("m4", {}, check=2, at=130.0)  # harmless twice
    assert [r.message_id for r in await messages.due_receipts(100.0, 10)] == [
        "m3", "m2", "m1", "m0"]
    later = (await messages.due_receipts(130.0, 10))[-1]
    assert (later.message_id, later.receipt_check) == ("m4", 2)
    assert await messages.next_receipt_at() == 97.0


async def test_a_check_of_an_older_sender_makes_only_an_open_unscheduled_message_due(
        messages: MessageStore) -> None:
    for message_id in ("m1", "m2", "m3"):
        await messages.claim(sms(message_id))
        await messages.part_accepted(message_id, 0, "CAST-A", SENT)
    await messages.part_accepted("m2", 0, "CAST-A", SENT)
    await messages.receipts_read("m2", {}, check=2, at=500.0)  # already scheduled
    await messages.decide("m3", "failed", FAILED)

    for message_id in ("m1", "m2", "m3", "never-seen"):
        await messages.receipts_due_now(message_id, 3, 100.0)

    due = await messages.due_receipts(100.0, 10)
    assert [(r.message_id, r.receipt_check) for r in due] == [("m1", 3)]
    assert await messages.next_receipt_at() == 100.0


async def test_a_decided_message_is_not_read_again(messages: MessageStore) -> None:
    await messages.claim(sms("m1"))
    await messages.decide("m1", "failed", FAILED)
    await messages.receipts_read("m1", {0: ("delivered", "DELIVRD")}, check=2, at=1.0)

    assert await messages.due_receipts(2.0, 10) == []
    assert (await messages.claim(sms("m1"))).parts == {}


async def test_receipts_are_kept_with_their_parts_read_or_deciding(
        messages: MessageStore) -> None:
    for message_id in ("m1", "m2"):
        await messages.claim(sms(message_id))
        for n, cast_id in enumerate(("CAST-A", "CAST-B")):
            await messages.part_accepted(message_id, n, cast_id, SENT,  # idempotent send
                                         receipts_at=10.0 if n == 1 else None)

    await messages.receipts_read("m1", {1: ("undelivered", "REJECTD")}, check=2, at=40.0)
    await messages.receipts_read("m1", {}, check=2, at=40.0)
    await messages.receipts_read("never-seen", {0: ("delivered", "DELIVRD")}, check=2,
                                 at=40.0)
    decided = await messages.decide("m2", "delivered", None,
                                    {0: ("delivered", "DELIVRD"), 1: ("delivered", None)})

    record = await messages.claim(sms("m1"))
    assert record.parts == {0: Part("accepted", "CAST-A"),
                            1: Part("accepted", "CAST-B", 0, "undelivered", "REJECTD")}
    assert decided.parts_accepted == 2
    assert decided.parts == {0: Part("accepted", "CAST-A", 0, "delivered", "DELIVRD"),
                             1: Part("accepted", "CAST-B", 0, "delivered", None)}
    # A decision leaves its check due until the status is queued (a crash in between is
    # answered again); a read that did not decide moves it on.
    assert [r.message_id for r in await messages.due_receipts(39.0, 10)] == ["m2"]
    await messages.status_queued("m2")
    assert [r.message_id for r in await messages.due_receipts(40.0, 10)] == ["m1"]
    assert (await messages.claim(sms("never-seen"))).parts == {}


async def test_one_writer_at_a_time_holds_a_status(messages: MessageStore) -> None:
    await messages.claim(sms("m1"))

    assert await messages.claim_status_write("m1", 60) == "mine"
    assert await messages.claim_status_write("m1", 60) == "busy"
    await messages.release_status_write("m1")  # that write failed
    assert await messages.claim_status_write("m1", 60) == "mine"
    await messages.mark_status_written("m1")
    assert await messages.claim_status_write("m1", 60) == "done"
    await messages.release_status_write("m1")  # too late: written stays written
    assert await messages.claim_status_write("m1", 60) == "done"


async def test_a_status_lease_is_taken_and_given_back_for_its_own_message_only(
        messages: MessageStore) -> None:
    for message_id in ("m1", "m2", "m3"):
        await messages.claim(sms(message_id))
    assert await messages.claim_status_write("m1", 60) == "mine"
    await messages.release_status_write("m1")

    assert await messages.claim_status_write("m2", 60) == "mine"
    assert await messages.claim_status_write("m2", 60) == "busy"
    assert await messages.claim_status_write("m1", 60) == "mine"  # m2's lease is m2's
    assert await messages.claim_status_write("m3", 60) == "mine"


async def test_a_writer_that_died_holds_a_status_only_for_its_lease(
        messages: MessageStore) -> None:
    await messages.claim(sms("m1"))
    assert await messages.claim_status_write("m1", 0.2) == "mine"
    await asyncio.sleep(0.3)  # the lease's own length: what this test is about
    assert await messages.claim_status_write("m1", 60) == "mine"


async def test_concurrent_writers_of_one_status_get_one_lease(messages: MessageStore) -> None:
    await messages.claim(sms("m1"))
    claims = await asyncio.gather(*(messages.claim_status_write("m1", 60) for _ in range(5)))
    assert sorted(claims) == ["busy"] * 4 + ["mine"]


async def test_a_status_whose_record_expired_may_be_written(messages: MessageStore) -> None:
    assert await messages.claim_status_write("gone", 60) == "mine"


# --- messages: who texted a number ----------------------------------------------------------

async def texted(messages: MessageStore, message_id: str, location_id: str, to: str,
                 parts: int = 1) -> None:
    await messages.claim(sms(message_id, location_id))
    for n in range(parts):
        await messages.part_sending(message_id, n, Sent(to))


def a_moment_passes() -> float:
    """A cut between what was sent before and what is sent after, a millisecond clear of
    both: the stores stamp sends with the wall clock, and the MongoDB-wire emulator keeps
    only 15 significant digits of a double (about 10 µs of an epoch time)."""
    cut = time.time() + 0.001
    while time.time() < cut + 0.001:
        pass  # the wall clock passing a point: the condition itself, not a guessed wait
    return cut


async def test_locations_that_texted_are_latest_first_distinct_and_recent(
        messages: MessageStore) -> None:
    x, y = PhMobile.parse("09171234567"), PhMobile.parse("09181234567")
    await texted(messages, "m0", "old-loc", x)
    since = a_moment_passes()
    await texted(messages, "m1", "loc-a", x)
    await texted(messages, "m2", "loc-b", x)
    await texted(messages, "m3", "loc-a", y)
    await texted(messages, "m4", "loc-b", x)

    assert await messages.locations_that_texted(x, since) == ["loc-b", "loc-a"]
    assert await messages.locations_that_texted(x, 0.0) == ["loc-b", "loc-a", "old-loc"]
    assert await messages.locations_that_texted(y, since) == ["loc-a"]
    assert await messages.locations_that_texted(PhMobile.parse("09190000000"), 0.0) == []

    await texted(messages, "m5", "loc-a", x)
    assert await messages.locations_that_texted(x, since) == ["loc-a", "loc-b"]


async def test_a_message_counts_from_its_latest_part(messages: MessageStore) -> None:
    x = PhMobile.parse("09171234567")
    await texted(messages, "m1", "loc-a", x)
    await texted(messages, "m2", "loc-b", x)
    since = a_moment_passes()
    await messages.part_sending("m1", 1, Sent(x))  # loc-a's long message, part 2, just now

    assert await messages.locations_that_texted(x, since) == ["loc-a"]


async def test_a_claimed_message_that_sent_nothing_texted_nobody(
        messages: MessageStore) -> None:
    await messages.claim(sms("m1", "loc-a"))

    assert await messages.locations_that_texted(PhMobile.parse("09171234567"), 0.0) == []


# --- inbound: one delivery per Cast message id ----------------------------------------------

async def test_a_reply_is_claimed_once_while_it_is_being_delivered(
        inbound: InboundStore) -> None:
    assert await inbound.claim("CASTIN1") == "mine"
    assert await inbound.claim("CASTIN1") == "busy"
    assert await inbound.claim("CASTIN2") == "mine"


async def test_claims_of_one_reply_at_the_same_moment_make_one_owner(
        inbound: InboundStore) -> None:
    claims = await asyncio.gather(*(inbound.claim("CASTIN1") for _ in range(5)))

    assert sorted(claims) == ["busy", "busy", "busy", "busy", "mine"]


async def test_a_delivered_reply_is_done_for_every_later_copy(inbound: InboundStore) -> None:
    assert await inbound.claim("CASTIN1") == "mine"
    await inbound.delivered("CASTIN1", "loc1", "ghl-msg-1")

    assert await inbound.claim("CASTIN1") == "done"
    await inbound.release("CASTIN1")  # a late release cannot reopen it
    assert await inbound.claim("CASTIN1") == "done"


async def test_a_released_claim_is_taken_over_by_the_next_copy(inbound: InboundStore) -> None:
    assert await inbound.claim("CASTIN1") == "mine"
    await inbound.release("CASTIN1")  # delivery failed: a retry may try again

    assert await inbound.claim("CASTIN1") == "mine"
    assert await inbound.claim("CASTIN1") == "busy"
    await inbound.delivered("CASTIN1", "loc1", "ghl-msg-1")
    assert await inbound.claim("CASTIN1") == "done"


async def test_a_claim_whose_worker_died_is_taken_over_when_its_lease_runs_out(
        inbound: InboundStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "INBOUND_LEASE_SECONDS", 0.5)
    assert await inbound.claim("CASTIN1") == "mine"  # ... and that worker dies

    seen: list[str] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not seen or seen[-1] != "mine":
        assert time.monotonic() < deadline, "the lease was never taken over"
        seen.append(await inbound.claim("CASTIN1"))
        await asyncio.sleep(0.02)  # a poll interval: the loop ends on the takeover

    assert set(seen[:-1]) <= {"busy"}


# --- inbound: contacts ----------------------------------------------------------------------

async def test_a_contact_is_remembered_per_location_and_phone(inbound: InboundStore) -> None:
    phone = PhMobile.parse("+639171234567")
    assert await inbound.contact("loc1", phone) is None

    await inbound.remember_contact("loc1", phone, "contact-1")

    assert await inbound.contact("loc1", phone) == "contact-1"
    assert await inbound.contact("loc2", phone) is None
    assert await inbound.contact("loc1", PhMobile.parse("+639181234567")) is None


async def test_a_contact_remembered_again_replaces_the_old_one(inbound: InboundStore) -> None:
    # GHL merged or deleted the cached contact; the upsert found another.
    await inbound.remember_contact("loc1", PhMobile.parse("+639171234567"), "contact-1")
    await inbound.remember_contact("loc1", PhMobile.parse("+639171234567"), "contact-2")

    assert await inbound.contact("loc1", PhMobile.parse("+639171234567")) == "contact-2"


# --- suppressions ---------------------------------------------------------------------------

PERSON = PhMobile.parse("+639171234567")


async def test_an_opt_out_holds_for_its_location_and_number_only(
        suppressions: Suppressions) -> None:
    assert not await suppressions.opted_out("loc1", PERSON)
    assert await suppressions.record("loc1", PERSON, "opted_out", at=10.0,
                                     word="STOP") == "opted_out"
    assert await suppressions.opted_out("loc1", PERSON)
    assert not await suppressions.opted_out("loc2", PERSON)
    assert not await suppressions.opted_out("loc1", PhMobile.parse("+639181234567"))


async def test_the_latest_change_by_time_stands_whatever_the_order(
        suppressions: Suppressions) -> None:
    await suppressions.record("loc1", PERSON, "opted_in", at=20.0, word="START")
    # An older STOP recorded later changes nothing, and says what is in force.
    assert await suppressions.record("loc1", PERSON, "opted_out", at=10.0,
                                     word="STOP") == "opted_in"
    assert not await suppressions.opted_out("loc1", PERSON)
    assert await suppressions.record("loc1", PERSON, "opted_out", at=30.0,
                                     word="STOP") == "opted_out"
    assert await suppressions.opted_out("loc1", PERSON)


async def test_changes_at_the_same_moment_agree_on_one(suppressions: Suppressions) -> None:
    answers = await asyncio.gather(*(
        suppressions.record("loc1", PERSON, "opted_out" if n % 2 else "opted_in",
                            at=float(n), word="x") for n in range(10)))
    assert await suppressions.opted_out("loc1", PERSON)  # n = 9 is the latest
    assert answers[9] == "opted_out"


# --- GHL call schedules ---------------------------------------------------------------------

TAT = 1_800_000_000_000_000  # microseconds: past 2^53, so never a float on the way


async def test_a_schedule_is_set_once_from_nothing(schedules: Schedules) -> None:
    assert await schedules.tat("loc1") is None
    assert await schedules.swap("loc1", None, TAT)
    assert not await schedules.swap("loc1", None, TAT + 5)
    assert await schedules.tat("loc1") == TAT
    assert await schedules.tat("loc2") is None


async def test_a_schedule_moves_only_from_the_value_read(schedules: Schedules) -> None:
    await schedules.swap("loc1", None, TAT)
    assert await schedules.swap("loc1", TAT, TAT + 125_000)
    assert not await schedules.swap("loc1", TAT, TAT + 250_000)  # stale read
    assert await schedules.tat("loc1") == TAT + 125_000


async def test_swaps_at_the_same_moment_let_one_through(schedules: Schedules) -> None:
    await schedules.swap("loc1", None, TAT)
    won = await asyncio.gather(*(schedules.swap("loc1", TAT, TAT + n) for n in range(1, 9)))
    assert sum(won) == 1
    assert await schedules.tat("loc1") == TAT + won.index(True) + 1


# --- Cast accounts ----------------------------------------------------------------------------

async def test_an_account_is_checked_once_per_period_whoever_asks(
        accounts: AccountStore) -> None:
    assert await accounts.claim_check("fp1", 300, now=1000.0)
    assert not await accounts.claim_check("fp1", 300, now=1000.0)
    assert not await accounts.claim_check("fp1", 300, now=1299.0)
    assert await accounts.claim_check("fp2", 300, now=1299.0)
    assert await accounts.claim_check("fp1", 300, now=1300.0)
    won = await asyncio.gather(*(accounts.claim_check("fp3", 300, now=2000.0)
                                 for _ in range(5)))
    assert sum(won) == 1


async def test_a_balance_is_recorded_and_the_one_before_returned(
        accounts: AccountStore) -> None:
    await accounts.claim_check("fp1", 300, now=1000.0)
    assert await accounts.record("fp1", label="Main (fp1)", credits=800, sandbox=True,
                                 now=1000.0) is None
    assert await accounts.record("fp1", label="Main (fp1)", credits=450, sandbox=True,
                                 now=1300.0) == 800
    [account] = await accounts.accounts_list()
    assert (account.fingerprint, account.label, account.credits, account.sandbox) == (
        "fp1", "Main (fp1)", 450, True)


# --- counted once -------------------------------------------------------------------------------

async def test_a_part_is_accepted_and_a_message_decided_once_for_usage(
        messages: MessageStore) -> None:
    await messages.claim(sms("m1"))
    await messages.part_sending("m1", 0, Sent(PhMobile.parse("+639171234567")))
    await messages.part_accepted("m1", 0, "CAST-A", SENT)
    await messages.part_accepted("m1", 0, "CAST-B", SENT)  # a replay changes nothing
    assert (await messages.claim(sms("m1"))).parts[0].cast_message_id == "CAST-A"
    assert (await messages.decide("m1", "delivered", None)).decided_now
    assert not (await messages.decide("m1", "failed", FAILED)).decided_now


async def test_usage_adds_up_per_location_and_philippine_day(mongo_uri: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        usage = MongoUsage(client.get_default_database())
        await usage.ensure_indexes()
        memory = MemoryUsage()
        # 2026-11-30 16:30 UTC is already 1 December in Manila.
        late = 1_796_056_200.0
        for log in (usage, memory):
            await log.add("loc1", late, {"parts_sent": 2})
            await log.add("loc1", late + 60, {"parts_sent": 1, "delivered": 1})
            await log.add("loc2", late, {"failed": 1})
            await log.add("loc1", late - 3600, {"parts_sent": 1})  # 30 November, Manila
        docs = {doc["_id"]: {k: doc.get(k) for k in ("parts_sent", "delivered", "failed")}
                async for doc in usage.usage.find({})}
        assert docs == {
            "loc1:2026-12-01": {"parts_sent": 3, "delivered": 1, "failed": None},
            "loc1:2026-11-30": {"parts_sent": 1, "delivered": None, "failed": None},
            "loc2:2026-12-01": {"parts_sent": None, "delivered": None, "failed": 1},
        }
        assert memory.days[("loc1", "2026-12-01")] == {"parts_sent": 3, "delivered": 1}
    finally:
        await client.close()


async def test_casts_opt_outs_hold_per_account_and_sender_id_until_cast_drops_them(
        suppressions: Suppressions) -> None:
    other = PhMobile.parse("+639181234567")
    await suppressions.replace_cast_opt_outs("acct1", {(PERSON, None), (other, "PROMO")},
                                             now=10.0)
    assert await suppressions.why_suppressed("loc1", PERSON, account="acct1",
                                             sender_id="CASTDEMO") == "cast"
    assert await suppressions.why_suppressed("loc1", PERSON, account="acct2",
                                             sender_id="CASTDEMO") is None
    assert await suppressions.why_suppressed("loc1", other, account="acct1",
                                             sender_id="PROMO") == "cast"
    assert await suppressions.why_suppressed("loc1", other, account="acct1",
                                             sender_id="CASTDEMO") is None
    # A reply of STOP to the location is the reason given first.
    await suppressions.record("loc1", PERSON, "opted_out", at=1.0, word="STOP")
    assert await suppressions.why_suppressed("loc1", PERSON, account="acct1",
                                             sender_id=None) == "reply"
    await suppressions.replace_cast_opt_outs("acct1", {(other, "PROMO")}, now=20.0)
    assert await suppressions.why_suppressed("loc2", PERSON, account="acct1",
                                             sender_id=None) is None
    assert await suppressions.why_suppressed("loc2", other, account="acct1",
                                             sender_id="PROMO") == "cast"
