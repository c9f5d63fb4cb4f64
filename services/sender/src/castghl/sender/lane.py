"""The Cast lane: every Cast call waits here, so Cast's limits hold (invariant 4).

Cast allows 30 requests/s per source IP, in bursts of up to 50, for all API keys together,
and (newer doc) a per-account rate for each key. We read "burst 50" strictly: never more
than `burst` requests in any rolling second, and never more than `rate` per second
sustained. A token bucket of capacity `burst - rate` refilled at `rate` is the largest
bucket that honours both (in any window of T seconds it admits at most
`burst - rate + rate * T`); a log of the last `burst` send times adds a hard guard
against timing jitter at window edges. Key limits use the log alone: at most `rate`
calls in any rolling second.

A tenth of the burst is kept back as headroom: our clock decides when a call leaves,
Cast's clock when it arrives, and network jitter between the two must not push one call
over Cast's window.

Only one replica owns the lane at a time (the outbound queue has a single active
consumer), so these in-process limits are global. A lane starts empty, counted from its
first call rather than from process start: a replica that just became the active
consumer may follow one that was sending a moment ago. A 429 pauses the whole lane for
`Retry-After`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

# Slack added to the rolling window: send times are ours, arrival times are Cast's.
WINDOW_SLACK_SECONDS: Final = 0.02
# Past this many Cast keys' limits, those idle for a whole window are dropped as another
# is added: an idle limit is the same as a new one, and the lane's owner must not keep
# one for every key it ever sent on.
KEY_LIMITS_KEPT: Final = 1_000
Clock = Callable[[], float]
# Waiting is injected with the clock: tests drive both by hand, so no test of the lane
# depends on how fast the machine is.
Sleep = Callable[[float], Awaitable[None]]


class RateLimit:
    """Waits until one more call fits; FIFO among waiters (asyncio.Lock is fair)."""

    def __init__(self, rate: float, burst: int | None = None, *, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep, bucket: bool = True) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        burst = int(rate) if burst is None else burst
        self.rate = min(rate, float(burst))
        # Headroom comes out of the burst only, never out of the sustained rate.
        headroom = max(1, burst // 10) if bucket else 0
        self.window_limit = max(1, math.ceil(self.rate), burst - headroom)
        self.capacity = max(1.0, self.window_limit - self.rate) if bucket else float("inf")
        self.clock = clock
        self.sleep = sleep
        self.tokens = 0.0
        self.updated: float | None = None  # set by the first call: the lane starts empty
        self.paused_until = 0.0
        self.sent: deque[float] = deque(maxlen=self.window_limit)
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        if self.updated is None:
            self.updated = now
        # `updated` may lie in the future after a pause: nothing accrues until it ends.
        if self.capacity != float("inf") and now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)

    def wait_needed(self) -> float:
        """Seconds until a call fits now (0 when it does)."""
        now = self.clock()
        self._refill(now)
        waits = [self.paused_until - now]
        if self.capacity != float("inf") and self.tokens < 1:
            waits.append((1 - self.tokens) / self.rate)
        if len(self.sent) >= self.window_limit:
            waits.append(self.sent[0] + 1.0 + WINDOW_SLACK_SECONDS - now)
        return max(0.0, *waits)

    async def _wait_for_room(self) -> None:
        # Not polling: each sleep lasts exactly until the computed moment a call fits.
        while (wait := self.wait_needed()) > 0:
            await self.sleep(wait)

    def _take(self) -> None:
        if self.capacity != float("inf"):
            self.tokens -= 1
        self.sent.append(self.clock())

    async def acquire(self) -> None:
        async with self._lock:
            await self._wait_for_room()
            self._take()

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Wait for room and keep it while the caller waits for other limits; the call
        is counted when the block ends, i.e. when the caller is about to send."""
        async with self._lock:
            await self._wait_for_room()
            yield
            self._take()

    def idle(self, now: float) -> bool:
        """Nothing of this limit's state can hold back a call any more: a new one would
        behave the same."""
        return (not self._lock.locked() and now >= self.paused_until
                and (not self.sent or now - self.sent[-1] > 1.0 + WINDOW_SLACK_SECONDS)
                and (self.capacity == float("inf") or self.tokens >= self.capacity))

    def pause(self, seconds: float) -> None:
        """Cast said 429: nobody calls before `seconds` from now, and no saved-up burst."""
        now = self.clock()
        self.paused_until = max(self.paused_until, now + seconds)
        self.tokens = 0.0
        self.updated = self.paused_until


class Lane:
    """The shared per-IP limit plus one rolling-window limit per Cast API key."""

    def __init__(self, rate: float, burst: int, default_key_rate: float, *,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.ip = RateLimit(rate, burst, clock=clock, sleep=sleep)
        self.default_key_rate = default_key_rate
        self.clock = clock
        self.sleep = sleep
        self.keys: dict[str, RateLimit] = {}
        self._sends_waiting = 0
        self._no_send_waiting = asyncio.Event()
        self._no_send_waiting.set()

    def _key_limit(self, api_key: str, rate: float | None) -> RateLimit:
        rate = rate or self.default_key_rate
        limit = self.keys.get(api_key)
        if limit is None or limit.rate != min(rate, float(max(1, int(rate)))):
            if limit is None and len(self.keys) >= KEY_LIMITS_KEPT:
                now = self.clock()
                for key in [key for key, kept in self.keys.items() if kept.idle(now)]:
                    del self.keys[key]
            limit = self.keys[api_key] = RateLimit(rate, max(1, int(rate)), clock=self.clock,
                                                   sleep=self.sleep, bucket=False)
        return limit

    async def acquire(self, api_key: str, key_rate: float | None = None) -> None:
        """Return when one call may leave now. The caller sends right away: times are
        recorded at the grant, so nothing slow may sit between this and the request."""
        # Counted as waiting from the start: sends queued behind one another for their
        # key must not leave a gap in which a read slips in ahead of them.
        self._sends_waiting += 1
        self._no_send_waiting.clear()
        try:
            # Key first, so a slow key never holds the shared IP lane while it waits; its
            # call is counted only once the IP lane lets it go, at the real send time.
            async with self._key_limit(api_key, key_rate).held():
                await self.ip.acquire()
        finally:
            self._sends_waiting -= 1
            if not self._sends_waiting:
                self._no_send_waiting.set()

    async def acquire_behind_sends(self) -> None:
        """Return when one other call (a receipt or account look-up) may leave now: only
        while no send waits for the shared limit, so a burst of sends keeps its pace and
        these take what it leaves (a send held back by its own key's slower rate holds
        them back too). Cast's per-account rate counts messages, not reads, so only the
        per-IP limit applies. A send arriving just as one of these was let through waits
        at most one call's turn."""
        await self._no_send_waiting.wait()
        await self.ip.acquire()

    def pause(self, seconds: float) -> None:
        self.ip.pause(seconds)
