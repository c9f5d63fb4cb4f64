"""The lane never lets more than `burst` calls into any rolling second, nor more than
`rate` per second sustained — checked on a simulated clock, with no real waiting."""

from __future__ import annotations

import asyncio
import bisect
import time

import pytest

from castghl.sender.lane import WINDOW_SLACK_SECONDS, Lane, RateLimit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admitted_times(limit: RateLimit, clock: FakeClock, calls: int) -> list[float]:
    """Drive `limit` by advancing the fake clock to each computed wait."""
    times = []
    for _ in range(calls):
        while (wait := limit.wait_needed()) > 0:
            clock.now += max(wait, 1e-9)  # float dust must not stall the loop
        limit.tokens -= 1 if limit.capacity != float("inf") else 0
        limit.sent.append(clock.now)
        times.append(clock.now)
    return times


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))


@pytest.mark.parametrize(("rate", "burst"), [(30, 50), (10, 10), (30, 30), (5, 50), (100, 120)])
def test_no_rolling_second_exceeds_the_burst_and_the_rate_holds(rate: float, burst: int
                                                                ) -> None:
    clock = FakeClock()
    limit = RateLimit(rate, burst, clock=clock)
    admitted_times(limit, clock, 1)
    clock.now += 10  # idle long enough to fill the bucket
    times = admitted_times(limit, clock, 600)
    assert max_in_any_window(times) <= burst
    after_burst = times[int(limit.capacity):]
    sustained = (len(after_burst) - 1) / (after_burst[-1] - after_burst[0])
    assert sustained <= rate * (1 + 1e-9)
    assert sustained >= rate * 0.97  # and it does not leave Cast's capacity unused


def test_a_fresh_lane_starts_empty() -> None:
    clock = FakeClock()
    times = admitted_times(RateLimit(30, 50, clock=clock), clock, 31)
    # Nothing saved up: the first second carries at most `rate` calls.
    assert max_in_any_window(times) <= 31
    assert times[-1] - times[0] == pytest.approx(1.0)


def test_after_idling_the_lane_bursts_what_fits_under_the_burst_with_headroom() -> None:
    clock = FakeClock()
    limit = RateLimit(30, 50, clock=clock)
    admitted_times(limit, clock, 1)
    clock.now += 60
    times = admitted_times(limit, clock, 25)
    # 50 less a tenth of headroom is 45 in any second: 15 at once, then 30/s.
    assert times.count(times[0]) == 15
    assert max_in_any_window(times) <= 45


def test_the_lane_starts_empty_when_first_used_not_when_built() -> None:
    clock = FakeClock()
    limit = RateLimit(30, 50, clock=clock)
    clock.now += 60  # built long ago, e.g. a standby replica that just became active
    times = admitted_times(limit, clock, 3)
    assert times[1] - times[0] == pytest.approx(1 / 30)


def test_key_limit_is_a_strict_rolling_window() -> None:
    clock = FakeClock()
    limit = RateLimit(10, 10, clock=clock, bucket=False)
    times = admitted_times(limit, clock, 35)
    assert max_in_any_window(times, 1.0 + WINDOW_SLACK_SECONDS) <= 10


def test_pause_blocks_everyone_and_drops_the_saved_burst() -> None:
    clock = FakeClock()
    limit = RateLimit(30, 50, clock=clock)
    admitted_times(limit, clock, 1)
    clock.now += 60
    limit.pause(2.0)
    assert limit.wait_needed() == pytest.approx(2.0)
    clock.now += 2.0
    # The saved tokens are gone, and none accrued during the pause.
    assert limit.wait_needed() == pytest.approx(1 / 30)


def test_invalid_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimit(0, 10)


async def test_lane_waits_for_the_key_limit_then_the_shared_one() -> None:
    lane = Lane(rate=1000, burst=1000, default_key_rate=2)
    for _ in range(2):
        await lane.acquire("cast_key_a")
    # A third call of a 2/s key must wait for the rolling second to pass ...
    assert lane.keys["cast_key_a"].wait_needed() > 0.5
    # ... while another key, with its own window, goes at once.
    await lane.acquire("cast_key_b", key_rate=5)
    assert lane.keys["cast_key_b"].wait_needed() == 0
    started = asyncio.get_running_loop().time()
    await lane.acquire("cast_key_a")
    assert asyncio.get_running_loop().time() - started >= 0.5


async def test_a_key_call_is_counted_when_the_shared_lane_lets_it_go() -> None:
    lane = Lane(rate=1000, burst=1000, default_key_rate=5)
    started = time.monotonic()
    lane.pause(0.3)  # the shared lane is closed for a while (a 429)
    await lane.acquire("cast_key_a")
    # Counted at the real send time, not when the key's own window had room.
    assert lane.keys["cast_key_a"].sent[-1] >= started + 0.29
    assert lane.ip.sent[-1] >= started + 0.29
