"""Outages of our own infrastructure: named once, waited out, never an attempt."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiormq.exceptions import AMQPConnectionError, ChannelInvalidStateError
from faststream.rabbit import RabbitBroker
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from castghl.common.errors import (
    BrokerUnavailable,
    RetryableError,
    ServiceUnavailable,
    StoreUnavailable,
    UncertainError,
)
from castghl.common.outages import OUTAGE_WAITS, OUTLAST_PAUSES, as_outage, outlast
from castghl.common.topology import WorkQueue
from castghl.common.worker import Retry, Settler, outcome_for


@pytest.mark.parametrize(("error", "expected"), [
    (ServerSelectionTimeoutError("no primary"), StoreUnavailable),
    (AutoReconnect("connection reset"), StoreUnavailable),
    (ChannelInvalidStateError("channel closed"), BrokerUnavailable),
    (AMQPConnectionError("connection lost"), BrokerUnavailable),
    (ServiceUnavailable("oauth away"), ServiceUnavailable),
    (RetryableError("cast 503"), None),
    (UncertainError("cast timed out"), None),
    (ValueError("a bug"), None),
])
def test_only_our_own_infrastructure_is_an_outage(error: Exception,
                                                  expected: type | None) -> None:
    outage = as_outage(error)
    assert (type(outage) if outage else None) is expected


def test_an_outage_retries_without_using_an_attempt_and_any_other_error_counts() -> None:
    backoff = (5.0, 30.0)
    assert outcome_for(StoreUnavailable("x"), 3, backoff) == Retry(30.0, "store_unavailable",
                                                                    counts=False)
    assert outcome_for(RetryableError("x", code="cast_unavailable"), 3, backoff) == Retry(
        30.0, "cast_unavailable")


async def mongo_away(*_: Any) -> Any:
    raise ServerSelectionTimeoutError("no server")


async def test_a_store_outage_on_the_last_attempt_waits_instead_of_giving_up() -> None:
    settler = Settler(cast(RabbitBroker, None), WorkQueue("unit.work", (5, 30)),
                      max_attempts=3, backoff=(5, 30))
    before = OUTAGE_WAITS.labels("store_unavailable")._value.get()
    assert await settler.outcome(cast(Any, None), 3, mongo_away) == Retry(
        30, "store_unavailable", counts=False)
    assert OUTAGE_WAITS.labels("store_unavailable")._value.get() == before + 1


class ReopeningBroker:
    """A broker whose publishing channel is closed for the first `closed` publishes."""

    def __init__(self, closed: int) -> None:
        self.closed = closed
        self.stored: list[str] = []

    async def publish(self, body: bytes, *, queue: Any, **_: Any) -> None:
        if self.closed:
            self.closed -= 1
            raise ChannelInvalidStateError("the channel to RabbitMQ is closed")
        self.stored.append(queue.name)


class Delivered:
    body = b"{}"
    message_id = "m1"

    def __init__(self) -> None:
        self.headers: dict[str, Any] = {}
        self.acked = False

    async def ack(self) -> None:
        self.acked = True


async def test_a_settle_waits_for_the_publishing_channel_then_acks() -> None:
    # After a broker restart a delivery can arrive before the publishing channel is back:
    # giving up would leave it unacked on a live channel, held until the process stops.
    broker = ReopeningBroker(closed=1)
    settler = Settler(cast(RabbitBroker, broker), WorkQueue("unit.work", (5, 30)),
                      max_attempts=3, backoff=(5, 30))
    message = Delivered()
    await settler.settle(cast(Any, message), Retry(5, "broker_unavailable", counts=False))
    assert broker.stored == ["unit.work.retry.5s"]
    assert message.acked


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def flaky(failures: int, error: Exception) -> Any:
    calls: list[int] = []

    async def write() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "recorded"

    write.calls = calls  # type: ignore[attr-defined]
    return write


async def test_a_record_is_repeated_until_the_store_answers() -> None:
    clock, write = Clock(), flaky(5, AutoReconnect("down"))
    assert await outlast(write, what="x", clock=clock, sleep=clock.sleep) == "recorded"
    assert len(write.calls) == 6
    assert clock.slept == [*OUTLAST_PAUSES, OUTLAST_PAUSES[-1]]


async def test_a_record_that_fails_otherwise_fails_at_once() -> None:
    clock, write = Clock(), flaky(1, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        await outlast(write, what="x", clock=clock, sleep=clock.sleep)
    assert clock.slept == []


async def test_an_outage_longer_than_the_patience_fails_the_record() -> None:
    clock, write = Clock(), flaky(1_000, AutoReconnect("down"))
    with pytest.raises(AutoReconnect):
        await outlast(write, what="x", patience=60, clock=clock, sleep=clock.sleep)
    assert 60 <= clock.now < 60 + OUTLAST_PAUSES[-1]
