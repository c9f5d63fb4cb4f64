"""How a worker finishes with a message: done, retry after a delay, or park.

Handlers decide *what* happened: they return an `Outcome`, or raise from the error family.
`Settler` is the one place that turns either into broker actions — `outcome_for` maps an
error to retry or park, the attempt budget is counted here and nowhere else, and a
queue whose messages must end otherwise than parked (an outbound SMS ends with a `failed`
status) says how through its `exhausted` hook. Broker actions always go publish-then-ack,
so a crash in between duplicates a message (which every handler tolerates) instead of
losing it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeAlias, TypeVar

from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.rabbit.message import RabbitMessage
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ValidationError

from castghl.common.broker import publish
from castghl.common.errors import (
    BridgeError,
    PermanentError,
    RateLimited,
    RetryableError,
    ServiceUnavailable,
)
from castghl.common.logging import log_context
from castghl.common.outages import OUTAGE_WAITS, as_outage, outlast
from castghl.common.topology import ATTEMPT_HEADER, PARKED_REASON_HEADER, WorkQueue
from castghl.common.validation import describe

log = logging.getLogger(__name__)

PARKED = Counter("castghl_parked_total", "Messages moved to a parking queue", ["queue", "code"])
RETRIED = Counter("castghl_retried_total", "Messages sent to a retry tier", ["queue", "code"])
IN_FLIGHT = Gauge("castghl_in_flight", "Messages being handled now, not yet settled",
                  ["queue"])


@dataclass(frozen=True)
class Done:
    pass


@dataclass(frozen=True)
class Retry:
    """Try again after `delay` seconds. `counts` is False for waits that are not failures
    (rate limits, GHL's status race, an outage of our own infrastructure), which must not
    use up the attempt budget."""

    delay: float
    code: str
    counts: bool = True


@dataclass(frozen=True)
class Park:
    code: str
    reason: str


Outcome = Done | Retry | Park
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[M, int], Awaitable[Outcome]]
# What to do with a message whose attempts ran out (default: park it).
Exhausted = Callable[[Any, Retry, int], Awaitable[Outcome]]


# The argument of a worker subscriber's handler: the delivery itself (`undecoded`). `Any`
# for FastStream, which refuses the class and would resolve `Annotated[..., Context()]`
# in a worker thread; `Settler.run` takes it as the `RabbitMessage` it is.
Delivery: TypeAlias = Any


async def undecoded(message: RabbitMessage) -> RabbitMessage:
    """The decoder of every worker subscriber: the delivery itself, as its handler's one
    argument (a `Delivery`), for `Settler.run` to read.

    FastStream would otherwise parse a JSON-marked body itself, and a body that fails to
    parse would never reach the Settler to be parked: it would stay unacked, holding a
    prefetch slot, and come back after every reconnect. And a handler that asked for the
    message through FastStream's `Context` would have it resolved in a worker thread for
    every delivery (its resolver is synchronous), a thread hop per message."""
    return message


class Received(Protocol):
    """A delivery as `Settler` reads it: FastStream's `RabbitMessage`, or aio-pika's
    `IncomingMessage` where a queue is consumed without FastStream (consumers.py)."""

    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, Any]: ...
    @property
    def message_id(self) -> str | None: ...
    async def ack(self) -> None: ...


def channel_open(message: Received) -> Callable[[], bool]:
    """Whether the AMQP channel `message` came on is still open. A single active consumer
    whose channel closed has lost its turn: after the reconnect another replica may hold
    it, and only a new delivery says otherwise."""
    # aio-pika's delivery holds its channel; FastStream's wraps aio-pika's.
    channel = getattr(getattr(message, "raw_message", message), "channel", None)
    if channel is None:
        raise TypeError(f"not an AMQP delivery: {type(message).__name__}")
    return lambda: not channel.is_closed


def attempt_of(message: Received) -> int:
    """1 for a first delivery; tiers carry the count forward in a header."""
    try:
        return max(1, int(message.headers.get(ATTEMPT_HEADER, 1)))
    except (TypeError, ValueError):
        return 1


def outcome_for(error: BridgeError, attempt: int, backoff: Sequence[float]) -> Outcome:
    """The error family, mapped once: wait, retry with backoff, or park."""
    if isinstance(error, RateLimited):
        return Retry(error.retry_after or backoff[0], error.code, counts=False)
    if isinstance(error, PermanentError):
        return Park(error.code, error.detail)
    delay = backoff[min(attempt - 1, len(backoff) - 1)]
    retry_after = getattr(error, "retry_after", None)
    # An outage of our own infrastructure is not the message failing (castghl.common.outages).
    return Retry(max(delay, retry_after or 0), error.code,
                 counts=not isinstance(error, ServiceUnavailable))


def gave_up(retry: Retry, attempt: int) -> Park:
    return Park(retry.code, f"gave up after {attempt} attempts ({retry.code})")


class Settler:
    """Acks, re-queues through a retry tier, or parks — for one work queue."""

    def __init__(self, broker: RabbitBroker, work: WorkQueue, max_attempts: int,
                 backoff: Sequence[float], *, exhausted: Exhausted | None = None) -> None:
        self.broker = broker
        self.work = work
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.exhausted = exhausted

    async def run(self, message: Received, model: type[M], handle: Handler[M]) -> None:
        """Parse, handle and settle one delivery. Never raises for a bad message: an
        unreadable one is parked, an unexpected failure retried (and parked when the
        attempts run out); only a failure to settle leaves it unacked for redelivery."""
        with IN_FLIGHT.labels(self.work.name).track_inprogress():
            await self._run(message, model, handle)

    async def _run(self, message: Received, model: type[M], handle: Handler[M]) -> None:
        attempt = attempt_of(message)
        try:
            parsed = model.model_validate_json(message.body)
        except ValidationError as exc:
            await self.settle(message, Park("unreadable",
                                            f"not a {model.__name__}: {describe(exc)}"))
            return
        with log_context(messageId=getattr(parsed, "message_id", None),
                         locationId=getattr(parsed, "location_id", None)):
            await self.settle(message, await self.outcome(parsed, attempt, handle))

    async def outcome(self, parsed: M, attempt: int, handle: Handler[M]) -> Outcome:
        """What becomes of one delivery of `parsed`: the handler's outcome, or its error
        mapped by `outcome_for`, with the attempt budget applied. No broker needed."""
        try:
            outcome = await handle(parsed, attempt)
        except Exception as exc:
            error = exc if isinstance(exc, BridgeError) else as_outage(exc)
            if error is None:
                log.exception("unexpected failure while handling a message",
                              extra={"queue": self.work.name, "attempt": attempt})
                error = RetryableError("unexpected", code="unexpected")
            elif isinstance(error, ServiceUnavailable):
                OUTAGE_WAITS.labels(error.code).inc()
                log.warning("infrastructure away; the message waits without using an "
                            "attempt", extra={"queue": self.work.name,
                                              "error_code": error.code})
            outcome = outcome_for(error, attempt, self.backoff)
        if isinstance(outcome, Retry) and outcome.counts and attempt >= self.max_attempts:
            outcome = await self._give_up(parsed, outcome, attempt)
        return outcome

    async def _give_up(self, parsed: BaseModel, retry: Retry, attempt: int) -> Outcome:
        if self.exhausted is None:
            return gave_up(retry, attempt)
        try:
            return await self.exhausted(parsed, retry, attempt)
        except Exception:
            # Ending it failed too (its store away, say): try the ending again later,
            # without spending what is already spent.
            log.exception("could not end a message whose attempts ran out",
                          extra={"queue": self.work.name, "attempt": attempt})
            return Retry(self.backoff[-1], retry.code, counts=False)

    async def settle(self, message: Received, outcome: Outcome) -> None:
        attempt = attempt_of(message)
        headers: dict[str, Any] = dict(message.headers)
        if isinstance(outcome, Retry):
            headers[ATTEMPT_HEADER] = attempt + 1 if outcome.counts else attempt
            tier = self.work.tier_for(outcome.delay)
            await self._publish(tier, message, headers)
            RETRIED.labels(self.work.name, outcome.code).inc()
            log.info("retry scheduled", extra={"queue": self.work.name, "tier": tier.name,
                                               "attempt": attempt, "error_code": outcome.code})
        elif isinstance(outcome, Park):
            headers[PARKED_REASON_HEADER] = outcome.reason[:500]
            await self._publish(self.work.parked, message, headers)
            PARKED.labels(self.work.name, outcome.code).inc()
            log.warning("message parked", extra={"queue": self.work.parked.name,
                                                 "error_code": outcome.code,
                                                 "reason": outcome.reason})
        await message.ack()

    async def _publish(self, queue: RabbitQueue, message: Received,
                       headers: dict[str, Any]) -> None:
        # Through a broker outage: after a restart a consumer can get deliveries before
        # this process's publishing channel is back, and a settle that gave up would
        # leave the delivery unacked on a live channel, held until the process stops.
        await outlast(partial(publish, self.broker, queue, message.body, headers=headers,
                              message_id=message.message_id), what="settle")
