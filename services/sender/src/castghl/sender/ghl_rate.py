"""GHL's rate limit per location — 100 calls in any 10 seconds — kept by every replica
together, so the bridge stays within it instead of learning it from 429s
(docs/architecture.md, "Rate limits").

A GCRA (generic cell rate algorithm) per location: one number, the location's
"theoretical arrival time" (`tat`, integer microseconds), kept in Mongo and advanced by
compare-and-set, so replicas share one schedule with no lock. A GCRA with interval T and
tolerance τ admits at most 1 + ⌊(t + τ) / T⌋ calls in any t seconds; with a burst of b
calls (τ = (b − 1)·T) and T = W / (L − b), that is at most L in any window W. The
burst is a fifth of the limit: a status or a reply goes at once, and a flood settles
into an even pace.

Every GHL call with a location token fetches the token first (`with_token`), so tokens
come with a permit (`PacedTokens`): status writes, contact upserts, DND and replies all
count. A call waits for its permit up to `MAX_WAIT_SECONDS`; a longer wait goes back to
the queue as `RateLimited`, which the Settler turns into a delayed retry that costs no
attempt.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter

from castghl.common.cache import BoundedCache
from castghl.common.errors import RateLimited
from castghl.sender.tokens import Tokens

log = logging.getLogger(__name__)

MICROS = 1_000_000
# Longer waits hold a status worker's prefetch slot from other locations: defer instead.
MAX_WAIT_SECONDS = 2.0
# Locations whose schedule is remembered between permit rounds (a few bytes each).
SCHEDULES_KEPT = 1_000
WAITS = Counter("castghl_ghl_rate_waits_total",
                "GHL calls that waited for their location's rate limit (waited in-process, "
                "or deferred to a retry tier)", ["outcome"])


@dataclass(frozen=True)
class Gcra:
    interval_us: int
    tolerance_us: int

    @classmethod
    def within(cls, calls: int, seconds: float) -> Gcra:
        """At most `calls` in any `seconds`, a fifth of them allowed at once."""
        burst = max(1, calls // 5)
        interval = seconds / max(1, calls - burst)
        return cls(round(interval * MICROS), round((burst - 1) * interval * MICROS))

    def admit(self, tat: int | None, now: int) -> tuple[int, int]:
        """(the new tat, 0) when a call may go at `now`; else (`tat`, microseconds to
        wait)."""
        start = now if tat is None else max(tat, now)
        if start - now > self.tolerance_us:
            return (tat or now), start - now - self.tolerance_us
        return start + self.interval_us, 0


class Schedules(Protocol):
    async def tat(self, key: str) -> int | None: ...

    async def swap(self, key: str, old: int | None, new: int) -> bool:
        """Set `new` only if the stored tat is still `old` (None: none stored yet)."""
        ...


class LocationRate:
    def __init__(self, schedules: Schedules, gcra: Gcra, *,
                 max_wait: float = MAX_WAIT_SECONDS,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.schedules = schedules
        self.gcra = gcra
        self.max_wait = max_wait
        self.clock = clock
        self.sleep = sleep
        # Callers of one replica for one location queue up and are admitted together, by
        # one task per location: one read of the schedule and one compare-and-set let
        # every caller go that may go now (apart, each would cost both round trips, and
        # they would collide on the compare-and-set).
        self._queues: dict[str, list[asyncio.Future[None]]] = {}
        self._admitting: dict[str, asyncio.Task[None]] = {}
        # The schedule this replica last read or wrote, per location: the next
        # compare-and-set is tried against it without reading first (a read per permit
        # round was a tenth of the sender's Mongo round trips); one that lost reads.
        self._known: BoundedCache[str, int] = BoundedCache(SCHEDULES_KEPT)

    async def acquire(self, location_id: str) -> None:
        """Return when a call for the location may go; raise RateLimited if that is
        further off than `max_wait`."""
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._queues.setdefault(location_id, []).append(turn)
        if location_id not in self._admitting:
            self._admitting[location_id] = loop.create_task(self._admit(location_id))
        await turn

    async def _admit(self, location_id: str) -> None:
        queue = self._queues[location_id]
        waited: set[asyncio.Future[None]] = set()
        try:
            while queue := [turn for turn in queue if not turn.done()]:
                self._queues[location_id] = queue  # later callers join this list
                tat = self._known.get(location_id, self.clock())
                if tat is None:
                    tat = await self.schedules.tat(location_id)
                new, admitted, wait_us = self._fit(tat, len(queue))
                if admitted and new is not None:
                    if await self.schedules.swap(location_id, tat, new):
                        self._known.put(location_id, new, math.inf)
                        _go(queue[:admitted], waited)
                    else:  # lost to another replica: the next pass reads the schedule
                        self._known.pop(location_id)
                    queue = self._queues[location_id]
                    continue
                if tat is not None:
                    self._known.put(location_id, tat, math.inf)
                if wait_us > self.max_wait * MICROS:
                    _defer(queue, wait_us)  # everyone queued would wait at least as long
                else:
                    waited.update(queue)
                    await self.sleep(wait_us / MICROS)
                queue = self._queues[location_id]
        except BaseException as error:
            _abandon(self._queues[location_id], error)
            raise
        finally:
            del self._queues[location_id], self._admitting[location_id]

    def _fit(self, tat: int | None, wanted: int) -> tuple[int | None, int, int]:
        """How many of `wanted` calls may go now, the schedule after them, and when none
        may: how long until one can (microseconds)."""
        now = int(self.clock() * MICROS)
        new, admitted, wait_us = tat, 0, 0
        while admitted < wanted:
            after, wait_us = self.gcra.admit(new, now)
            if wait_us:
                break
            new, admitted = after, admitted + 1
        return new, admitted, wait_us


def _go(turns: list[asyncio.Future[None]], waited: set[asyncio.Future[None]]) -> None:
    for turn in turns:
        if turn in waited:
            WAITS.labels("waited").inc()
        if not turn.done():
            turn.set_result(None)


def _defer(turns: list[asyncio.Future[None]], wait_us: int) -> None:
    for turn in (turn for turn in turns if not turn.done()):
        WAITS.labels("deferred").inc()
        turn.set_exception(RateLimited("this location's GHL rate limit is used up for now",
                                       retry_after=wait_us / MICROS, code="ghl_location_rate"))


def _abandon(turns: list[asyncio.Future[None]], error: BaseException) -> None:
    """The admitting task failed (Mongo) or was cancelled: so do its callers."""
    for turn in turns:
        if turn.done():
            continue
        if isinstance(error, Exception):
            turn.set_exception(error)
        else:
            turn.cancel()


class PacedTokens:
    """Tokens that come with a permit from the location's GHL rate limit: each GHL call
    fetches its token (or the refreshed one after a 401) just before it is made."""

    def __init__(self, tokens: Tokens, rate: LocationRate) -> None:
        self.tokens = tokens
        self.rate = rate

    async def token(self, location_id: str) -> str:
        await self.rate.acquire(location_id)
        return await self.tokens.token(location_id)

    async def refresh(self, location_id: str, stale_token: str) -> str:
        await self.rate.acquire(location_id)
        return await self.tokens.refresh(location_id, stale_token)
