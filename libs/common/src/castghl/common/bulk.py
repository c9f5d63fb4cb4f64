"""One collection's single-document writes and reads, gathered into shared round trips.

A burst keeps dozens of messages in flight in one sender, and each records its steps
with single-document writes. PyMongo spends ~0.6 ms of CPU on each round trip on a
2-core machine and ~0.02 ms per document inside a bulk write (docs/architecture.md,
"Mongo"). `BulkWrites` sends what its callers ask while its last bulk write is on its
way as the next one: every caller still awaits its own acknowledged write, so a step is
recorded before its caller goes on — only the round trips are shared. With nothing else
in flight a write goes at the next turn of the event loop.

A bulk write answers errors per operation but counts matches only in total. So
compare-and-sets (`update_if`) go in bulk writes of their own, each marking its document
with a mark of its own: when the count says every one of them changed its document, each
knows it did; otherwise each reads its document back by `_id` and looks for its mark. That
needs updates whose change falsifies their own filter (a status set where none was, a
lease taken where it had expired): another such update of the same document cannot
match before a caller has read the new state, so a mark is overwritten before its
read-back only by a later compare-and-set built on it.

`BulkReads` gathers reads by `_id` the same way, as one `$in` find: for collections the
hot path reads by key and that stay small on the MongoDB-wire emulator, which answers
`$in` by scanning the collection (MongoDB serves it from the `_id` index). A read never
joins one already on its way, so it sees every write acknowledged before it was asked.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from prometheus_client import Counter
from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

Document = dict[str, Any]
# Operations per round trip: a bounded command, and a bounded wait for whoever asks next
# (past ~100 documents, PyMongo's cost per round trip is already a small share).
MAX_BATCH: Final = 200
DUPLICATE_KEY: Final = frozenset({11000, 11001})
# The field a compare-and-set marks its document with (see above).
WRITE_MARK: Final = "write_mark"
ROUND_TRIPS = Counter("castghl_mongo_bulk_round_trips_total",
                      "Bulk writes sent to Mongo (gathered single-document writes)",
                      ["collection"])
WRITES = Counter("castghl_mongo_bulk_writes_total",
                 "Single-document writes sent inside those bulk writes", ["collection"])


Request = InsertOne[Document] | UpdateOne


class _Answered(Protocol):
    @property
    def answer(self) -> asyncio.Future[Any]: ...


A = TypeVar("A", bound=_Answered)


@dataclass(frozen=True)
class Asked:
    """One operation and where its caller waits for the answer; a compare-and-set also
    carries its mark and its document's `_id`, to read them back."""

    request: Request
    answer: asyncio.Future[bool]
    mark: str | None = None
    key: Any = None


class BulkWrites:
    def __init__(self, collection: AsyncCollection[Document], *,
                 max_batch: int = MAX_BATCH) -> None:
        self.collection = collection
        self.round_trips = 0  # what the gathering saves, as the tests see it
        self._writes: _Gathering[Asked] = _Gathering(self._send_writes, max_batch)
        self._sets: _Gathering[Asked] = _Gathering(self._send_sets, max_batch)
        self._marks = map(f"{secrets.token_hex(6)}-{{}}".format, itertools.count())
        self._trips = ROUND_TRIPS.labels(collection.name)
        self._written = WRITES.labels(collection.name)

    async def insert(self, document: Document) -> bool:
        """Insert `document`; False when one with its `_id` exists already."""
        return bool(await self._writes.ask(lambda answer: Asked(InsertOne(document), answer)))

    async def update(self, filter: Document, update: Document, *, upsert: bool = False) -> None:
        """Apply `update` to the document `filter` matches, if any."""
        await self._writes.ask(lambda answer: Asked(UpdateOne(filter, update, upsert=upsert),
                                                    answer))

    async def update_if(self, filter: Document, update: Document) -> bool:
        """Apply `update` where `filter` (which names an `_id`) matches; whether this call
        changed the document. Only for updates that falsify their own filter (above)."""
        mark = next(self._marks)
        marked = {**update, "$set": {**update.get("$set", {}), WRITE_MARK: mark}}
        return bool(await self._sets.ask(
            lambda answer: Asked(UpdateOne(filter, marked), answer, mark, filter["_id"])))

    async def _bulk_write(self, batch: list[Asked]) -> int | None:
        """Send the batch: the number of documents it changed, or None when the round trip
        failed. Callers whose operation failed, alone or with the rest, have their error."""
        self.round_trips += 1
        self._trips.inc()
        self._written.inc(len(batch))
        try:
            result = await self.collection.bulk_write([asked.request for asked in batch],
                                                      ordered=False)
        except BulkWriteError as error:
            if error.details.get("writeConcernErrors"):
                _fail((asked.answer for asked in batch), error)
                return None
            for each in error.details.get("writeErrors", []):
                _refuse(batch[int(each["index"])], each)
            return int(error.details.get("nModified", 0))
        except BaseException as error:  # the round trip failed: so did every write in it
            _fail((asked.answer for asked in batch), error)
            if not isinstance(error, Exception):
                raise
            return None
        return result.modified_count

    async def _send_writes(self, batch: list[Asked]) -> None:
        if await self._bulk_write(batch) is not None:
            _settle(batch, True)

    async def _send_sets(self, batch: list[Asked]) -> None:
        changed = await self._bulk_write(batch)
        if changed is None:
            return
        open_ = [asked for asked in batch if not asked.answer.done()]
        if changed >= len(open_):
            _settle(open_, True)
        elif changed == 0:
            _settle(open_, False)
        else:
            await asyncio.gather(*(self._read_back(asked) for asked in open_))

    async def _read_back(self, asked: Asked) -> None:
        try:
            found = await self.collection.find_one({"_id": asked.key}, {WRITE_MARK: 1})
        except Exception as error:
            _fail([asked.answer], error)
            return
        _settle([asked], found is not None and found.get(WRITE_MARK) == asked.mark)


@dataclass(frozen=True)
class _Read:
    keys: list[Hashable]
    answer: asyncio.Future[dict[Hashable, Document]]


class BulkReads:
    def __init__(self, collection: AsyncCollection[Document], *,
                 max_batch: int = MAX_BATCH) -> None:
        self.collection = collection
        self.round_trips = 0
        self._reads: _Gathering[_Read] = _Gathering(self._send, max_batch)

    async def get_many(self, keys: Iterable[Hashable]) -> dict[Hashable, Document]:
        """The documents of these `_id`s that exist, by `_id`."""
        wanted = list(keys)
        found: dict[Hashable, Document] = await self._reads.ask(
            lambda answer: _Read(wanted, answer))
        return found

    async def _send(self, batch: list[_Read]) -> None:
        self.round_trips += 1
        keys = list(dict.fromkeys(key for read in batch for key in read.keys))
        try:
            found = {document["_id"]: document async for document
                     in self.collection.find({"_id": {"$in": keys}})}
        except Exception as error:
            _fail((read.answer for read in batch), error)
            return
        for read in batch:
            if not read.answer.done():
                read.answer.set_result({key: found[key] for key in read.keys if key in found})


class _Gathering(Generic[A]):
    """Operations asked while the last batch is on its way go together as the next."""

    def __init__(self, send: Callable[[list[A]], Awaitable[None]], max_batch: int) -> None:
        self.send = send
        self.max_batch = max_batch
        self._asked: list[A] = []
        self._sender: asyncio.Task[None] | None = None

    async def ask(self, operation: Callable[[asyncio.Future[Any]], A]) -> Any:
        loop = asyncio.get_running_loop()
        asked = operation(loop.create_future())
        self._asked.append(asked)
        if self._sender is None:
            self._sender = loop.create_task(self._send_all())
        return await asked.answer

    async def _send_all(self) -> None:
        try:
            while self._asked:
                batch = self._asked[:self.max_batch]
                del self._asked[:self.max_batch]
                try:
                    await self.send(batch)
                except BaseException as error:  # cancelled: nobody may wait for ever
                    _fail((asked.answer for asked in batch), error)
                    raise
        finally:
            self._sender = None
            _fail((asked.answer for asked in self._asked), asyncio.CancelledError())


def _settle(batch: Iterable[Asked], answer: bool) -> None:
    for asked in batch:
        if not asked.answer.done():
            asked.answer.set_result(answer)


def _refuse(asked: Asked, refused: dict[str, Any]) -> None:
    if asked.answer.done():
        return
    duplicate = refused.get("code") in DUPLICATE_KEY
    if duplicate and isinstance(asked.request, InsertOne):
        asked.answer.set_result(False)
        return
    kind = DuplicateKeyError if duplicate else OperationFailure
    # As a single write's error reads: without the operation PyMongo adds to a bulk's
    # (its document would otherwise reach whatever prints the error).
    details = {key: value for key, value in refused.items() if key != "op"}
    asked.answer.set_exception(kind(str(refused.get("errmsg")), refused.get("code"), details))


def _fail(futures: Iterable[asyncio.Future[Any]], error: BaseException) -> None:
    for future in futures:
        if future.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(error)
