"""`BulkWrites` on a real Mongo wire server: concurrent callers share round trips, and
each still gets its own answer — its write done, its duplicate, its error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from castghl.common.bulk import BulkReads, BulkWrites

Collection = AsyncCollection[dict[str, Any]]


@pytest.fixture
async def things(mongo_uri: str) -> AsyncIterator[Collection]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    try:
        yield client.get_default_database()["things"]
    finally:
        await client.close()


async def test_writes_asked_together_share_one_round_trip(things: Collection) -> None:
    bulk = BulkWrites(things)
    inserted = await asyncio.gather(*(bulk.insert({"_id": f"m{n}", "n": 0}) for n in range(100)))
    await asyncio.gather(*(bulk.update({"_id": f"m{n}"}, {"$inc": {"n": n}})
                           for n in range(100)))

    assert inserted == [True] * 100
    assert bulk.round_trips == 2
    assert {doc["_id"]: doc["n"] async for doc in things.find({})} == {
        f"m{n}": n for n in range(100)}


async def test_writes_asked_while_one_is_on_its_way_go_together_next(things: Collection) -> None:
    bulk = BulkWrites(things)
    first = asyncio.ensure_future(bulk.insert({"_id": "first"}))
    await asyncio.sleep(0)  # the first bulk write leaves alone
    rest = [bulk.insert({"_id": f"m{n}"}) for n in range(50)]

    assert await asyncio.gather(first, *rest) == [True] * 51
    assert bulk.round_trips == 2


async def test_a_duplicate_and_an_error_answer_their_callers_only(things: Collection) -> None:
    await things.insert_one({"_id": "taken", "n": "text"})
    bulk = BulkWrites(things)

    answers = await asyncio.gather(
        bulk.insert({"_id": "new"}), bulk.insert({"_id": "taken"}),
        bulk.update({"_id": "taken"}, {"$inc": {"n": 1}}),  # $inc on a string
        bulk.update({"_id": "new"}, {"$set": {"n": 1}}), return_exceptions=True)

    assert answers[:2] == [True, False]
    assert isinstance(answers[2], OperationFailure)
    assert "op" not in (answers[2].details or {})  # the update's document stays out of it
    assert answers[3] is None
    assert bulk.round_trips == 1
    assert await things.find_one({"_id": "new"}) == {"_id": "new", "n": 1}


async def test_compare_and_sets_asked_together_know_which_of_them_won(
        things: Collection) -> None:
    await things.insert_many([{"_id": f"m{n}", "status": None} for n in range(20)])
    bulk = BulkWrites(things)

    # Every one wins: the count says so, one round trip.
    won = await asyncio.gather(*(bulk.update_if({"_id": f"m{n}", "status": None},
                                                {"$set": {"status": "first"}})
                                 for n in range(10)))
    assert (won, bulk.round_trips) == ([True] * 10, 1)

    # Some win: each reads its document back. Ten race for m10; m0 is taken; m11 is free.
    asked = [("m10", n) for n in range(10)] + [("m0", 10), ("m11", 11), ("gone", 12)]
    answers = await asyncio.gather(*(bulk.update_if({"_id": key, "status": None},
                                                    {"$set": {"status": f"s{n}"}})
                                     for key, n in asked))
    winners = {n for (_, n), mine in zip(asked, answers, strict=True) if mine}
    assert 11 in winners
    assert 10 not in winners
    assert 12 not in winners
    [m10] = winners - {11}
    assert (await things.find_one({"_id": "m10"}) or {}).get("status") == f"s{m10}"
    assert (await things.find_one({"_id": "m0"}) or {}).get("status") == "first"


async def test_reads_asked_together_share_one_find_and_see_earlier_writes(
        things: Collection) -> None:
    await things.insert_many([{"_id": f"m{n}", "n": n} for n in range(10)])
    reads, writes = BulkReads(things), BulkWrites(things)

    found = await asyncio.gather(*(reads.get_many([f"m{n}", f"m{n + 1}", "nobody"])
                                   for n in range(9)))

    assert reads.round_trips == 1
    assert [sorted(each) for each in found] == [[f"m{n}", f"m{n + 1}"] for n in range(9)]
    assert found[3]["m4"] == {"_id": "m4", "n": 4}
    await writes.update({"_id": "m0"}, {"$set": {"n": 100}})
    assert (await reads.get_many(["m0"]))["m0"]["n"] == 100
    assert reads.round_trips == 2

    # A read asked while another is on its way does not join it: the next find is its own.
    early = asyncio.ensure_future(reads.get_many(["m1"]))
    for _ in range(5):  # turns of the loop, not time: the early find leaves
        await asyncio.sleep(0)
    later = asyncio.ensure_future(reads.get_many(["m1"]))
    assert [each["m1"]["n"] for each in await asyncio.gather(early, later)] == [1, 1]
    assert reads.round_trips == 4


async def test_a_failed_round_trip_fails_every_caller_in_it_and_the_next_one_goes() -> None:
    # Nothing listens on port 9: server selection gives up quickly.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        "mongodb://127.0.0.1:9/x", serverSelectionTimeoutMS=300)
    try:
        bulk = BulkWrites(client.get_default_database()["things"])
        answers = await asyncio.gather(bulk.insert({"_id": 1}), bulk.update({"_id": 2}, {
            "$set": {"n": 1}}), bulk.update_if({"_id": 3}, {"$set": {"n": 1}}),
            BulkReads(bulk.collection).get_many([4]), return_exceptions=True)
        assert all(isinstance(answer, ServerSelectionTimeoutError) for answer in answers)
        with pytest.raises(ServerSelectionTimeoutError):
            await bulk.insert({"_id": 4})  # a new round trip, not a stuck queue
    finally:
        await client.close()
