"""The simulators' clock: real time until a test freezes, advances or resumes it."""

from __future__ import annotations

import math
import threading
import time

import pytest

from castghl.sandbox.cast.ratelimit import RateLimiter
from castghl.sandbox.clock import SimClock, steady_epoch


class RealTime:
    """A stand-in for the wall clock that moves only when the test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_reads_real_time_by_default() -> None:
    real = RealTime()
    clock = SimClock(real)

    first = clock()
    real.now += 2.5

    assert (first, clock()) == (1_000_000.0, 1_000_002.5)
    assert not clock.frozen


def test_freeze_stops_time_and_returns_the_reading() -> None:
    real = RealTime()
    clock = SimClock(real)

    at = clock.freeze()
    real.now += 60

    assert at == clock() == 1_000_000.0
    assert clock.frozen


def test_freezing_twice_keeps_the_first_reading() -> None:
    real = RealTime()
    clock = SimClock(real)
    clock.freeze()
    real.now += 60

    assert clock.freeze() == 1_000_000.0


def test_advance_moves_frozen_time_exactly() -> None:
    clock = SimClock(RealTime())
    clock.freeze()

    assert clock.advance(1.5) == 1_000_001.5
    assert clock.advance(0) == clock() == 1_000_001.5


def test_advance_moves_running_time_and_it_keeps_running() -> None:
    real = RealTime()
    clock = SimClock(real)

    clock.advance(10)
    real.now += 1

    assert clock() == 1_000_011.0
    assert not clock.frozen


def test_resume_goes_back_to_real_time_and_drops_the_advance() -> None:
    real = RealTime()
    clock = SimClock(real)
    clock.freeze()
    clock.advance(3600)
    real.now += 5

    clock.resume()

    assert clock() == 1_000_005.0
    assert not clock.frozen


@pytest.mark.parametrize("seconds", [-0.001, math.inf, -math.inf, math.nan])
def test_time_never_moves_backwards_or_by_infinity(seconds: float) -> None:
    clock = SimClock(RealTime())
    clock.freeze()

    with pytest.raises(ValueError, match="advances"):
        clock.advance(seconds)
    assert clock() == 1_000_000.0


def test_concurrent_advances_all_count() -> None:
    # The simulator's server thread and the test both steer it: no advance may be lost.
    clock = SimClock(RealTime(0.0))
    clock.freeze()

    def advance_many() -> None:
        for _ in range(1000):
            clock.advance(1)

    threads = [threading.Thread(target=advance_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert clock() == 8000.0


def test_default_real_time_is_epoch_seconds_that_never_step_back() -> None:
    read = steady_epoch()

    readings = [read() for _ in range(1000)]

    assert readings == sorted(readings)
    assert abs(readings[0] - time.time()) < 1
    assert abs(SimClock()() - time.time()) < 1


def test_one_advance_moves_a_bucket_refill_exactly() -> None:
    # What the simulators gain: Cast's 30/s bucket, emptied, holds exactly 30 tokens
    # one simulated second later, however long the test really took.
    clock = SimClock(RealTime())
    clock.freeze()
    limiter = RateLimiter(clock)
    assert all(limiter.try_acquire(30.0, 50) == 0.0 for _ in range(50))

    clock.advance(1.0)

    assert [limiter.try_acquire(30.0, 50) == 0.0 for _ in range(31)] == [True] * 30 + [False]
