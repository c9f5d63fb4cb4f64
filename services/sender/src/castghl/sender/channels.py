"""Which Cast channel a location's sender ID sends on: `sms` (`/api/sms/send`) or `sim`
(`/api/v1/sim/send`, a SIM sender ID people can reply to).

Cast says, per account, in `GET /api/v1/account/sender-ids` (reference/cast.md). The list
is cached per Cast key for CACHE_SECONDS and read again, once, when a sender ID is missing
from it (it may have been approved since). An account whose API has no such list, or
lists none, sends on SMS as before. A sender ID the account does not have, or one on a
channel this bridge does not know, fails the message with a reason the GHL user can pass
on; the admin API refuses such a sender ID when it is set.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

from castghl.common.cast.accounts import fingerprint
from castghl.common.cast.channels import channel_of, unknown_sender_id
from castghl.common.cast.models import CastSenderIds, Channel
from castghl.common.singleflight import SingleFlight

CACHE_SECONDS: Final = 300.0
# A missing sender ID reads the list again only if the cached one is older than this.
RELOAD_AFTER_SECONDS: Final = 30.0
# Past this many Cast keys' lists, the expired ones are dropped as another is added.
CHANNELS_KEPT: Final = 1_000


class SenderIdSource(Protocol):
    async def sender_ids(self, *, api_key: str) -> CastSenderIds | None: ...


@dataclass
class _Cached:
    listed: CastSenderIds | None
    at: float


class Channels:
    def __init__(self, cast: SenderIdSource, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cast = cast
        self.clock = clock
        self._cache: dict[str, _Cached] = {}
        self._reads: SingleFlight[str, CastSenderIds | None] = SingleFlight()

    async def channel(self, api_key: str, sender_id: str | None,
                      permit: Callable[[], Awaitable[None]]) -> Channel:
        """`permit` is awaited before each call to Cast (the lane's rate limits)."""
        if sender_id is None:
            return "sms"
        key = fingerprint(api_key)  # never keep the key itself
        cached = self._cache.get(key)
        age = self.clock() - cached.at if cached else None
        if cached is None or age is None or age > CACHE_SECONDS:
            cached = await self._read(key, api_key, permit)
        found = channel_of(cached.listed, sender_id)
        if found is None and self.clock() - cached.at > RELOAD_AFTER_SECONDS:
            cached = await self._read(key, api_key, permit)
            found = channel_of(cached.listed, sender_id)
        if found is None:
            raise unknown_sender_id(sender_id)
        return found

    def forget(self, api_key: str) -> None:
        """Cast refused a channel the list gave: the list changed; read it again next time."""
        self._cache.pop(fingerprint(api_key), None)

    async def _read(self, key: str, api_key: str, permit: Callable[[], Awaitable[None]]
                    ) -> _Cached:
        async def read() -> CastSenderIds | None:
            await permit()
            return await self.cast.sender_ids(api_key=api_key)

        listed = await self._reads.run(key, read)
        now = self.clock()
        if key not in self._cache and len(self._cache) >= CHANNELS_KEPT:
            for old in [old for old, kept in self._cache.items()
                        if now - kept.at > CACHE_SECONDS]:
                del self._cache[old]
        self._cache[key] = cached = _Cached(listed, now)
        return cached
