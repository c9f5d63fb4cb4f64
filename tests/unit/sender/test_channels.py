"""The sender-ID list cache: per Cast key, expiring, and bounded."""

from __future__ import annotations

from castghl.common.cast.models import CastSenderIds
from castghl.sender.channels import CACHE_SECONDS, CHANNELS_KEPT, Channels


class Lists:
    def __init__(self) -> None:
        self.reads = 0

    async def sender_ids(self, *, api_key: str) -> CastSenderIds | None:
        self.reads += 1
        return None  # an older Cast API: every sender ID sends on SMS


async def no_wait() -> None:
    return None


async def test_expired_lists_go_once_more_keys_than_the_bound_were_seen() -> None:
    now = [0.0]
    channels = Channels(Lists(), clock=lambda: now[0])
    for n in range(CHANNELS_KEPT):
        assert await channels.channel(f"cast_key_{n}", "CASTDEMO", no_wait) == "sms"
    now[0] += CACHE_SECONDS / 2
    await channels.channel("cast_key_fresh", "CASTDEMO", no_wait)
    assert len(channels._cache) == CHANNELS_KEPT + 1  # none expired yet: all kept
    now[0] += CACHE_SECONDS / 2 + 1
    await channels.channel("cast_key_new", "CASTDEMO", no_wait)
    assert len(channels._cache) == 2  # the fresh one and the new one
