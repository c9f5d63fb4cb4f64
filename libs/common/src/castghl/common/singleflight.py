"""Single flight: concurrent calls with the same key share one execution.

The OAuth client collapses identical concurrent look-ups into one; the OAuth service
collapses concurrent refreshes of one installation into one lease attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Concurrent `run`s with the same key share one execution of the first one's work.

    The work runs in its own task and callers await it shielded: a caller that gives up
    (timeout, cancelled request) never cancels work others wait on — which matters when
    that work is half-way through spending a single-use refresh token.
    """

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone
