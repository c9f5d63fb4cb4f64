"""GHL's per-app, per-resource limits: a burst window and a daily budget (ghl.md §7).

Fixed windows that open at the first call: predictable for tests, and a client that
honours `X-RateLimit-Interval-Milliseconds` behaves the same against a sliding window.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from castghl.sandbox.ghl.knobs import GhlKnobs

DAY_SECONDS = 86_400.0
# Where the gate leaves the headers for RateLimitHeaders to put on the answer.
STATE_KEY = "ghl_ratelimit_headers"


@dataclass
class _Window:
    start: float
    count: int = 0
    day_start: float = 0.0
    day_count: int = 0


@dataclass
class Verdict:
    allowed: bool
    headers: dict[str, str]


class RateLimiter:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()

    def hit(self, resource: str, knobs: GhlKnobs) -> Verdict:
        """Count one call for `resource`; a refused call does not consume budget."""
        now = self._clock()
        interval = knobs.rate_limit_interval_ms / 1000
        with self._lock:
            window = self._windows.setdefault(resource, _Window(now, day_start=now))
            if now - window.start >= interval:
                window.start, window.count = now, 0
            if now - window.day_start >= DAY_SECONDS:
                window.day_start, window.day_count = now, 0
            allowed = (window.count < knobs.rate_limit_max
                       and window.day_count < knobs.rate_limit_daily)
            if allowed:
                window.count += 1
                window.day_count += 1
            headers = {
                "X-RateLimit-Max": str(knobs.rate_limit_max),
                "X-RateLimit-Remaining": str(max(0, knobs.rate_limit_max - window.count)),
                "X-RateLimit-Interval-Milliseconds": str(knobs.rate_limit_interval_ms),
                "X-RateLimit-Limit-Daily": str(knobs.rate_limit_daily),
                "X-RateLimit-Daily-Remaining":
                    str(max(0, knobs.rate_limit_daily - window.day_count)),
            }
            if not allowed and knobs.send_retry_after:
                wait = interval - (now - window.start)
                if window.day_count >= knobs.rate_limit_daily:
                    wait = DAY_SECONDS - (now - window.day_start)
                headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return Verdict(allowed, headers)


class RateLimitHeaders:
    """Puts the gate's rate-limit headers on every answer, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def snd(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = scope.get("state", {}).get(STATE_KEY)
                if extra:
                    present = {k.lower() for k, _ in message.get("headers", [])}
                    message["headers"] = [
                        *message.get("headers", []),
                        *[(k.lower().encode("latin-1"), v.encode("latin-1"))
                          for k, v in extra.items() if k.lower().encode() not in present],
                    ]
            await send(message)

        await self.app(scope, receive, snd)
