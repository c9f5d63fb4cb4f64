"""`/healthz`, `/readyz` and `/metrics`, the same on every service.

`/healthz` answers while the process serves HTTP (a liveness probe must not fail because
RabbitMQ is down: restarting us would not fix RabbitMQ). `/readyz` runs the service's
readiness checks — broker connected, every consumer consuming, Mongo answering — and
answers 503 naming the failing ones, so an orchestrator stops routing webhooks to a
replica that cannot publish.

A connected broker is not a working worker: after a reconnect, aio-pika's robust channels
restore their consumers, but a consumer that was not restored (a FastStream issue has
reported exactly that) leaves a process connected and idle. `consuming` looks at the
channel the subscriber's queue is on now; `watch_consumers` ends a process whose
consumer stays missing while the broker is connected, for its supervisor to restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aio_pika
import aiormq
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from faststream.rabbit import RabbitBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo import AsyncMongoClient

from castghl.common.broker import Publisher

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool]]
# The names of queues a process should consume and does not, now.
Missing = Callable[[], list[str]]
CHECK_TIMEOUT_SECONDS = 2.0
# A consumer missing this long on a connected broker is not coming back by itself (aio-pika
# restores consumers within a second or two of reconnecting).
CONSUMER_GRACE_SECONDS: Final = 30.0
CONSUMER_LOOK_SECONDS: Final = 5.0


async def _passes(check: ReadinessCheck) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return await check()
    except Exception:  # a check that raises or hangs is simply "not ready"
        return False


def broker_check(broker: RabbitBroker) -> ReadinessCheck:
    async def connected() -> bool:
        return await broker.ping(timeout=1.0)

    return connected


def publisher_check(publisher: Publisher) -> ReadinessCheck:
    async def connected() -> bool:
        return publisher.connected()

    return connected


def consuming(subscriber: Any) -> bool:
    """Whether a started FastStream subscriber has its consumer on its queue's current AMQP
    channel. Looks without awaiting anything: waiting on a channel that is reopening, and
    being cancelled by a check's timeout, can cancel the reopening itself."""
    queue, tag = getattr(subscriber, "_queue_obj", None), getattr(subscriber, "_consumer_tag",
                                                                  None)
    return queue is not None and tag is not None and queue_consuming(queue, tag)


def queue_consuming(queue: Any, tag: str) -> bool:
    """Whether aio-pika's `queue` has consumer `tag` on the AMQP channel it is on now."""
    if queue.channel.is_closed:
        return False
    underlay = getattr(queue.channel, "_channel", None)  # aio-pika's open AMQP channel
    return underlay is not None and tag in underlay.channel.consumers


def consumers_check(broker: RabbitBroker, *, also_missing: Missing = list
                    ) -> ReadinessCheck:
    """Every FastStream subscriber consuming, and none of the queues consumed without
    FastStream (`also_missing`, `consumers.DirectConsumers.missing`) missing."""
    async def all_consuming() -> bool:
        return (all(consuming(subscriber) for subscriber in broker.subscribers)
                and not also_missing())

    return all_consuming


def _stop_process() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # a graceful stop; the supervisor restarts it


async def watch_consumers(broker: RabbitBroker, *, also_missing: Missing = list,
                          grace: float = CONSUMER_GRACE_SECONDS,
                          every: float = CONSUMER_LOOK_SECONDS,
                          on_lost: Callable[[], None] = _stop_process,
                          clock: Callable[[], float] = time.monotonic) -> None:
    """Stop the process when a consumer stays missing for `grace` seconds while the broker
    is connected. While it is not connected, restarting would not help: readiness says
    so, and aio-pika keeps reconnecting."""
    missing_since: float | None = None
    while True:
        await asyncio.sleep(every)
        missing = [_queue_name(subscriber) for subscriber in broker.subscribers
                   if not consuming(subscriber)] + also_missing()
        if not missing or not await broker.ping(timeout=every):
            missing_since = None
            continue
        missing_since = missing_since or clock()
        if clock() - missing_since >= grace:
            log.error("a consumer did not come back after the broker reconnected; stopping "
                      "for the supervisor to restart this process",
                      extra={"queues": missing})
            on_lost()
            return


def _queue_name(subscriber: Any) -> str:
    return str(getattr(getattr(subscriber, "queue", None), "name", subscriber))


def mongo_check(client: AsyncMongoClient[Any]) -> ReadinessCheck:
    async def answers() -> bool:
        await client.admin.command("ping")
        return True

    return answers


async def readiness(checks: Mapping[str, ReadinessCheck]) -> dict[str, bool]:
    return dict(zip(checks, await asyncio.gather(*map(_passes, checks.values())),
                    strict=True))


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    messages: int | None  # None: the queue is not there (not declared yet)
    consumers: int | None


async def queue_depths(url: str, names: list[str]) -> list[QueueDepth]:
    """Messages and consumers of each queue, as RabbitMQ answers a passive declare."""
    found: list[QueueDepth] = []
    connection = await aio_pika.connect(url)
    async with connection:
        for name in names:
            # A passive declare of a missing queue closes its channel: one per queue.
            try:
                async with connection.channel() as channel:
                    queue = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                found.append(QueueDepth(name, None, None))
                continue
            result = queue.declaration_result
            found.append(QueueDepth(name, result.message_count or 0,
                                    result.consumer_count or 0))
    return found


def health_router(checks: Mapping[str, ReadinessCheck]) -> APIRouter:
    router = APIRouter(tags=["operations"], include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        results = await readiness(checks)
        ready = all(results.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": results},
                            status_code=200 if ready else 503)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
