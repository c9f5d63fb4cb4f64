"""The sender's operator API (`/ops`) on a real Mongo wire server and a real RabbitMQ: what
the console shows of messages, usage, accounts, parked messages and queues is what the
sender's own stores recorded."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from castghl.common import answers
from castghl.common.broker import declare, make_broker
from castghl.common.messages import OutboundSms, StatusError
from castghl.common.phone import PhMobile
from castghl.common.settings import BrokerSettings
from castghl.common.topology import PARKED_REASON_HEADER, Topology
from castghl.common.usage import usage_day
from castghl.sandbox.infra import Infra
from castghl.sender.ops import ops_router
from castghl.sender.store import MongoAccounts, MongoMessageStore, MongoUsage, Sent

KEY = "ops-admin-key-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}
TO = PhMobile.parse("09171234567")

SENT = Sent(PhMobile.parse("09171234567"))


async def _ready() -> bool:
    return True


@pytest.fixture
async def ops(mongo_uri: str, rabbitmq: Infra) -> AsyncIterator[tuple[httpx.AsyncClient,
                                                                      dict[str, Any]]]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    db = mongo.get_default_database()
    stores = {"messages": MongoMessageStore(db), "accounts": MongoAccounts(db),
              "usage": MongoUsage(db)}
    for indexed in (stores["messages"], stores["usage"]):
        await indexed.ensure_indexes()
    settings = BrokerSettings(rabbitmq_url=rabbitmq.url,
                              queue_prefix=f"ops{uuid.uuid4().hex[:8]}.")
    topology: Topology = settings.topology()
    app = FastAPI()
    answers.install(app)
    app.include_router(ops_router(
        admin_api_key=KEY, broker_url=rabbitmq.url, topology=topology,
        messages=stores["messages"], accounts=stores["accounts"], usage=stores["usage"],
        low_credits=500.0, checks={"rabbitmq": _ready}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://sender") as client:
        yield client, {**stores, "topology": topology, "settings": settings}
    connection = await aio_pika.connect(rabbitmq.url)
    async with connection:
        channel = await connection.channel()
        for work in (topology.outbound, topology.status, topology.inbound):
            for queue in work.all_queues():
                await channel.queue_delete(queue.name)
    await mongo.drop_database(db.name)
    await mongo.close()


async def delivered_message(messages: MongoMessageStore, message_id: str) -> None:
    """A message through every step, as the pipeline records them."""
    await messages.claim(OutboundSms(message_id=message_id, location_id="loc1",
                                     phone=TO.e164, message="hello"))
    await messages.part_sending(message_id, 0, Sent(TO))  # the first part is part 0
    await messages.part_accepted(message_id, 0, "cast-1", SENT)
    await messages.decide(message_id, "delivered", None, {0: ("delivered", "DELIVRD")})
    await messages.status_queued(message_id)
    await messages.mark_status_written(message_id)


async def test_only_the_admin_key_opens_the_operator_api(
        ops: tuple[httpx.AsyncClient, dict[str, Any]]) -> None:
    client, _ = ops
    for headers in ({}, {"authorization": "Bearer wrong-key-0123456789"}):
        answer = await client.get("/ops/messages/m1", headers=headers)
        assert answer.status_code == 401
        assert "ADMIN_API_KEY" in answer.json()["detail"]


async def test_a_message_timeline_shows_each_step_with_its_time_and_no_text(
        ops: tuple[httpx.AsyncClient, dict[str, Any]]) -> None:
    client, stores = ops
    await delivered_message(stores["messages"], "msg-ok")

    shown = (await client.get("/ops/messages/msg-ok", headers=AUTH)).json()

    assert [step["step"] for step in shown["steps"]] == [
        "accepted", "part 1 sent", "part 1 receipt", "decided", "GHL status"]
    assert all(step["at"] for step in shown["steps"])
    assert "cast-1" in shown["steps"][1]["detail"]
    assert shown["steps"][2]["detail"] == "delivered (DELIVRD)"
    assert (shown["to"], shown["status"], shown["status_written"]) == (TO.e164, "delivered",
                                                                       True)
    assert "hello" not in str(shown)


async def test_a_failed_message_shows_its_reason_and_an_unwritten_status(
        ops: tuple[httpx.AsyncClient, dict[str, Any]]) -> None:
    client, stores = ops
    messages: MongoMessageStore = stores["messages"]
    await messages.claim(OutboundSms(message_id="msg-bad", location_id="loc1", phone=TO.e164))
    await messages.decide("msg-bad", "failed", StatusError(
        code="cast_insufficient_credits", message="Cast SMS account is out of credit"))
    await messages.status_queued("msg-bad")

    steps = (await client.get("/ops/messages/msg-bad", headers=AUTH)).json()["steps"]

    assert steps[-2]["detail"] == ("failed: Cast SMS account is out of credit "
                                   "(cast_insufficient_credits)")
    assert steps[-1] == {"at": None, "step": "GHL status",
                         "detail": "queued for GHL, not written yet"}


async def test_messages_are_found_by_the_last_digits_of_the_number(
        ops: tuple[httpx.AsyncClient, dict[str, Any]]) -> None:
    client, stores = ops
    await delivered_message(stores["messages"], "msg-a")
    await delivered_message(stores["messages"], "msg-b")

    found = (await client.get("/ops/messages", params={"phone": "4567"}, headers=AUTH)).json()
    none = (await client.get("/ops/messages", params={"phone": "9999"}, headers=AUTH)).json()

    assert sorted(m["message_id"] for m in found["messages"]) == ["msg-a", "msg-b"]
    assert none == {"messages": []}


@pytest.mark.parametrize(("path", "params"), [
    ("/ops/messages", {"phone": "12"}), ("/ops/messages", {"phone": "45.*"}),
    ("/ops/messages/bad$id", {}), ("/ops/usage", {"since": "yesterday"}),
    ("/ops/usage", {"since": "2026-11-02", "until": "2026-11-01"}),
])
async def test_bad_questions_get_a_clear_400(ops: tuple[httpx.AsyncClient, dict[str, Any]],
                                              path: str, params: dict[str, str]) -> None:
    client, _ = ops
    answer = await client.get(path, params=params, headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid_request"


async def test_an_unknown_message_is_a_404(
        ops: tuple[httpx.AsyncClient, dict[str, Any]]) -> None:
    client, _ = ops
    assert (await client.get("/ops/messages/nobody", headers=AUTH)).status_code == 404


async def test_usage_and_accounts_are_what_the_sender_recorded(
        ops: tuple[httpx.AsyncClient, dict[str, Any]]) -> None:
    client, stores = ops
    at = time.time()  # usage older than a year would have expired
    await stores["usage"].add("loc1", at, {"parts_sent": 3, "delivered": 1})
    await stores["usage"].add("loc2", at, {"parts_sent": 1, "failed": 1})
    accounts: MongoAccounts = stores["accounts"]
    assert await accounts.claim_check("abc123def456", 300, at)
    await accounts.record("abc123def456", label="Agency (abc123)", credits=120, sandbox=False,
                          now=at)

    day = usage_day(at)
    usage = (await client.get("/ops/usage", params={"since": day, "until": day},
                              headers=AUTH)).json()
    one = (await client.get("/ops/usage", params={"since": day, "until": day,
                                                  "location_id": "loc2"}, headers=AUTH)).json()
    shown = (await client.get("/ops/accounts", headers=AUTH)).json()

    assert usage["days"] == [
        {"location_id": "loc1", "day": day, "parts_sent": 3, "delivered": 1, "failed": 0},
        {"location_id": "loc2", "day": day, "parts_sent": 1, "delivered": 0, "failed": 1}]
    assert [row["location_id"] for row in one["days"]] == ["loc2"]
    [account] = shown["accounts"]
    assert (account["credits"], account["low"], account["sandbox"]) == (120, True, False)
    assert account["balance_at"].startswith(datetime.fromtimestamp(at, UTC).date().isoformat())


async def test_parked_messages_are_surveyed_and_replayed_and_queues_counted(
        ops: tuple[httpx.AsyncClient, dict[str, Any]], rabbitmq: Infra) -> None:
    client, stores = ops
    topology: Topology = stores["topology"]
    broker = make_broker(stores["settings"], "ops-test")
    await broker.connect()
    try:
        await declare(broker, [q for work in (topology.outbound, topology.status,
                                              topology.inbound) for q in work.all_queues()])
    finally:
        await broker.stop()
    connection = await aio_pika.connect(rabbitmq.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(b'{"message_id": "m1", "location_id": "loc9", "status": "failed"}',
                             headers={PARKED_REASON_HEADER: "location not installed"}),
            routing_key=topology.status.parked.name)

    parked = (await client.get("/ops/parked", headers=AUTH)).json()["queues"]
    health = (await client.get("/ops/health", headers=AUTH)).json()
    replayed = (await client.post("/ops/parked/status/replay", headers=AUTH)).json()
    after = (await client.get("/ops/health", headers=AUTH)).json()

    status = next(q for q in parked if q["name"] == "status")
    assert status["count"] == 1
    [reason] = status["reasons"]
    assert reason["reason"] == "location not installed"
    assert reason["sample"]["message_id"] == "m1"
    depth = {q["queue"]: q["messages"] for q in health["queues"]}
    assert depth[topology.status.parked.name] == 1
    assert health["replica"] == {"rabbitmq": True}
    assert (replayed["moved"], replayed["left"]) == (1, 0)
    depth = {q["queue"]: q["messages"] for q in after["queues"]}
    assert (depth[topology.status.parked.name], depth[topology.status.queue.name]) == (0, 1)


async def test_a_queue_that_is_not_there_is_a_503_not_a_crash(
        ops: tuple[httpx.AsyncClient, dict[str, Any]]) -> None:
    client, _ = ops  # nothing declared under this prefix
    answer = await client.get("/ops/parked", headers=AUTH)
    assert answer.status_code == 503, answer.text
    assert "RabbitMQ" in answer.json()["detail"]
