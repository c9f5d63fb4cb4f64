"""One collection's single-document writes, gathered into shared round trips.

A burst keeps dozens of messages in flight in one sender, and each records its steps
with single-document writes. PyMongo spends ~0.6 ms of CPU on each round trip on a
2-core machine and ~0.02 ms per document inside a bulk write (docs/architecture.md,
"Mongo"). `BulkWrites` sends what its callers ask while its last bulk write is on its
way as the next one: every caller still awaits its own acknowledged write, so a step is
recorded before its caller goes on — only the round trips are shared. With nothing else
in flight a write goes at the next turn of the event loop.

A bulk write answers errors per operation but counts matches only in total, so only
writes whose caller needs no count come here; a compare-and-set stays a single update.
Reads stay single too: an `$in` read serves many keys from MongoDB's index, but the
MongoDB-wire emulator answers it by scanning the collection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

from prometheus_client import Counter
from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

Document = dict[str, Any]
# Operations per round trip: a bounded command, and a bounded wait for the last in it.
MAX_BATCH: Final = 1000
DUPLICATE_KEY: Final = frozenset({11000, 11001})
ROUND_TRIPS = Counter("castghl_mongo_bulk_round_trips_total",
                      "Bulk writes sent to Mongo (gathered single-document writes)",
                      ["collection"])
WRITES = Counter("castghl_mongo_bulk_writes_total",
                 "Single-document writes sent inside those bulk writes", ["collection"])


class BulkWrites:
    def __init__(self, collection: AsyncCollection[Document], *,
                 max_batch: int = MAX_BATCH) -> None:
        self.collection = collection
        self.max_batch = max_batch
        self._writes: list[tuple[InsertOne[Document] | UpdateOne, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.round_trips = 0  # what the gathering saves, as the tests see it
        self._trips = ROUND_TRIPS.labels(collection.name)
        self._written = WRITES.labels(collection.name)

    async def insert(self, document: Document) -> bool:
        """Insert `document`; False when one with its `_id` exists already."""
        return await self._write(InsertOne(document))

    async def update(self, filter: Document, update: Document, *, upsert: bool = False) -> None:
        """Apply `update` to the document `filter` matches, if any."""
        await self._write(UpdateOne(filter, update, upsert=upsert))

    async def _write(self, request: InsertOne[Document] | UpdateOne) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._writes.append((request, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write_all())
        return await future

    async def _write_all(self) -> None:
        try:
            while self._writes:
                batch = self._writes[:self.max_batch]
                del self._writes[:self.max_batch]
                await self._send(batch)
        finally:
            self._writer = None
            _cancel(future for _, future in self._writes)

    async def _send(self, batch: list[tuple[InsertOne[Document] | UpdateOne,
                                            asyncio.Future[bool]]]) -> None:
        self.round_trips += 1
        self._trips.inc()
        self._written.inc(len(batch))
        failed: dict[int, dict[str, Any]] = {}
        try:
            await self.collection.bulk_write([request for request, _ in batch], ordered=False)
        except BulkWriteError as error:
            if error.details.get("writeConcernErrors"):
                _fail((future for _, future in batch), error)
                return
            failed = {int(each["index"]): each for each in error.details.get("writeErrors", [])}
        except BaseException as error:  # the round trip failed: so did every write in it
            _fail((future for _, future in batch), error)
            if not isinstance(error, Exception):
                raise
            return
        for index, (request, future) in enumerate(batch):
            if future.done():
                continue
            refused = failed.get(index)
            if refused is None:
                future.set_result(True)
            elif refused.get("code") in DUPLICATE_KEY and isinstance(request, InsertOne):
                future.set_result(False)
            else:
                kind = DuplicateKeyError if refused.get("code") in DUPLICATE_KEY \
                    else OperationFailure
                future.set_exception(kind(str(refused.get("errmsg")), refused.get("code"),
                                          refused))

def _fail(futures: Iterable[asyncio.Future[Any]], error: BaseException) -> None:
    for future in futures:
        if future.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(error)


def _cancel(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Only when the gathering task itself was cancelled (the loop is shutting down)."""
    for future in futures:
        future.cancel()
