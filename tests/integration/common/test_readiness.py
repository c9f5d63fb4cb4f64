"""Readiness means consuming: a consumer lost with its connection is seen, comes back
when aio-pika reconnects, and a process whose consumer never comes back stops itself."""

from __future__ import annotations

import asyncio
from typing import Any

from castghl.common.health import consumers_check, watch_consumers
from castghl.common.worker import Done, Outcome
from castghl.sandbox.relay import Relay

from .conftest import Job, Rig, eventually


async def done(_: Job, __: int) -> Outcome:
    return Done()


async def test_after_the_connection_is_cut_the_consumer_is_missing_then_back(
        rig: Rig, relay: tuple[Relay, str]) -> None:
    link, through = relay
    await rig.start(done, via=through)
    ready = consumers_check(rig.brokers[-1])
    assert await ready()

    link.cut()
    await eventually(lambda: _not(ready()), "readiness to see the consumer gone")
    link.restore()
    await eventually(ready, "the consumer to come back after reconnecting")
    await rig.send("after-the-cut")
    await rig.deliveries("after-the-cut", 1)
    await rig.stop()  # while the relay still stands


async def _not(check: object) -> bool:
    assert asyncio.iscoroutine(check)
    return not await check


async def test_a_consumer_that_stays_missing_on_a_live_connection_stops_the_process(
        rig: Rig) -> None:
    await rig.start(done)
    broker = rig.brokers[-1]
    stopped = asyncio.Event()
    watch = asyncio.create_task(watch_consumers(broker, grace=0.3, every=0.05,
                                                on_lost=stopped.set))
    try:
        await asyncio.sleep(0.5)  # a live consumer: several looks pass without a stop
        assert not stopped.is_set()
        # What the FastStream issue reports: connected, and the consumer not restored.
        [subscriber] = broker.subscribers
        queue: Any = getattr(subscriber, "_queue_obj")  # noqa: B009 (FastStream's own)
        await queue.cancel(getattr(subscriber, "_consumer_tag"))  # noqa: B009
        assert not await consumers_check(broker)()
        await eventually(stopped.is_set, "the watch to stop the process")
    finally:
        watch.cancel()
