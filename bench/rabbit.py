"""RabbitMQ seen from the benchmark: what is stored, which version, and cleaning up.

Each run uses its own QUEUE_PREFIX, so deleting by the topology's names removes exactly
what this run declared and never touches another stack sharing the broker. Every call
is bounded in time: a broker that stops completing AMQP handshakes (seen here when its
file-handle budget ran out under hundreds of leftover quorum queues) must not hang
`make bench` forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aio_pika
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import AMQPError

from castghl.common.topology import Topology

TIMEOUT_SECONDS = 15.0
T = TypeVar("T")

HANDSHAKE_HINT = (
    "RabbitMQ accepted TCP but did not finish the AMQP handshake. If "
    "`rabbitmqctl eval 'file_handle_cache:info().'` shows total_used >= total_limit, "
    "too many queues are open: delete leftover test queues or raise RabbitMQ's "
    "open-file limit (1024 gives ~400 quorum queues).")


class RabbitUnavailable(RuntimeError):
    """The broker did not answer in time; the message says what was attempted."""


def _call(url: str, what: str, work: Callable[[AbstractConnection], Awaitable[T]]
          ) -> T:
    async def run() -> T:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            connection = await aio_pika.connect(url, timeout=TIMEOUT_SECONDS)
            async with connection:
                return await work(connection)

    try:
        return asyncio.run(run())
    except TimeoutError:
        raise RabbitUnavailable(f"{what}: no answer within {TIMEOUT_SECONDS:g} s. "
                                f"{HANDSHAKE_HINT}") from None
    except (OSError, AMQPError) as exc:
        raise RabbitUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


def message_count(url: str, queue: str) -> int:
    """Messages sitting in `queue` (passive declare: changes nothing)."""
    async def count(connection: AbstractConnection) -> int:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0

    return _call(url, f"counting {queue}", count)


def delete_queues(url: str, topology: Topology) -> int:
    """Delete this run's queues; on failure say so (with the prefix) rather than crash."""
    async def delete(connection: AbstractConnection) -> int:
        deleted = 0
        for name in topology.queue_names():
            # A channel per delete: deleting a queue that was never declared may close it.
            channel = await connection.channel()
            with contextlib.suppress(AMQPError):
                await channel.queue_delete(name)
                deleted += 1
            with contextlib.suppress(AMQPError):
                await channel.close()
        return deleted

    try:
        return _call(url, f"deleting queues {topology.prefix}*", delete)
    except RabbitUnavailable as exc:
        print(f"[bench] WARNING: queues {topology.prefix}* left behind: {exc}",
              file=sys.stderr)
        return 0


def server_version(url: str) -> str:
    """The broker's version; also proves a fresh AMQP connection completes (raises if not)."""
    async def version(connection: AbstractConnection) -> str:
        assert connection.transport is not None
        found = connection.transport.connection.server_properties.get("version", "?")
        return found.decode() if isinstance(found, bytes) else str(found)

    return _call(url, "connecting", version)
