"""Diagnostic: client CPU per confirmed persistent publish, three ways, in one process.

    uv run python -m bench.publish          # ~1 min; RabbitMQ as for `make bench`

The gateway's publish was FastStream's (`castghl.common.broker.publish`); it is now
`castghl.common.broker.Publisher`, aiormq's publish on aio-pika's robust channel. This
prices both, and aio-pika's own `Message` + `Exchange.publish` between them, with 50
publishes in flight on one channel (as at concurrency 50), each to a quorum queue and
awaiting its confirm. Rounds alternate, so a busy machine skews every variant alike.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop
from aio_pika import DeliveryMode, Message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from castghl.common.broker import Publisher, declare, make_broker, publish
from castghl.common.settings import BrokerSettings
from castghl.common.topology import Topology
from castghl.sandbox import infra

BODY = (b'{"message_id":"bench-1","location_id":"bench-location","contact_id":"contact-1",'
        b'"phone":"+639171234567","message":"Benchmark message 1: your appointment is '
        b'tomorrow at 10:00.","attachments":[],"received_at":"2026-12-01T00:00:00Z"}')
PUBLISHES = 20_000
IN_FLIGHT = 50
ROUNDS = 5

Publish = Callable[[str], Awaitable[object]]


async def cpu_per_publish(publish_one: Publish) -> float:
    async def flow(start: int) -> None:
        for _ in range(start, PUBLISHES, IN_FLIGHT):
            await publish_one(uuid.uuid4().hex)

    started = time.process_time()
    await asyncio.gather(*(flow(k) for k in range(IN_FLIGHT)))
    return (time.process_time() - started) / PUBLISHES * 1e6


async def main(url: str) -> None:
    topology = Topology(prefix=f"bench{uuid.uuid4().hex[:8]}.")
    queue = topology.outbound.queue
    publisher = Publisher(url, "bench")
    broker = make_broker(BrokerSettings(rabbitmq_url=url), "bench")
    await publisher.connect()
    await broker.connect()
    exchange = publisher.channel.default_exchange

    async def aio_pika_publish(message_id: str) -> None:
        message = Message(BODY, delivery_mode=DeliveryMode.PERSISTENT,
                          content_type="application/json", message_id=message_id,
                          app_id="bench")
        async with asyncio.timeout(10):
            await exchange.publish(message, routing_key=queue.name, mandatory=True)

    async def faststream_publish(message_id: str) -> None:
        await publish(broker, queue, BODY, message_id=message_id)

    async def publisher_publish(message_id: str) -> None:
        await publisher.publish(queue, BODY, message_id=message_id)

    variants: dict[str, Publish] = {
        "FastStream: common.broker.publish (before)": faststream_publish,
        "aio-pika: Message + Exchange.publish": aio_pika_publish,
        "common.broker.Publisher (now)": publisher_publish,
    }
    figures: dict[str, list[float]] = {name: [] for name in variants}
    try:
        await declare(broker, topology.outbound.all_queues())
        for _ in range(ROUNDS):
            for name, variant in variants.items():
                figures[name].append(await cpu_per_publish(variant))
    finally:
        for declared in topology.outbound.all_queues():
            await publisher.channel.queue_delete(declared.name)
        await broker.stop()
        await publisher.close()
    print(f"client CPU per confirmed persistent publish, {IN_FLIGHT} in flight, "
          f"{PUBLISHES:,} x {ROUNDS} rounds")
    for name, values in figures.items():
        print(f"  {name:44s} {statistics.median(values):6.1f} µs  "
              f"(rounds: {', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    broker = infra.rabbitmq()
    try:
        uvloop.run(main(broker.url))
    finally:
        broker.stop()
