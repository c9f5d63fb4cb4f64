"""Parked messages on real RabbitMQ: `count_parked` counts them, `survey` tells their
reasons without taking them away, and `replay` (the operator's `castghl-sender replay
QUEUE [--limit N]`, and the console's button) moves them back to their work queue with a
fresh attempt count — published before acked, so a failed replay loses nothing."""

from __future__ import annotations

import aio_pika
import pytest

from castghl.common.errors import RetryableError
from castghl.common.health import QueueDepth, queue_depths
from castghl.common.parking import Replayed, count_parked, replay, survey
from castghl.common.topology import ATTEMPT_HEADER, PARKED_REASON_HEADER
from castghl.common.worker import Done, Outcome

from .conftest import Job, Rig, eventually

REASON = {PARKED_REASON_HEADER: "no location owns 09181234567", ATTEMPT_HEADER: 4}


async def park_by_hand(rig: Rig, *job_ids: str) -> None:
    """Messages parked earlier (as a worker parks them: reason and attempt in headers)."""
    for job_id in job_ids:
        await rig.send(job_id, headers=REASON, to=rig.work.parked.name)
    await rig.until_depth(rig.work.parked.name, len(job_ids))


async def test_count_parked_counts_what_waits_in_the_parking_queue(rig: Rig) -> None:
    await rig.declare_all()
    assert await count_parked(rig.url, rig.work) == 0

    await park_by_hand(rig, "a", "b", "c")

    assert await count_parked(rig.url, rig.work) == 3


async def test_replay_after_the_fix_delivers_with_a_fresh_attempt_count(rig: Rig) -> None:
    fixed = False
    calls: list[tuple[str, int]] = []

    async def handle(job: Job, attempt: int) -> Outcome:
        calls.append((job.id, attempt))
        if not fixed:
            raise RetryableError("no route yet", code="unroutable")
        return Done()

    await rig.start(handle, max_attempts=2)
    await rig.send("a")
    await rig.until_depth(rig.work.parked.name, 1)
    assert await count_parked(rig.url, rig.work) == 1

    fixed = True  # the operator assigned the number
    done = await replay(rig.url, rig.work)
    seen = await rig.deliveries("a", 3)
    await eventually(lambda: len(calls) == 3, "the replayed message to be handled")
    await rig.stop()

    assert done == Replayed(rig.work.parked.name, moved=1, left=0)
    assert calls == [("a", 1), ("a", 2), ("a", 1)]
    replayed = seen[2].headers
    assert replayed[ATTEMPT_HEADER] == 1
    assert PARKED_REASON_HEADER not in replayed
    assert not any(name.startswith(("x-death", "x-first-death", "x-last-death"))
                   for name in replayed)
    assert set((await rig.depths()).values()) == {0}


async def test_replay_moves_at_most_the_limit_in_order_and_counts_what_is_left(
        rig: Rig) -> None:
    await rig.declare_all()
    await park_by_hand(rig, "a", "b", "c")

    assert await replay(rig.url, rig.work, limit=0) == Replayed(rig.work.parked.name, 0, 3)
    assert await replay(rig.url, rig.work, limit=2) == Replayed(rig.work.parked.name, 2, 1)

    moved = await rig.take(rig.work.queue.name, 2)
    assert [Job.model_validate_json(m.body).id for m in moved] == ["a", "b"]
    for message in moved:
        assert message.headers[ATTEMPT_HEADER] == 1
        assert PARKED_REASON_HEADER not in message.headers
        assert message.content_type == "application/json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert await count_parked(rig.url, rig.work) == 1

    assert await replay(rig.url, rig.work) == Replayed(rig.work.parked.name, 1, 0)
    assert await replay(rig.url, rig.work) == Replayed(rig.work.parked.name, 0, 0)
    [last] = await rig.take(rig.work.queue.name, 1)
    assert Job.model_validate_json(last.body).id == "c"


async def test_replay_keeps_the_body_the_message_id_and_other_headers(rig: Rig) -> None:
    await rig.declare_all()
    await rig.send("a", headers={**REASON, "x-trace": "t-1"}, to=rig.work.parked.name,
                   message_id="ghl-msg-1")
    await rig.until_depth(rig.work.parked.name, 1)

    await replay(rig.url, rig.work)

    [after] = await rig.take(rig.work.queue.name, 1)
    assert after.body == Job(id="a").model_dump_json().encode()
    assert after.message_id == "ghl-msg-1"
    assert after.headers == {"x-trace": "t-1", ATTEMPT_HEADER: 1}


async def test_a_replay_that_cannot_publish_loses_nothing(rig: Rig) -> None:
    await rig.declare_all()
    await park_by_hand(rig, "a", "b")
    await rig.delete(rig.work.queue.name)  # nowhere to replay to

    with pytest.raises(aio_pika.exceptions.AMQPError):
        await replay(rig.url, rig.work)

    await rig.until_depth(rig.work.parked.name, 2)  # the one it took is back
    await rig.declare_all()
    assert await replay(rig.url, rig.work) == Replayed(rig.work.parked.name, 2, 0)
    assert await rig.depth(rig.work.queue.name) == 2


async def test_counting_or_replaying_an_undeclared_queue_fails_loudly(rig: Rig) -> None:
    with pytest.raises(aio_pika.exceptions.ChannelClosed):
        await count_parked(rig.url, rig.work)
    with pytest.raises(aio_pika.exceptions.ChannelClosed):
        await replay(rig.url, rig.work)


async def test_a_survey_groups_the_reasons_and_leaves_every_message_parked(rig: Rig) -> None:
    await rig.declare_all()
    await park_by_hand(rig, "a", "b")
    await rig.send("c", headers={PARKED_REASON_HEADER: "location not installed"},
                   to=rig.work.parked.name, message_id="ghl-c")
    await rig.until_depth(rig.work.parked.name, 3)

    found = await survey(rig.url, rig.work)
    again = await survey(rig.url, rig.work)  # a second look sees the same

    assert found == again
    assert (found.queue, found.count, found.read) == (rig.work.parked.name, 3, 3)
    assert [(r.reason, r.count) for r in found.reasons] == [
        ("no location owns 09181234567", 2), ("location not installed", 1)]
    assert found.reasons[0].sample["attempt"] == 4
    assert await rig.depth(rig.work.parked.name) == 3
    # Each is still the message it was: replay moves all three, in the original order.
    assert await replay(rig.url, rig.work) == Replayed(rig.work.parked.name, 3, 0)
    moved = await rig.take(rig.work.queue.name, 3)
    assert [Job.model_validate_json(m.body).id for m in moved] == ["a", "b", "c"]


async def test_a_survey_reads_at_most_its_limit_and_says_so(rig: Rig) -> None:
    await rig.declare_all()
    await park_by_hand(rig, "a", "b", "c")

    found = await survey(rig.url, rig.work, limit=2)

    assert (found.count, found.read) == (3, 2)
    assert await count_parked(rig.url, rig.work) == 3


async def test_queue_depths_name_messages_and_consumers_and_a_missing_queue(rig: Rig) -> None:
    await rig.declare_all()
    await park_by_hand(rig, "a")

    depths = await queue_depths(rig.url, [rig.work.parked.name, "castghl-no-such-queue"])

    assert depths == [QueueDepth(rig.work.parked.name, 1, 0),
                      QueueDepth("castghl-no-such-queue", None, None)]
