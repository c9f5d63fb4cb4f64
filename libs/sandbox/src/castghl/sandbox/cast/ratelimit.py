"""Cast's rate limit: a token bucket plus a hard cap per rolling second.

The bucket alone would let the 51st of 51 near-simultaneous calls through once a few
hundred milliseconds have refilled a token; the rolling window makes "more than `burst`
calls inside any one second get 429" hold deterministically, as the bridge's tests need.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 1.0


class RateLimiter:
    """One bucket (one source IP or one API key). Limits are passed per call so a knob
    changed live takes effect at the next request."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._tokens: float | None = None  # None: never used, so the bucket is full
        self._updated = 0.0
        self._window: deque[float] = deque()

    def try_acquire(self, rate: float, burst: int) -> float:
        """Take a token and return 0.0, or take nothing and return the seconds to wait.

        A refused call consumes nothing, so a client hammering on 429s does not starve
        itself further."""
        now = self._clock()
        self._refill(now, rate, burst)
        assert self._tokens is not None
        while self._window and self._window[0] <= now - WINDOW_SECONDS:
            self._window.popleft()
        wait = 0.0
        if self._tokens < 1.0:
            wait = (1.0 - self._tokens) / rate
        if len(self._window) >= burst:
            wait = max(wait, self._window[-burst] + WINDOW_SECONDS - now)
        if wait > 0.0:
            return wait
        self._tokens -= 1.0
        self._window.append(now)
        return 0.0

    def level(self, rate: float, burst: int) -> dict[str, float]:
        now = self._clock()
        self._refill(now, rate, burst)
        recent = sum(1 for at in self._window if at > now - WINDOW_SECONDS)
        return {"tokens": round(self._tokens or 0.0, 3), "last_second": recent}

    def _refill(self, now: float, rate: float, burst: int) -> None:
        if self._tokens is None:
            self._tokens = float(burst)
        else:
            # Never negative: a clock resumed after an advance steps back in time.
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(float(burst), self._tokens + elapsed * rate)
        self._updated = now


def retry_after(wait: float, floor: int) -> int:
    """Whole seconds for `Retry-After`: never below the knob, never before a token exists."""
    if math.isinf(wait):
        return floor
    return max(floor, math.ceil(wait))
