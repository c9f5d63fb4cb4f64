"""The lane never lets more than `burst` calls into any rolling second, nor more than
`rate` per second sustained — checked on virtual time through the lane's own methods, so
no test here waits for real or depends on how fast the machine is."""

from __future__ import annotations

import asyncio

import pytest

from castghl.sender.lane import KEY_LIMITS_KEPT, WINDOW_SLACK_SECONDS, Lane, RateLimit

from .virtual_time import VirtualTime, max_in_any_window, settle


async def admitted_times(limit: RateLimit, time: VirtualTime, calls: int) -> list[float]:
    """The moments `calls` sequential callers are let through by `limit.acquire()`."""
    times = []
    for _ in range(calls):
        await time.run(asyncio.ensure_future(limit.acquire()))
        times.append(time.now)
    return times


@pytest.fixture
def time() -> VirtualTime:
    return VirtualTime()


@pytest.mark.parametrize(("rate", "burst"), [(30, 50), (10, 10), (30, 30), (5, 50), (100, 120)])
async def test_no_rolling_second_exceeds_the_burst_and_the_rate_holds(
        time: VirtualTime, rate: float, burst: int) -> None:
    limit = RateLimit(rate, burst, clock=time, sleep=time.sleep)
    await admitted_times(limit, time, 1)
    time.advance(10)  # idle long enough to fill the bucket
    times = await admitted_times(limit, time, 600)
    assert max_in_any_window(times) <= burst
    after_burst = times[int(limit.capacity):]
    sustained = (len(after_burst) - 1) / (after_burst[-1] - after_burst[0])
    assert sustained <= rate * (1 + 1e-9)
    assert sustained >= rate * 0.97  # and it does not leave Cast's capacity unused


async def test_a_fresh_lane_starts_empty(time: VirtualTime) -> None:
    times = await admitted_times(RateLimit(30, 50, clock=time, sleep=time.sleep), time, 31)
    # Nothing saved up: the first second carries at most `rate` calls.
    assert max_in_any_window(times) <= 31
    assert times[-1] - times[0] == pytest.approx(1.0)


async def test_after_idling_the_lane_bursts_what_fits_under_the_burst_with_headroom(
        time: VirtualTime) -> None:
    limit = RateLimit(30, 50, clock=time, sleep=time.sleep)
    await admitted_times(limit, time, 1)
    time.advance(60)
    times = await admitted_times(limit, time, 25)
    # 50 less a tenth of headroom is 45 in any second: 15 at once, then 30/s.
    assert times.count(times[0]) == 15
    assert max_in_any_window(times) <= 45


async def test_the_lane_starts_empty_when_first_used_not_when_built(time: VirtualTime) -> None:
    limit = RateLimit(30, 50, clock=time, sleep=time.sleep)
    time.advance(60)  # built long ago, e.g. a standby replica that just became active
    times = await admitted_times(limit, time, 3)
    assert times[1] - times[0] == pytest.approx(1 / 30)


async def test_key_limit_is_a_strict_rolling_window(time: VirtualTime) -> None:
    limit = RateLimit(10, 10, clock=time, sleep=time.sleep, bucket=False)
    times = await admitted_times(limit, time, 35)
    assert max_in_any_window(times, 1.0 + WINDOW_SLACK_SECONDS) <= 10


async def test_pause_blocks_everyone_and_drops_the_saved_burst(time: VirtualTime) -> None:
    limit = RateLimit(30, 50, clock=time, sleep=time.sleep)
    await admitted_times(limit, time, 1)
    time.advance(60)
    limit.pause(2.0)
    paused_at = time.now
    first, second = await admitted_times(limit, time, 2)
    # Nobody before the pause ends; then the saved tokens are gone and none accrued.
    assert first == pytest.approx(paused_at + 2.0 + 1 / 30)
    assert second - first == pytest.approx(1 / 30)


def test_invalid_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimit(0, 10)


async def test_lane_waits_for_the_key_limit_then_the_shared_one(time: VirtualTime) -> None:
    lane = Lane(rate=1000, burst=1000, default_key_rate=2, clock=time, sleep=time.sleep)
    started = time.now
    for _ in range(2):
        await time.run(asyncio.ensure_future(lane.acquire("cast_key_a")))
    # Another key, with its own window, goes at once ...
    await time.run(asyncio.ensure_future(lane.acquire("cast_key_b", key_rate=5)))
    assert time.now == pytest.approx(started, abs=0.01)
    # ... while a third call of a 2/s key waits for its rolling second to pass.
    await time.run(asyncio.ensure_future(lane.acquire("cast_key_a")))
    assert time.now - started >= 1.0


async def test_a_key_call_is_counted_when_the_shared_lane_lets_it_go(time: VirtualTime) -> None:
    lane = Lane(rate=1000, burst=1000, default_key_rate=5, clock=time, sleep=time.sleep)
    started = time.now
    lane.pause(0.3)  # the shared lane is closed for a while (a 429)
    await time.run(asyncio.ensure_future(lane.acquire("cast_key_a")))
    # Counted at the real send time, not when the key's own window had room.
    assert lane.keys["cast_key_a"].sent[-1] >= started + 0.3
    assert lane.ip.sent[-1] >= started + 0.3


async def test_the_lane_keeps_no_limit_for_keys_idle_past_their_window(
        time: VirtualTime) -> None:
    lane = Lane(rate=100_000, burst=100_000, default_key_rate=2, clock=time, sleep=time.sleep)
    for n in range(KEY_LIMITS_KEPT - 1):
        await time.run(asyncio.ensure_future(lane.acquire(f"cast_key_{n}")))
    time.advance(1.0 + WINDOW_SLACK_SECONDS + 0.01)  # every key so far goes idle
    for _ in range(2):  # this one fills its window of 2 calls a second
        await time.run(asyncio.ensure_future(lane.acquire("cast_key_busy")))
    busy = lane.keys["cast_key_busy"]
    assert len(lane.keys) == KEY_LIMITS_KEPT
    await time.run(asyncio.ensure_future(lane.acquire("cast_key_new")))  # one too many
    assert set(lane.keys) == {"cast_key_busy", "cast_key_new"}
    # A limit still counting its window is kept, and still holds its key back.
    assert lane.keys["cast_key_busy"] is busy
    assert busy.wait_needed() > 0


async def test_concurrent_callers_on_many_keys_never_exceed_any_limit(
        time: VirtualTime) -> None:
    lane = Lane(rate=30, burst=50, default_key_rate=10, clock=time, sleep=time.sleep)
    granted: dict[str, list[float]] = {}

    async def call(key: str) -> None:
        await lane.acquire(key)
        granted.setdefault(key, []).append(time.now)

    keys = [f"cast_key_{n % 4}" for n in range(240)]
    await time.run(*(asyncio.ensure_future(call(key)) for key in keys))
    every = [t for times in granted.values() for t in times]
    assert len(every) == 240
    assert max_in_any_window(every) <= 45  # the burst, less its headroom
    for times in granted.values():
        assert max_in_any_window(times, 1.0 + WINDOW_SLACK_SECONDS) <= 10
    # Four keys at 10/s each cap the lane at 40/s; the shared 30/s binds first.
    assert (len(every) - 1) / (max(every) - min(every)) <= 30 * (1 + 1e-9)


async def test_reads_go_only_when_no_send_waits(time: VirtualTime) -> None:
    lane = Lane(rate=30, burst=50, default_key_rate=30, clock=time, sleep=time.sleep)
    order: list[str] = []

    async def send(n: int) -> None:
        await lane.acquire("cast_key_a")
        order.append(f"send{n}")

    async def read() -> None:
        await lane.acquire_behind_sends()
        order.append("read")

    # A burst of sends, and a receipt check asked for while they wait.
    tasks = [asyncio.ensure_future(send(n)) for n in range(20)]
    await settle()
    tasks.append(asyncio.ensure_future(read()))
    await time.run(*tasks)
    assert order[-1] == "read"
    assert max_in_any_window(list(lane.ip.sent)) <= 45
