"""Receipts decide `delivered` (invariant 9): the pipeline and the receipt desk on fakes,
with the carrier's answers scripted per Cast message id."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Literal

import pytest

from castghl.common.cast.models import CastReceipt
from castghl.common.errors import RateLimited, RetryableError
from castghl.common.messages import ReceiptCheck
from castghl.sender.receipts import (
    CARRIER_REASONS,
    FEW_PARTS,
    SUBMIT_FAILED,
    ReceiptPolicy,
)

from .fakes import FakeTicks
from .harness import DEFAULT_KEY, Harness, sms

THREE_CHECKS = ReceiptPolicy(delays=(10, 30, 60), unknown_as="delivered",
                             default_api_key=DEFAULT_KEY)
TWO_PARTS = " ".join(f"word{i:03d}" for i in range(75))  # 599 characters


def receipt(cast_id: str, status: str, dlr: str | None = None) -> CastReceipt:
    return CastReceipt(message_id=cast_id, status=status, dlr_status=dlr)


async def test_nothing_is_reported_until_the_carrier_answers_then_delivered() -> None:
    h = Harness()
    h.cast.receipts["CAST1"] = receipt("CAST1", "sent")
    await h.process(sms(), attempt=1)

    assert h.statuses.queued == []  # accepted is not delivered
    assert await h.next_check() == (2, 30)

    h.cast.receipts["CAST1"] = receipt("CAST1", "delivered", "DELIVRD")
    await h.checks_come_due()
    assert h.status() == ("delivered", None, None)
    # Decided and queued: nothing is awaited any more, and a round asks nothing.
    assert await h.next_check() is None
    await h.checks_come_due()
    assert h.cast.reads == ["status:CAST1", "status:CAST1"]


async def test_the_first_check_is_due_the_first_delay_after_the_send() -> None:
    h = Harness(receipts=THREE_CHECKS)
    acquire = h.lane.acquire

    async def slow_lane(*args: object, **kwargs: object) -> None:
        h.clock.now += 5  # the message waited in the lane behind other sends
        await acquire(*args, **kwargs)  # type: ignore[arg-type]

    h.lane.acquire = slow_lane  # type: ignore[method-assign]
    await h.settled.process(sms(), attempt=1)
    assert await h.next_check() == (1, 10)
    h.clock.now += 9.9
    await h.desk.round()
    assert h.cast.reads == []  # not yet


@pytest.mark.parametrize(("status", "dlr", "reason"), [
    ("undelivered", "REJECTD", CARRIER_REASONS["REJECTD"]),
    ("undelivered", "EXPIRED", CARRIER_REASONS["EXPIRED"]),
    ("undelivered", "UNDELIV", CARRIER_REASONS["UNDELIV"]),
    ("undelivered", None, CARRIER_REASONS["UNDELIV"]),
    ("failed", None, SUBMIT_FAILED),
], ids=["rejected", "expired", "undeliverable", "no-code", "submit-failed"])
async def test_a_carrier_refusal_fails_with_words_a_ghl_user_understands(
        status: str, dlr: str | None, reason: tuple[str, str]) -> None:
    h = Harness()
    h.cast.receipts["CAST1"] = receipt("CAST1", status, dlr)
    await h.process(sms(), attempt=1)
    assert h.status() == ("failed", *reason)


def test_the_reasons_say_what_the_issue_promised() -> None:
    assert CARRIER_REASONS["REJECTD"][1].endswith(
        "the carrier rejected this message; the sender ID may not be registered with this "
        "network")
    assert CARRIER_REASONS["EXPIRED"][1].endswith(
        "the phone was unreachable until the message expired")
    assert CARRIER_REASONS["UNDELIV"][1].endswith("the carrier could not deliver it")


async def test_a_two_part_message_with_one_part_rejected_fails() -> None:
    h = Harness()
    h.cast.receipts["CAST2"] = receipt("CAST2", "undelivered", "REJECTD")
    await h.process(sms(message=TWO_PARTS), attempt=1)
    assert len(h.cast.sent) == 2
    assert h.status() == ("failed", *CARRIER_REASONS["REJECTD"])


async def test_a_two_part_message_waits_for_both_receipts() -> None:
    h = Harness()
    h.cast.receipts["CAST2"] = receipt("CAST2", "pending")
    await h.process(sms(message=TWO_PARTS), attempt=1)
    assert h.statuses.queued == []
    del h.cast.receipts["CAST2"]
    await h.checks_come_due()
    assert h.status() == ("delivered", None, None)
    # The first part's receipt was final: it is not asked for again.
    assert h.cast.reads == ["status:CAST1", "status:CAST2", "status:CAST2"]


@pytest.mark.parametrize(("unknown_as", "expected"), [
    ("delivered", ("delivered", None, None)),
    ("failed", ("failed", "no_receipt",
                "Cast SMS: the carrier never confirmed delivery")),
])
async def test_no_receipt_after_the_last_check_is_what_the_operator_chose(
        unknown_as: Literal["delivered", "failed"],
        expected: tuple[str, str | None, str | None]) -> None:
    h = Harness(receipts=dataclasses.replace(THREE_CHECKS, unknown_as=unknown_as))
    h.cast.receipts["CAST1"] = receipt("CAST1", "sent")
    await h.process(sms(), attempt=1)
    checks = [await h.next_check()]
    await h.checks_come_due()
    checks.append(await h.next_check())
    assert h.statuses.queued == []
    await h.checks_come_due()
    assert checks == [(2, 30), (3, 60)]
    assert h.status() == expected


async def test_one_tick_is_on_its_way_while_receipts_are_awaited() -> None:
    # The tick carries the lane's owner through to its next round, and the next owner
    # if this one dies; one at a time is enough.
    h = Harness(receipts=THREE_CHECKS)
    for n in range(3):
        await h.settled.process(sms(message_id=f"m{n}"), attempt=1)
    assert h.ticks.sent == 1

    await h.desk.check(ReceiptCheck(), attempt=1)  # it came back
    await h.settled.process(sms(message_id="m3"), attempt=1)
    assert h.ticks.sent == 2

    h.clock.now += h.desk.duty_seconds  # it went to another owner, or was lost with one
    await h.settled.process(sms(message_id="m4"), attempt=1)
    assert h.ticks.sent == 3


async def test_a_tick_is_settled_only_once_the_next_one_is_on_its_way() -> None:
    # An owner killed after acking a tick and before its round sent the next would leave
    # the awaited receipts with nobody to wake for them (seen: 5 SMS without a status).
    h = Harness(receipts=THREE_CHECKS)
    await h.settled.process(sms(), attempt=1)
    assert h.ticks.sent == 1
    await h.desk.check(ReceiptCheck(), attempt=1)  # came back: nothing ran since
    assert h.ticks.sent == 2
    h.store.receipt_at.clear()  # nothing awaited any more: the ticking ends
    await h.desk.check(ReceiptCheck(), attempt=1)
    assert h.ticks.sent == 2


async def test_a_check_from_an_older_sender_makes_its_message_due_now() -> None:
    # Before the schedule moved into the record, a sender queued one check per message.
    h = Harness(receipts=THREE_CHECKS)
    await h.settled.process(sms(), attempt=1)
    h.store.receipt_at.clear()  # as such a sender left it: no schedule in the record
    await h.desk.check(ReceiptCheck(message_id="m1", location_id="loc1", check=2), attempt=1)
    assert await h.next_check() == (2, 0)
    await h.desk.round()
    assert h.status() == ("delivered", None, None)
    # A copy after the decision changes nothing.
    await h.desk.check(ReceiptCheck(message_id="m1", location_id="loc1", check=2), attempt=1)
    assert await h.next_check() is None


async def test_a_crash_before_the_read_is_recorded_leaves_the_check_due() -> None:
    h = Harness(receipts=THREE_CHECKS)
    h.cast.receipts["CAST1"] = receipt("CAST1", "sent")
    await h.settled.process(sms(), attempt=1)
    h.clock.now += 10
    recorded = h.store.receipts_read
    h.store.receipts_read = fail  # type: ignore[method-assign]  # the crash

    with pytest.raises(ConnectionError):
        await h.desk.round()
    assert await h.next_check() == (1, 0)  # the next owner's first round asks again
    h.store.receipts_read = recorded  # type: ignore[method-assign]
    await h.desk.round()
    assert await h.next_check() == (2, 30)


async def test_a_decision_whose_status_was_not_queued_is_queued_by_the_next_round() -> None:
    h = Harness(receipts=THREE_CHECKS)
    await h.settled.process(sms(), attempt=1)
    h.clock.now += 10
    queue = h.statuses.queue
    h.statuses.queue = fail  # type: ignore[method-assign]  # the crash, after the decision

    with pytest.raises(ConnectionError):
        await h.desk.round()
    h.statuses.queue = queue  # type: ignore[method-assign]
    await h.desk.round()
    assert h.status() == ("delivered", None, None)
    assert h.cast.reads == ["status:CAST1"]  # decided once, not asked again
    assert await h.next_check() is None


async def fail(*_: object, **__: object) -> bool:
    raise ConnectionError("the replica died")


async def test_a_redelivered_webhook_after_the_send_changes_no_schedule() -> None:
    h = Harness(receipts=THREE_CHECKS)
    h.cast.receipts["CAST1"] = receipt("CAST1", "sent")
    await h.process(sms(), attempt=1)
    await h.settled.process(sms(), attempt=1)  # GHL's retry of the same webhook
    assert len(h.cast.sent) == 1
    assert await h.next_check() == (2, 30)
    assert h.cast.reads == ["status:CAST1"]


async def test_the_desk_asks_while_on_duty_and_stops_after() -> None:
    # On the real clock: the desk's own task, started by a lane delivery.
    policy = ReceiptPolicy(delays=(0.2, 0.4), unknown_as="delivered",
                           default_api_key=DEFAULT_KEY)
    h = Harness(receipts=policy)
    h.desk = type(h.desk)(store=h.store, cast=h.cast, lane=h.lane, locations=h.desk.locations,
                          ticks=FakeTicks(every=0.2), final=h.desk.final, policy=policy)
    h.pipeline.receipts = h.desk
    h.store.clock = time.time
    h.desk.on_duty(lambda: True)
    await h.settled.process(sms(), attempt=1)
    try:
        deadline = time.monotonic() + 30
        while not h.statuses.queued:
            assert time.monotonic() < deadline, "the desk never decided"
            await asyncio.sleep(0.01)
        assert h.status() == ("delivered", None, None)
        runner = h.desk._runner  # the task itself is what is observed
        assert runner is not None
        await asyncio.wait_for(runner, timeout=30)  # no lane delivery: off duty
    finally:
        await h.desk.close()


async def test_many_open_parts_are_read_from_the_logs_a_page_at_a_time() -> None:
    h = Harness()
    ids = await many_due(h)
    await h.checks_come_due()
    assert h.cast.reads == ["logs:0"]
    assert len(h.statuses.queued) == len(ids)
    assert {u.status for u in h.statuses.queued} == {"delivered"}


async def many_due(h: Harness) -> list[str]:
    ids = [f"m{n}" for n in range(FEW_PARTS + 3)]
    for message_id in ids:
        await h.settled.process(sms(message_id=message_id), attempt=1)
    return ids


async def test_parts_under_many_newer_sends_are_found_deeper_in_the_logs() -> None:
    # A burst's first messages come due after 1,200 more were sent on the account.
    h = Harness()
    h.cast.later = 1_200
    ids = await many_due(h)
    await h.checks_come_due()
    assert h.cast.reads == ["logs:0", "logs:500", "logs:1000"]
    assert len(h.statuses.queued) == len(ids)
    assert {u.status for u in h.statuses.queued} == {"delivered"}


async def test_the_pages_stop_at_rows_older_than_the_oldest_send_asked_for() -> None:
    h = Harness()
    h.cast.unlisted, h.cast.earlier = True, 5_000
    ids = await many_due(h)
    await h.checks_come_due()
    # Page 0 already reaches a day back: the parts it lacks are asked for one by one.
    assert h.cast.reads == ["logs:0"] + [f"status:CAST{n}" for n in range(1, len(ids) + 1)]
    assert {u.status for u in h.statuses.queued} == {"delivered"}


async def test_the_pages_stop_where_one_look_up_per_part_is_cheaper() -> None:
    h = Harness()
    h.cast.unlisted, h.cast.later = True, 100_000
    ids = await many_due(h)
    await h.checks_come_due()
    pages = [read for read in h.cast.reads if read.startswith("logs:")]
    assert len(pages) == len(ids) + 1
    assert h.cast.reads[len(pages):] == [f"status:CAST{n}" for n in range(1, len(ids) + 1)]
    assert len(h.statuses.queued) == len(ids)


async def test_a_rate_limited_read_pauses_the_lane_and_decides_nothing() -> None:
    h = Harness()
    h.cast.read_error = RateLimited("429", retry_after=0.05)
    await h.process(sms(), attempt=1)
    assert h.statuses.queued == []
    assert h.lane.ip.paused_until > 0
    # Still due: the next round asks again.
    h.cast.read_error = None
    await h.desk.round()
    assert h.status() == ("delivered", None, None)


async def test_cast_not_answering_a_read_leaves_the_message_due(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("castghl.sender.receipts.TROUBLE_PAUSE_SECONDS", 0)
    h = Harness()
    h.cast.read_error = RetryableError("503", code="cast_unavailable")
    await h.process(sms(), attempt=1)
    assert h.statuses.queued == []
    assert [r.message_id for r in await h.store.due_receipts(h.clock.now, 10)] == ["m1"]
    h.cast.read_error = None
    await h.desk.round()
    assert h.status() == ("delivered", None, None)


async def test_a_desk_whose_lane_channel_closed_asks_nothing_more() -> None:
    # After a reconnect another replica may own the lane: its sends are not this lane's.
    h = Harness()
    open_ = True
    await h.settled.process(sms(), attempt=1)
    h.clock.now += 10  # its first check is due
    h.desk.on_duty(lambda: open_)
    open_ = False
    runner = h.desk._runner  # the task itself is what is observed
    assert runner is not None
    await asyncio.wait_for(runner, timeout=30)
    assert h.cast.reads == []
    assert await h.next_check() == (1, 0)  # still due, for whoever owns the lane
