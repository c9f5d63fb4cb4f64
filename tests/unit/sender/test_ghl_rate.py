"""GHL's per-location limit (100 calls in any 10 s), kept by several replicas together on
one schedule — on virtual time, so nothing here waits for real."""

from __future__ import annotations

import asyncio

import pytest

from castghl.common.errors import RateLimited
from castghl.sender.ghl_rate import SCHEDULES_KEPT, Gcra, LocationRate, PacedTokens

from .fakes import FakeTokens, MemorySchedules
from .virtual_time import VirtualTime, max_in_any_window

GHL = Gcra.within(100, 10.0)


def rate(schedules: MemorySchedules, time: VirtualTime, max_wait: float = 3600.0
         ) -> LocationRate:
    return LocationRate(schedules, GHL, max_wait=max_wait, clock=time, sleep=time.sleep)


def test_a_fifth_of_the_limit_goes_at_once_then_an_even_pace() -> None:
    now = 5_000_000
    tat = None
    for _ in range(20):
        tat, wait = GHL.admit(tat, now)
        assert wait == 0
    assert tat is not None
    _, wait = GHL.admit(tat, now)
    assert wait == 125_000  # 10 s / (100 - 20) between calls


async def test_replicas_together_never_exceed_100_calls_in_any_10_seconds() -> None:
    time, schedules = VirtualTime(), MemorySchedules()
    replicas = [rate(schedules, time) for _ in range(3)]
    admitted: list[float] = []
    end = time.now + 60.0

    async def caller(limit: LocationRate) -> None:
        while time.now < end:
            await limit.acquire("loc1")
            admitted.append(time.now)

    await time.run(*(asyncio.ensure_future(caller(r)) for r in replicas for _ in range(10)))
    assert max_in_any_window(admitted, 10.0) <= 100
    # And no slower than that: the burst, then 8 calls a second.
    assert len(admitted) >= 20 + 8 * 60 - 1


class CountedSchedules(MemorySchedules):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def tat(self, key: str) -> int | None:
        self.calls += 1
        return await super().tat(key)

    async def swap(self, key: str, old: int | None, new: int) -> bool:
        self.calls += 1
        return await super().swap(key, old, new)


async def test_callers_asking_at_once_are_admitted_by_one_read_and_one_swap() -> None:
    time, schedules = VirtualTime(), CountedSchedules()
    limit = rate(schedules, time)
    start = time.now

    await time.run(*(asyncio.ensure_future(limit.acquire("loc1")) for _ in range(20)))

    assert (time.now, schedules.calls) == (start, 2)  # the burst: all at once
    late = [asyncio.ensure_future(limit.acquire("loc1")) for _ in range(8)]
    await time.run(*late)
    assert time.now == pytest.approx(start + 1.0)  # then 8 calls a second


async def test_the_next_round_sets_the_schedule_it_knows_and_reads_only_when_it_lost(
) -> None:
    time, schedules = VirtualTime(), CountedSchedules()
    limit, other = rate(schedules, time), rate(schedules, time)
    await time.run(asyncio.ensure_future(limit.acquire("loc1")))
    assert schedules.calls == 2  # read, then set
    await time.run(asyncio.ensure_future(limit.acquire("loc1")))
    assert schedules.calls == 3  # set against the schedule it wrote: no read
    await time.run(asyncio.ensure_future(other.acquire("loc1")))  # another replica
    schedules.calls = 0
    await time.run(asyncio.ensure_future(limit.acquire("loc1")))
    assert schedules.calls == 3  # a set that lost, a read, a set


async def test_schedules_are_remembered_for_a_bounded_number_of_locations() -> None:
    time, schedules = VirtualTime(), CountedSchedules()
    limit = rate(schedules, time)
    for n in range(SCHEDULES_KEPT + 5):
        await time.run(asyncio.ensure_future(limit.acquire(f"loc{n}")))
    schedules.calls = 0
    await time.run(asyncio.ensure_future(limit.acquire("loc0")))  # forgotten: read again
    assert schedules.calls == 2
    await time.run(asyncio.ensure_future(limit.acquire(f"loc{SCHEDULES_KEPT + 4}")))
    assert schedules.calls == 3  # the latest is still known


async def test_a_caller_that_gives_up_waiting_leaves_the_others_their_turn() -> None:
    time, schedules = VirtualTime(), MemorySchedules()
    limit = rate(schedules, time)
    await time.run(*(asyncio.ensure_future(limit.acquire("loc1")) for _ in range(20)))
    first, second = (asyncio.ensure_future(limit.acquire("loc1")) for _ in range(2))
    await asyncio.sleep(0)
    first.cancel()
    await time.run(second)
    assert second.done()
    assert not second.cancelled()


async def test_one_location_using_up_its_limit_does_not_slow_another() -> None:
    time, schedules = VirtualTime(), MemorySchedules()
    limit = rate(schedules, time)
    start = time.now
    for _ in range(20):
        await time.run(asyncio.ensure_future(limit.acquire("busy")))
    await time.run(asyncio.ensure_future(limit.acquire("quiet")))
    assert time.now == start


async def test_a_wait_longer_than_the_limit_allows_is_deferred_without_a_permit() -> None:
    time, schedules = VirtualTime(), MemorySchedules()
    limit = rate(schedules, time, max_wait=2.0)
    # Calls already booked 2.125 s past what the burst allows.
    schedules.tats["loc1"] = round((time.now + 2.125) * 1_000_000) + GHL.tolerance_us
    held = dict(schedules.tats)
    with pytest.raises(RateLimited) as raised:
        await limit.acquire("loc1")
    assert raised.value.code == "ghl_location_rate"
    assert raised.value.retry_after == pytest.approx(2.125)
    assert schedules.tats == held


async def test_each_token_and_each_refresh_takes_a_permit() -> None:
    time, schedules = VirtualTime(), MemorySchedules()
    paced = PacedTokens(FakeTokens([f"tok{n}" for n in range(20)]), rate(schedules, time))
    start = time.now
    for _ in range(10):
        await time.run(asyncio.ensure_future(paced.token("loc1")))
    for _ in range(10):
        await time.run(asyncio.ensure_future(paced.refresh("loc1", "stale")))
    assert time.now == start  # 20 calls: the burst
    await time.run(asyncio.ensure_future(paced.token("loc1")))
    assert time.now == pytest.approx(start + 0.125)
