"""The background sweep that keeps idle refresh tokens alive.

GHL refresh tokens live a year (reference/ghl.md §5); a location that sends nothing for
that long would lose its installation. Each sweep pages through every refreshable
installation idle longer than `REFRESH_IDLE_DAYS`, oldest refresh first, so however many
there are (and whatever fails on the way) each refresh token is used well before it
expires. Minted location tokens have none and are left out: they are minted again.
Every replica sweeps; the refresh itself goes through the token service's single
flight, so replicas sweeping at once still refresh each installation once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from castghl.common.errors import BridgeError
from castghl.oauth.refresh import TokenService, utcnow
from castghl.oauth.store import IdleCursor

log = logging.getLogger(__name__)


class IdleInstallations(Protocol):
    async def idle_keys(self, refreshed_before: datetime, limit: int,
                        after: IdleCursor | None = None) -> list[IdleCursor]: ...


class Sweep:
    def __init__(self, store: IdleInstallations, tokens: TokenService, idle: timedelta,
                 limit: int = 200, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.tokens = tokens
        self.idle = idle
        self.limit = limit
        self.clock = clock

    async def once(self) -> int:
        """Refresh installations untouched for `idle`; returns how many it renewed (or
        found renewed by another replica's concurrent sweep)."""
        cutoff = self.clock() - self.idle
        refreshed = 0
        after: IdleCursor | None = None
        while page := await self.store.idle_keys(cutoff, self.limit, after):
            for _, key in page:
                try:
                    refreshed += await self.tokens.refresh_if_idle(key, cutoff)
                except BridgeError as error:
                    log.info("sweep could not refresh an installation",
                             extra={"installation": key, "error_code": error.code})
            after = page[-1]
        return refreshed

    async def run(self, interval: float) -> None:
        # Jittered, so replicas started together do not all sweep at the same moment.
        await asyncio.sleep(random.uniform(1.0, min(interval, 60.0)))  # noqa: S311
        while True:
            try:
                count = await self.once()
                if count:
                    log.info("refresh sweep done", extra={"refreshed": count})
            except Exception:
                log.exception("refresh sweep failed")
            await asyncio.sleep(interval)
