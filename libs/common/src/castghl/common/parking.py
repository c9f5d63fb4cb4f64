"""Parked messages: count them, and replay them into their work queue.

A message is parked when retrying cannot help yet — an unroutable reply, a status for an
uninstalled location, a message that crashed its consumer `DELIVERY_LIMIT` times. Once an
operator has fixed the cause (assigned the number, reinstalled, deployed a fix), `replay`
moves them back with a fresh attempt count: each is published (confirmed) before it is
acked, so a crash mid-replay duplicates at worst, which every consumer tolerates.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika

from castghl.common.topology import ATTEMPT_HEADER, PARKED_REASON_HEADER, WorkQueue


@dataclass(frozen=True)
class Replayed:
    queue: str
    moved: int
    left: int


async def count_parked(url: str, work: WorkQueue) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(work.parked.name, passive=True)
        return queue.declaration_result.message_count or 0


async def replay(url: str, work: WorkQueue, limit: int | None = None) -> Replayed:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        parked = await channel.declare_queue(work.parked.name, passive=True)
        moved = 0
        while limit is None or moved < limit:
            message = await parked.get(fail=False)
            if message is None:
                break
            headers = {k: v for k, v in (message.headers or {}).items()
                       if k not in (PARKED_REASON_HEADER, "x-death", "x-first-death-queue",
                                    "x-first-death-reason", "x-first-death-exchange",
                                    "x-last-death-queue", "x-last-death-reason",
                                    "x-last-death-exchange", "x-delivery-count")}
            headers[ATTEMPT_HEADER] = 1
            await channel.default_exchange.publish(
                aio_pika.Message(message.body, headers=headers, message_id=message.message_id,
                                 content_type=message.content_type,
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=work.queue.name, mandatory=True)
            await message.ack()
            moved += 1
        left = (await channel.declare_queue(work.parked.name, passive=True)
                ).declaration_result.message_count or 0
    return Replayed(work.parked.name, moved, left)
