"""GHL calls made with a location's token, refreshed once when GHL says 401."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from castghl.common.ghl.errors import GhlUnauthorized

T = TypeVar("T")


class Tokens(Protocol):
    async def token(self, location_id: str) -> str: ...
    async def refresh(self, location_id: str, stale_token: str) -> str: ...


async def with_token(tokens: Tokens, location_id: str,
                     call: Callable[[str], Awaitable[T]]) -> T:
    """Run `call(token)`; on 401 refresh once (only if nobody else already did — the OAuth
    service compares the stale token) and run it again. A second 401 propagates."""
    token = await tokens.token(location_id)
    try:
        return await call(token)
    except GhlUnauthorized:
        token = await tokens.refresh(location_id, token)
        return await call(token)
