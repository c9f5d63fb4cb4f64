"""Virtual time for rate limits: a clock and a `sleep` that tests move, so that no test
waits for real or depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
from typing import Any


class VirtualTime:
    """A clock and a `sleep` for the lane: sleepers wake in order of their wake time, and
    the clock jumps to each wake time, only once every task has had its turn."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Float dust must not let a waiter wake a hair before the moment it asked for.
        heapq.heappush(self._sleepers, (self.now + max(seconds, 1e-9), next(self._order), wake))
        await wake

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def run(self, *work: asyncio.Future[Any]) -> None:
        """Run tasks to completion, moving the clock whenever all of them wait on it."""
        pending = asyncio.gather(*work)
        while not pending.done():
            await settle()
            if self._sleepers and not pending.done():
                at, _, wake = heapq.heappop(self._sleepers)
                self.now = max(self.now, at)
                wake.set_result(None)
        await pending


async def settle() -> None:
    """Let every runnable task go as far as it can. A fixed number of loop turns, not a
    wait: the lane's tasks need a handful of turns to reach their next sleep."""
    for _ in range(20):
        await asyncio.sleep(0)


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))
