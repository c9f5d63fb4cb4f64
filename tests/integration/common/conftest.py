"""A work queue of the bridge's topology on real RabbitMQ, consumed through `Settler` as the
services consume theirs; every queue is the test's own (a unique prefix) and is deleted
afterwards.

Tiers are fractions of a second here so a retry comes back while the test waits; a test
waits for a message to arrive, or a count to reach a value, never for a guessed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker
from prometheus_client import REGISTRY
from pydantic import BaseModel

from castghl.common.broker import declare, make_broker, publish
from castghl.common.settings import BrokerSettings
from castghl.common.topology import ATTEMPT_HEADER, WorkQueue
from castghl.common.worker import Delivery, Exhausted, Handler, Settler, undecoded
from castghl.sandbox.infra import Infra

# Only ends a run gone wrong: generous, so a machine 3x slower than usual never reaches it.
DEADLINE_SECONDS = 120.0
POLL_SECONDS = 0.02
SHORT, LONGER, PARKING_LOT = 0.2, 0.4, 600.0
BACKOFF = (SHORT, LONGER)


class Job(BaseModel):
    """Stands in for the bridge's messages: the Settler only needs a pydantic model."""

    id: str


@dataclass(frozen=True)
class Seen:
    """One delivery, as the consumer received it."""

    id: str
    headers: dict[str, Any]

    @property
    def attempt_header(self) -> Any:
        return self.headers.get(ATTEMPT_HEADER)

    @property
    def came_back_through(self) -> str | None:
        """The queue that dead-lettered this copy last (a retry tier, by its TTL)."""
        deaths = self.headers.get("x-death") or []
        return str(deaths[0]["queue"]) if deaths else None


async def eventually(check: Callable[[], Any], what: str,
                     within: float = DEADLINE_SECONDS) -> Any:
    """Poll until `check()` (or what it awaits to) is truthy — an asynchronous effect has
    appeared — or fail."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)  # a poll interval: the loop ends on the condition


@dataclass
class Rig:
    """One work queue (tiers SHORT, LONGER and a long PARKING_LOT) and its consumer."""

    url: str
    work: WorkQueue
    seen: list[Seen] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    brokers: list[RabbitBroker] = field(default_factory=list)

    @property
    def tier(self) -> dict[float, str]:
        return {delay: queue.name for delay, queue in self.work.tiers.items()}

    async def start(self, handle: Handler[Job], *, max_attempts: int = 3,
                    backoff: Sequence[float] = BACKOFF,
                    exhausted: Exhausted | None = None, via: str | None = None) -> Settler:
        """A consumer of the work queue, wired as the services wire theirs (connected to
        RabbitMQ `via` another URL, a relay's, say)."""
        broker = make_broker(BrokerSettings(rabbitmq_url=via or self.url), "test-worker")
        settler = Settler(broker, self.work, max_attempts, backoff, exhausted=exhausted)

        @broker.subscriber(self.work.queue, ack_policy=AckPolicy.MANUAL, decoder=undecoded,
                           channel=Channel(prefetch_count=10, on_return_raises=True))
        async def on_job(message: Delivery) -> None:
            body = message.body.decode(errors="replace")
            try:
                job_id = Job.model_validate_json(body).id
            except ValueError:
                job_id = body
            self.seen.append(Seen(job_id, dict(message.headers)))
            try:
                await settler.run(message, Job, handle)
            except BaseException as exc:
                self.failures.append(exc)
                raise

        await broker.connect()
        await declare(broker, self.work.all_queues())
        await broker.start()
        self.brokers.append(broker)
        return settler

    async def stop(self) -> None:
        """Stop consuming, and wait until RabbitMQ saw the consumer go: from then on what
        it still held unacked is back in the work queue, so counts are final."""
        if not self.brokers:
            return
        while self.brokers:
            await self.brokers.pop().stop()

        name = self.work.queue.name
        await eventually(lambda: self.has_consumers(name, 0), f"the consumer of {name} to go")

    async def send(self, job_id: str | bytes, headers: Mapping[str, Any] | None = None,
                   *, to: str | None = None, message_id: str | None = None) -> None:
        """Publish as a producer does (persistent, confirmed) to the work queue."""
        broker = make_broker(BrokerSettings(rabbitmq_url=self.url), "test-producer")
        await broker.connect()
        try:
            body = job_id if isinstance(job_id, bytes) else Job(id=job_id)
            queue = self.work.queue if to is None else next(
                q for q in self.work.all_queues() if q.name == to)
            await publish(broker, queue, body, headers=headers,
                          message_id=message_id or str(uuid.uuid4()))
        finally:
            await broker.stop()

    async def send_raw(self, body: bytes, content_type: str | None) -> None:
        """Publish bytes as any AMQP client may (a hand-published message, say)."""
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await channel.default_exchange.publish(
                aio_pika.Message(body, content_type=content_type,
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=self.work.queue.name, mandatory=True)

    async def declare_all(self) -> None:
        """The queues, without a consumer (what a producer declares)."""
        broker = make_broker(BrokerSettings(rabbitmq_url=self.url), "test-declare")
        await broker.connect()
        try:
            await declare(broker, self.work.all_queues())
        finally:
            await broker.stop()

    def seen_of(self, job_id: str) -> list[Seen]:
        return [s for s in self.seen if s.id == job_id]

    async def deliveries(self, job_id: str, n: int) -> list[Seen]:
        """Wait until `job_id` was delivered `n` times; its deliveries so far."""
        await eventually(lambda: len(self.seen_of(job_id)) >= n, f"{n} deliveries of {job_id}")
        return self.seen_of(job_id)

    async def depth(self, name: str) -> int | None:
        """Messages ready in `name` (None if the queue does not exist). Messages a
        consumer holds unacked are not counted."""
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return None
            return queue.declaration_result.message_count or 0

    async def consumers(self, name: str) -> int:
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return 0  # no queue, no consumer
            return queue.declaration_result.consumer_count or 0

    async def depths(self) -> dict[str, int | None]:
        return {q.name: await self.depth(q.name) for q in self.work.all_queues()}

    async def has_depth(self, name: str, n: int) -> bool:
        return await self.depth(name) == n

    async def holds(self, *names: str, total: int) -> bool:
        """True when the queues `names` hold `total` ready messages between them."""
        return sum([await self.depth(name) or 0 for name in names]) == total

    async def has_consumers(self, name: str, n: int) -> bool:
        return await self.consumers(name) == n

    async def until_depth(self, name: str, n: int) -> None:
        await eventually(lambda: self.has_depth(name, n), f"{n} message(s) in {name}")

    async def take(self, name: str, n: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """The next `n` messages of queue `name`, acked (they leave the queue)."""
        connection = await aio_pika.connect(self.url)
        taken: list[aio_pika.abc.AbstractIncomingMessage] = []
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, passive=True)
            async with queue.iterator() as messages, asyncio.timeout(DEADLINE_SECONDS):
                async for message in messages:
                    await message.ack()
                    taken.append(message)
                    if len(taken) == n:
                        break
        return taken

    async def delete(self, name: str) -> None:
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(name, if_unused=False, if_empty=False)

    def metric(self, name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"queue": self.work.name, **labels}) or 0.0


@pytest.fixture
async def rig(rabbitmq: Infra) -> AsyncIterator[Rig]:
    work = WorkQueue(f"t{uuid.uuid4().hex[:10]}.jobs", (SHORT, LONGER, PARKING_LOT))
    made = Rig(rabbitmq.url, work)
    yield made
    await made.stop()
    connection = await aio_pika.connect(rabbitmq.url)
    async with connection:
        for queue in work.all_queues():
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue.name, if_unused=False, if_empty=False)
