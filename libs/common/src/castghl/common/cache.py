"""A bounded in-process cache: per-key state a process keeps must not grow with the
number of locations or keys it has ever seen."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# Entries kept per cache: far more locations than one operator serves, far fewer than
# would make a sender's memory grow unnoticed.
MAX_CACHED: Final = 20_000


class BoundedCache(Generic[K, V]):
    """A dict that forgets its oldest entries past `limit`, and entries past their time."""

    def __init__(self, limit: int = MAX_CACHED) -> None:
        self.limit = limit
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def get(self, key: K, now: float) -> V | None:
        found = self._entries.get(key)
        if found is None or found[1] <= now:
            return None
        return found[0]

    def put(self, key: K, value: V, until: float) -> None:
        self._entries[key] = (value, until)
        self._entries.move_to_end(key)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def drop_where(self, matches: Callable[[V], bool]) -> None:
        for key in [k for k, (value, _) in self._entries.items() if matches(value)]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()
