"""Outages of the bridge's own infrastructure are waited out, never held against a message.

MongoDB going away (a restart, a failover, a network cut), a channel to RabbitMQ closed
while it reopens, or another service of the bridge not answering says nothing about the
message in hand. `as_outage` names such a
failure as the error family's `ServiceUnavailable`, which the `Settler` retries without
using up an attempt: a long outage delays messages and parks or fails none.

One moment needs more: after an outside system took an action (Cast accepted a part, GHL
accepted a status), recording it is what stops a retry from taking the action again.
`outlast` repeats such a write until the store answers, instead of failing the message
into a retry that would repeat the action.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from aiormq.exceptions import AMQPConnectionError, ChannelInvalidStateError
from prometheus_client import Counter
from pymongo.errors import ConnectionFailure

from castghl.common.errors import BrokerUnavailable, ServiceUnavailable, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

OUTAGE_WAITS = Counter("castghl_outage_waits_total",
                       "Waits for the bridge's own infrastructure (a store, another service)",
                       ["code"])
# How long a record of an outside action is retried through a store outage: longer than
# a MongoDB restart or failover; beyond it the write fails as any other would.
OUTLAST_SECONDS: Final = 600.0
OUTLAST_PAUSES: Final = (0.5, 1.0, 2.0, 5.0)


def as_outage(error: BaseException) -> ServiceUnavailable | None:
    """The outage `error` stands for, or None when it is something else. PyMongo's
    `ConnectionFailure` covers no server selectable, a lost connection and a timeout."""
    if isinstance(error, ServiceUnavailable):
        return error
    if isinstance(error, ConnectionFailure):
        return StoreUnavailable(f"MongoDB did not answer ({type(error).__name__})")
    if isinstance(error, ChannelInvalidStateError | AMQPConnectionError):
        return BrokerUnavailable(f"the channel to RabbitMQ is closed ({type(error).__name__})")
    return None


async def outlast(write: Callable[[], Awaitable[T]], *, what: str,
                  patience: float = OUTLAST_SECONDS,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> T:
    """`write()`, repeated through an outage of up to `patience` seconds."""
    deadline = clock() + patience
    tries = 0
    while True:
        try:
            return await write()
        except Exception as error:
            outage = as_outage(error)
            if outage is None or clock() >= deadline:
                raise
            OUTAGE_WAITS.labels(outage.code).inc()
            if tries == 0:
                log.warning("infrastructure away after an outside action; waiting to "
                            "record it",
                            extra={"record": what, "error_code": outage.code})
            await sleep(OUTLAST_PAUSES[min(tries, len(OUTLAST_PAUSES) - 1)])
        tries += 1
