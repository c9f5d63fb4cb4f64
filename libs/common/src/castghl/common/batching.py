"""Look-ups asked at the same moment go out as one request.

A burst of messages for many locations (a bulk send, a replica taking over the Cast
lane) asks the OAuth service for hundreds of tokens or settings at once. Each asked
separately costs the service a request to parse, a database read and an answer; asked
together they cost one of each. `Batcher.get` waits for the current turn of the event
loop to end, collecting every key asked meanwhile, and fetches them in one call;
a key already on its way joins that call instead of asking again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Final, Generic, TypeVar

from castghl.common.errors import BridgeError, ServiceUnavailable

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Keys per call: a bounded request body and answer, still far fewer calls than keys.
MAX_BATCH: Final = 500
Fetch = Callable[[list[K]], Awaitable[Mapping[K, V | BridgeError]]]


class Batcher(Generic[K, V]):
    """`get(key)` → the value `fetch` finds for it, or the error it answers for it."""

    def __init__(self, fetch: Fetch[K, V], max_batch: int = MAX_BATCH) -> None:
        self.fetch = fetch
        self.max_batch = max_batch
        self._waiting: dict[K, asyncio.Future[V]] = {}  # asked, not yet sent
        self._flying: dict[K, asyncio.Future[V]] = {}  # sent, not yet answered
        self._scheduled = False

    async def get(self, key: K) -> V:
        future = self._flying.get(key) or self._waiting.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            # Retrieved here, so an error nobody waits for any more is not reported as lost.
            future.add_done_callback(_retrieve)
            self._waiting[key] = future
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._send)
        # Shielded: a caller that gives up never cancels what others wait for.
        return await asyncio.shield(future)

    def _send(self) -> None:
        self._scheduled = False
        keys = list(self._waiting)
        for start in range(0, len(keys), self.max_batch):
            batch = {key: self._waiting.pop(key) for key in keys[start:start + self.max_batch]}
            self._flying.update(batch)
            asyncio.ensure_future(self._answer(batch)).add_done_callback(_retrieve)

    async def _answer(self, batch: dict[K, asyncio.Future[V]]) -> None:
        try:
            found = await self.fetch(list(batch))
        except BaseException as exc:  # every waiter of this call learns why
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            raise
        finally:
            for key, future in batch.items():
                if self._flying.get(key) is future:
                    del self._flying[key]
        for key, future in batch.items():
            answer = found.get(key, ServiceUnavailable(f"no answer for {key!r}"))
            if future.done():
                continue
            if isinstance(answer, BridgeError):
                future.set_exception(answer)
            else:
                future.set_result(answer)


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()
