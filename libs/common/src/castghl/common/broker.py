"""The RabbitMQ broker as every service builds it, and the one way we publish.

Publishing is always persistent, mandatory and confirmed, on a channel that raises when
RabbitMQ returns an unroutable message: a call that returns means the message sits in a
durable queue (reference/stack.md: FastStream defaults to neither persistence nor
raising on returns). Workers publish through their FastStream broker (`publish`); the
gateway, which only publishes, and the sender, for its one publish per SMS (a decided
status), use `Publisher`: the same guarantees on aio-pika's channel directly, at about
half FastStream's CPU per publish (bench/publish.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq import spec
from aiormq.exceptions import ChannelInvalidStateError
from faststream.rabbit import Channel, RabbitBroker, RabbitExchange, RabbitQueue
from pydantic import BaseModel

from castghl.common.settings import BrokerSettings
from castghl.common.topology import WorkQueue

PUBLISH_TIMEOUT_SECONDS = 10.0
# How long a stopping worker lets the handlers in flight finish.
GRACEFUL_STOP_SECONDS = 30.0
PERSISTENT = 2  # AMQP delivery mode: written to disk (quorum queues store every message)


def make_broker(settings: BrokerSettings, service: str) -> RabbitBroker:
    return RabbitBroker(
        str(settings.rabbitmq_url),
        default_channel=Channel(publisher_confirms=True, on_return_raises=True),
        app_id=service,
        graceful_timeout=GRACEFUL_STOP_SECONDS,
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


class NotConfirmed(Exception):
    """RabbitMQ answered a publish with something other than an ack."""


async def declare_queue(channel: aio_pika.abc.AbstractChannel, queue: RabbitQueue
                         ) -> aio_pika.abc.AbstractQueue:
    """Declared with aio-pika exactly as FastStream declares it (either may go first)."""
    return await channel.declare_queue(
        queue.name, durable=queue.durable, exclusive=queue.exclusive,
        auto_delete=queue.auto_delete, arguments=dict(queue.arguments or {}))


class Publisher:
    """Persistent, mandatory, confirmed publishes on one aio-pika channel of a robust
    connection of its own: the gateway's, and the sender's decided statuses (whose
    `DirectConsumers` use the same connection).

    The channel confirms every publish and raises when RabbitMQ returns one as unroutable,
    so `publish` returning means the message is stored. After a lost connection aio-pika
    reconnects, reopens the channel and re-declares the queues declared through it;
    meanwhile `publish` fails fast (or at its deadline) and `connected` says False, so
    `/readyz` tells an orchestrator to stop sending webhooks here.
    """

    def __init__(self, url: str, service: str, *, exchange: str = "",
                 timeout: float = PUBLISH_TIMEOUT_SECONDS) -> None:
        self.url = url
        self.service = service
        self.exchange = exchange  # "" is the default exchange
        self.timeout = timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None

    async def connect(self) -> None:
        """Connect once; a broker that is not there at start-up fails the start."""
        self._connection = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": self.service})
        self._channel = await self._connection.channel(publisher_confirms=True,
                                                       on_return_raises=True)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    @property
    def connection(self) -> AbstractRobustConnection:
        """The robust connection, for other channels of this service's (its consumers')."""
        if self._connection is None:
            raise RuntimeError("Publisher.connect() was not called")
        return self._connection

    @property
    def channel(self) -> AbstractRobustChannel:
        if self._channel is None:
            raise RuntimeError("Publisher.connect() was not called")
        return self._channel

    async def declare_routes(self, exchange: RabbitExchange, works: Iterable[WorkQueue]
                             ) -> bool:
        """Declare `exchange` and each work queue with its parking queue (exactly as
        FastStream does: either may go first), the work queue bound by its name; False
        when this user may not (the broker's definitions hold them instead), after
        checking that the queues exist.

        On a channel of its own: a refusal closes the channel it happens on."""
        connection = self._connection
        if connection is None:
            raise RuntimeError("Publisher.connect() was not called")
        works = list(works)
        wanted = [queue for work in works for queue in (work.parked, work.queue)]
        try:
            async with connection.channel() as channel:
                declared = await channel.declare_exchange(
                    exchange.name, aio_pika.ExchangeType(exchange.type.value),
                    durable=exchange.durable)
                for work in works:
                    await declare_queue(channel, work.parked)
                    made = await declare_queue(channel, work.queue)
                    await made.bind(declared, routing_key=work.queue.name)
        except aiormq.exceptions.ChannelAccessRefused:
            pass
        else:
            return True
        for queue in wanted:
            try:
                async with connection.channel() as channel:
                    await channel.declare_queue(queue.name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise RuntimeError(
                    f"RabbitMQ has no queue {queue.name!r} and the {self.service} user may "
                    "not declare it: load the broker definitions (docs/deploy.md, "
                    "\"RabbitMQ users\")") from None
        return False

    def connected(self) -> bool:
        connection = self._connection
        return (connection is not None and connection.connected.is_set()
                and self._channel is not None and not self._channel.is_closed)

    async def publish(self, queue: RabbitQueue, body: bytes, *, message_id: str | None,
                      headers: Mapping[str, Any] | None = None) -> None:
        """Raises unless RabbitMQ confirmed `body` stored in `queue`; bounded in time."""
        channel = self.channel
        if channel.is_closed:  # reconnecting: say so now rather than at the deadline
            raise ChannelInvalidStateError("the channel to RabbitMQ is closed")
        properties = spec.Basic.Properties(
            delivery_mode=PERSISTENT, content_type="application/json",
            message_id=message_id, app_id=self.service,
            headers=dict(headers) if headers else None)
        async with asyncio.timeout(self.timeout):
            # aiormq's publish under aio-pika's robust channel: aio-pika's `Message` and
            # `Exchange.publish` cost ~20 µs more CPU per publish (bench/publish.py).
            # `wait=False` skips waiting for the socket to drain (the confirm cannot come
            # sooner anyway), which also frees the channel's lock for the next publish.
            underlay = cast("aiormq.Channel", await channel.get_underlay_channel())
            confirmed = await underlay.basic_publish(
                body, exchange=self.exchange, routing_key=queue.name, mandatory=True,
                properties=properties, wait=False)
        # A nack raises DeliveryError and a return PublishError; anything but an ack
        # (a channel without confirms answers None) is no proof of storage either.
        if isinstance(confirmed, spec.Basic.Ack):
            return
        raise NotConfirmed(f"RabbitMQ answered the publish with {confirmed!r}")
