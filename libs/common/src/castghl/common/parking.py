"""Parked messages: count them, and replay them into their work queue.

A message is parked when retrying cannot help yet — an unroutable reply, a status for an
uninstalled location, a message that crashed its consumer `DELIVERY_LIMIT` times. Once an
operator has fixed the cause (assigned the number, reinstalled, deployed a fix), `replay`
moves them back with a fresh attempt count: each is published (confirmed) before it is
acked, so a crash mid-replay duplicates at worst, which every consumer tolerates.

`survey` shows why messages are parked without taking them away. It does not peek by
getting and returning them: a returned message counts as a delivery on RabbitMQ
4.0-4.2, whose quorum queues drop a message after 20 (the default delivery limit). It
moves each read message to the back of the same queue, published before acked, so the
queue holds the same messages afterwards.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from castghl.common.topology import ATTEMPT_HEADER, PARKED_REASON_HEADER, WorkQueue

# Headers RabbitMQ adds on dead-lettering; a replayed message starts without them.
DEATH_HEADERS: Final = ("x-death", "x-first-death-queue", "x-first-death-reason",
                        "x-first-death-exchange", "x-last-death-queue",
                        "x-last-death-reason", "x-last-death-exchange", "x-delivery-count")
# What a sample shows of a parked body: ids, never the text of an SMS.
SAMPLE_FIELDS: Final = ("message_id", "location_id", "cast_message_id", "status", "type",
                        "locationId", "companyId", "webhookId")
SURVEY_LIMIT: Final = 500


@dataclass(frozen=True)
class Replayed:
    queue: str
    moved: int
    left: int


@dataclass(frozen=True)
class Reason:
    reason: str
    count: int
    sample: dict[str, Any]


@dataclass(frozen=True)
class Survey:
    queue: str
    count: int
    read: int  # how many of `count` the reasons were read from
    reasons: list[Reason] = field(default_factory=list)


def reason_of(message: AbstractIncomingMessage) -> str:
    headers = message.headers or {}
    if reason := headers.get(PARKED_REASON_HEADER):
        return str(reason)
    if str(headers.get("x-first-death-reason") or "") == "delivery_limit":
        return "crashed its consumer on every delivery (the queue's delivery limit)"
    return "no reason recorded"


def sample_of(message: AbstractIncomingMessage) -> dict[str, Any]:
    try:
        body = json.loads(message.body)
    except ValueError:
        body = None
    shown = {name: body[name] for name in SAMPLE_FIELDS
             if isinstance(body, dict) and isinstance(body.get(name), str | int)}
    return {**shown, "bytes": len(message.body),
            "attempt": (message.headers or {}).get(ATTEMPT_HEADER)}


async def survey(url: str, work: WorkQueue, limit: int = SURVEY_LIMIT) -> Survey:
    """The reasons of (up to `limit` of) the parked messages, each with a count and one
    sample; the messages stay parked."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        parked = await channel.declare_queue(work.parked.name, passive=True)
        count = parked.declaration_result.message_count or 0
        reasons: Counter[str] = Counter()
        samples: dict[str, dict[str, Any]] = {}
        # Only what was there when the survey began: the moved ones come round again.
        for _ in range(min(count, limit)):
            message = await parked.get(fail=False)
            if message is None:
                break
            reason = reason_of(message)
            reasons[reason] += 1
            samples.setdefault(reason, sample_of(message))
            await channel.default_exchange.publish(
                aio_pika.Message(message.body, headers=message.headers,
                                 message_id=message.message_id,
                                 content_type=message.content_type,
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=work.parked.name, mandatory=True)
            await message.ack()
    return Survey(work.parked.name, count, sum(reasons.values()),
                  [Reason(reason, n, samples[reason]) for reason, n in reasons.most_common()])


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
                       if k != PARKED_REASON_HEADER and k not in DEATH_HEADERS}
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
