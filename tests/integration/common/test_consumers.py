"""`DirectConsumers`: a work queue consumed with aio-pika directly, settled by the same
`Settler` — done, retried through a tier, parked; prefetch bounding what is in hand; a
stop that finishes what is in hand and takes nothing more; and a consumer lost with its
connection seen missing, then back — on real RabbitMQ."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aio_pika.abc import AbstractIncomingMessage

from castghl.common.broker import Publisher, declare, make_broker
from castghl.common.consumers import DirectConsumers
from castghl.common.errors import PermanentError, RetryableError
from castghl.common.health import consumers_check, queue_consuming
from castghl.common.settings import BrokerSettings
from castghl.common.worker import Done, Handler, Outcome, Settler
from castghl.sandbox.relay import Relay

from .conftest import BACKOFF, Job, Rig, Seen, eventually

Started = Callable[..., Awaitable[DirectConsumers]]


@pytest.fixture
async def direct(rig: Rig) -> AsyncIterator[Started]:
    """Starts the rig's work queue on `DirectConsumers`, wired as the sender wires its
    own (a FastStream broker only for the Settler's publishes); stops what it started."""
    started: list[tuple[DirectConsumers, Publisher]] = []
    broker = make_broker(BrokerSettings(rabbitmq_url=rig.url), "test-direct")
    await broker.connect()
    await declare(broker, rig.work.side_queues())

    async def start(handle: Handler[Job], *, prefetch: int = 10,
                    via: str | None = None) -> DirectConsumers:
        settler = Settler(broker, rig.work, 3, BACKOFF)

        async def on_job(message: AbstractIncomingMessage) -> None:
            rig.seen.append(Seen(Job.model_validate_json(message.body).id,
                                 dict(message.headers)))
            await settler.run(message, Job, handle)

        publisher = Publisher(via or rig.url, "test-direct")
        await publisher.connect()
        consumers = DirectConsumers()
        consumers.add(rig.work.queue, prefetch, on_job)
        await consumers.start(publisher.connection)
        started.append((consumers, publisher))
        return consumers

    yield start
    for consumers, publisher in started:
        await consumers.stop(grace=5.0)
        await publisher.close()
    await broker.stop()


async def test_settles_as_the_faststream_consumer_does(rig: Rig, direct: Started) -> None:
    async def handle(job: Job, attempt: int) -> Outcome:
        if job.id == "bad":
            raise PermanentError("no", code="refused")
        if job.id == "flaky" and attempt == 1:
            raise RetryableError("later", code="busy")
        return Done()

    await direct(handle)
    for job_id in ("fine", "flaky", "bad"):
        await rig.send(job_id)
    flaky = await rig.deliveries("flaky", 2)
    assert flaky[1].came_back_through == rig.tier[BACKOFF[0]]
    await rig.until_depth(rig.work.parked.name, 1)
    [parked] = await rig.take(rig.work.parked.name, 1)
    assert Job.model_validate_json(parked.body).id == "bad"
    assert len(rig.seen_of("fine")) == 1
    await eventually(lambda: rig.has_depth(rig.work.queue.name, 0), "the queue to empty")


async def test_prefetch_bounds_the_handlers_in_hand(rig: Rig, direct: Started) -> None:
    in_hand, most = 0, 0
    release = asyncio.Event()

    async def handle(_: Job, __: int) -> Outcome:
        nonlocal in_hand, most
        in_hand += 1
        most = max(most, in_hand)
        await release.wait()
        in_hand -= 1
        return Done()

    await direct(handle, prefetch=3)
    for n in range(8):
        await rig.send(f"job-{n}")
    await eventually(lambda: in_hand == 3, "three jobs in hand")
    assert await rig.has_depth(rig.work.queue.name, 5)  # the rest wait in the queue
    release.set()
    await eventually(lambda: len(rig.seen) == 8, "every job")
    assert most == 3


async def test_a_stop_finishes_what_is_in_hand_and_takes_nothing_more(
        rig: Rig, direct: Started) -> None:
    release = asyncio.Event()
    finished: list[str] = []

    async def handle(job: Job, _: int) -> Outcome:
        await release.wait()
        finished.append(job.id)
        return Done()

    consumers = await direct(handle, prefetch=2)
    for n in range(4):
        await rig.send(f"job-{n}")
    await eventually(lambda: len(rig.seen) == 2, "two jobs in hand")
    [consumer] = consumers._consumers
    queue, tag = consumer.consuming, consumer.tag
    assert queue is not None
    assert tag is not None
    stopping = asyncio.create_task(consumers.stop(grace=10.0))
    # aiormq forgets the consumer when RabbitMQ's CancelOk arrives: from then on nothing
    # more is delivered to it.
    await eventually(lambda: not queue_consuming(queue, tag), "RabbitMQ to confirm the cancel")
    assert not stopping.done()  # still waiting for the two in hand
    release.set()
    await stopping
    assert sorted(finished) == ["job-0", "job-1"]
    assert len(rig.seen) == 2  # their acks freed the prefetch, and nothing more came
    assert await rig.has_depth(rig.work.queue.name, 2)


async def test_a_delivery_left_unsettled_comes_back_once_its_channel_closes(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    async def cannot_settle(_: AbstractIncomingMessage) -> None:
        raise ConnectionError("the publish of its retry failed")

    await rig.declare_all()
    publisher = Publisher(rig.url, "test-direct")
    await publisher.connect()
    consumers = DirectConsumers()
    consumers.add(rig.work.queue, 10, cannot_settle)
    try:
        await consumers.start(publisher.connection)
        await rig.send("stuck")
        await eventually(lambda: "could not be settled" in caplog.text, "the failure logged")
        assert consumers.missing() == []  # the consumer goes on
    finally:
        await consumers.stop(grace=5.0)
        await publisher.close()
    await rig.until_depth(rig.work.queue.name, 1)


async def test_a_consumer_lost_with_its_connection_is_missing_then_back(
        rig: Rig, relay: tuple[Relay, str], direct: Started) -> None:
    async def done(_: Job, __: int) -> Outcome:
        return Done()

    link, through = relay
    consumers = await direct(done, via=through)
    broker = make_broker(BrokerSettings(rabbitmq_url=rig.url), "test-ready")
    ready = consumers_check(broker, also_missing=consumers.missing)
    assert consumers.missing() == []
    assert await ready()

    link.cut()
    await eventually(lambda: consumers.missing() == [rig.work.queue.name],
                     "the consumer to be missing")
    assert not await ready()
    link.restore()
    await eventually(lambda: consumers.missing() == [], "the consumer to come back")
    await rig.send("after-the-cut")
    await rig.deliveries("after-the-cut", 1)
    await consumers.stop(grace=5.0)  # while the relay still stands
