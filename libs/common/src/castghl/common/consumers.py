"""Work queues consumed with aio-pika directly, behind the same `Settler`.

FastStream's subscriber cost 190 µs of CPU per delivery on this machine against 100 µs
for aio-pika's consumer doing the same (bench/README.md, "Cost per message, a faster
machine"). On the queues every SMS passes through twice (the sender's `sms.outbound` and
`ghl.status`) that was the largest piece of the sender's cost left to take, so those
are consumed here; the other queues stay on FastStream.

What FastStream did for them is done here: each queue gets a channel of its own with
its prefetch, and is declared exactly as FastStream declares it (either may go first);
aio-pika's robust connection reopens the channels, their prefetch and the consumers
after a reconnect; `missing()` tells readiness and `health.watch_consumers` which are not
consuming; `stop()` takes no more deliveries and lets the handlers in flight finish. A
handler gets aio-pika's delivery, which `Settler` reads as it reads FastStream's (body,
headers, message id, ack); an exception out of it leaves the delivery unacked, as
FastStream's manual acks did, until its channel closes and RabbitMQ delivers it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from faststream.rabbit import RabbitQueue

from castghl.common.broker import GRACEFUL_STOP_SECONDS, declare_queue
from castghl.common.health import queue_consuming

log = logging.getLogger(__name__)

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]


@dataclass
class _Consumer:
    queue: RabbitQueue
    prefetch: int
    handle: Handler
    channel: AbstractRobustChannel | None = None
    consuming: AbstractQueue | None = None
    tag: str | None = None


class DirectConsumers:
    def __init__(self) -> None:
        self._consumers: list[_Consumer] = []
        self._in_flight: set[asyncio.Task[Any]] = set()

    def add(self, queue: RabbitQueue, prefetch: int, handle: Handler) -> None:
        self._consumers.append(_Consumer(queue, prefetch, handle))

    async def start(self, connection: AbstractRobustConnection) -> None:
        for consumer in self._consumers:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=consumer.prefetch)
            queue = await declare_queue(channel, consumer.queue)

            async def deliver(message: AbstractIncomingMessage,
                              handle: Handler = consumer.handle,
                              name: str = consumer.queue.name) -> None:
                task = asyncio.current_task()
                if task is not None:
                    self._in_flight.add(task)
                try:
                    await handle(message)
                except Exception:
                    # Only a failure to settle gets here (Settler.run): the delivery stays
                    # unacked, and comes again once its channel closes.
                    log.exception("a delivery could not be settled", extra={"queue": name})
                finally:
                    if task is not None:
                        self._in_flight.discard(task)

            consumer.channel = channel
            consumer.consuming = queue
            consumer.tag = await queue.consume(deliver)

    def missing(self) -> list[str]:
        """The queues not consuming now: never started, or their channel closed or
        reopened without the consumer. Looks without awaiting (see `health.consuming`)."""
        return [consumer.queue.name for consumer in self._consumers
                if consumer.consuming is None or consumer.tag is None
                or not queue_consuming(consumer.consuming, consumer.tag)]

    async def stop(self, grace: float = GRACEFUL_STOP_SECONDS) -> None:
        """No more deliveries; then up to `grace` seconds for the handlers in flight."""
        for consumer in self._consumers:
            tag, consumer.tag = consumer.tag, None
            if consumer.consuming is None or tag is None or consumer.consuming.channel.is_closed:
                continue  # never started, stopped already, or its channel is gone
            try:
                await consumer.consuming.cancel(tag)
            except Exception:  # the channel went meanwhile: nothing more will come
                log.warning("could not cancel a consumer",
                            extra={"queue": consumer.queue.name}, exc_info=True)
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            if pending:
                log.warning("handlers still running at the end of the grace period",
                            extra={"in_flight": len(pending)})
        for consumer in self._consumers:
            if consumer.channel is not None and not consumer.channel.is_closed:
                await consumer.channel.close()
