"""The RabbitMQ broker as every service builds it, and the one way we publish.

Publishing is always persistent, mandatory and confirmed, on a channel that raises when
RabbitMQ returns an unroutable message: a call that returns means the message sits in a
durable queue (reference/stack.md: FastStream defaults to neither persistence nor
raising on returns).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from faststream.rabbit import Channel, RabbitBroker, RabbitQueue
from pydantic import BaseModel

from castghl.common.settings import BrokerSettings

PUBLISH_TIMEOUT_SECONDS = 10.0


def make_broker(settings: BrokerSettings, service: str) -> RabbitBroker:
    return RabbitBroker(
        str(settings.rabbitmq_url),
        default_channel=Channel(publisher_confirms=True, on_return_raises=True),
        app_id=service,
        graceful_timeout=30.0,
        logger=logging.getLogger(f"castghl.{service}.broker"),
        log_level=logging.DEBUG,
        fail_fast=True,
    )


async def declare(broker: RabbitBroker, queues: Iterable[RabbitQueue]) -> None:
    """Declare queues (idempotent with identical arguments) so publishes can route."""
    for queue in queues:
        await broker.declare_queue(queue)


async def publish(
    broker: RabbitBroker,
    queue: RabbitQueue,
    message: BaseModel | bytes,
    *,
    headers: Mapping[str, Any] | None = None,
    message_id: str | None = None,
) -> None:
    """Persistent, mandatory, confirmed publish to `queue`; raises if not stored.

    Bounded in time: while RabbitMQ is unreachable the robust connection keeps trying,
    and a caller answering an HTTP request must not wait for that.
    """
    body = message if isinstance(message, bytes) else message.model_dump_json().encode()
    async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
        await broker.publish(
            body,
            queue=queue,
            persist=True,
            mandatory=True,
            timeout=PUBLISH_TIMEOUT_SECONDS,
            content_type="application/json",
            headers=dict(headers) if headers else None,
            message_id=message_id,
        )
