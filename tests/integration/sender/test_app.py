"""The sender as `create_app` builds it, on real infrastructure: RabbitMQ, a Mongo wire
server, the real OAuth service (in a thread) and the GHL and Cast simulators over HTTP.

The test plays the gateway: it publishes what the gateway would, and watches what Cast
received and what GHL recorded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from faststream.rabbit import RabbitBroker

from castghl.common.broker import make_broker, publish
from castghl.common.crypto import generate_key
from castghl.common.messages import InboundSms, OutboundSms
from castghl.common.settings import BrokerSettings
from castghl.common.topology import KIND_HEADER, PARKED_REASON_HEADER, RECEIPT_CHECK, Topology
from castghl.oauth.app import create_app as create_oauth
from castghl.oauth.settings import OAuthSettings
from castghl.sandbox import infra
from castghl.sandbox.cast.knobs import DEFAULT_API_KEY, CarrierRule
from castghl.sandbox.ghl.knobs import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from castghl.sandbox.infra import Infra
from castghl.sandbox.server import free_port, serve_in_thread
from castghl.sender.app import create_app as create_sender
from castghl.sender.settings import SenderSettings

SENDER_KEY = "sender-key-0123456789"
PHONE = "+639171234567"
# Only ends a run gone wrong: generous, so a slow, shared machine never reaches it.
DEADLINE_SECONDS = 120.0


@dataclass
class Running:
    ghl: str
    cast: str
    location_id: str
    topology: Topology
    broker: RabbitBroker

    async def outbound(self, text: str, phone: str = PHONE) -> str:
        """A GHL user sends `text`: the message exists in GHL, the gateway publishes it."""
        async with httpx.AsyncClient() as http:
            made = (await http.post(f"{self.ghl}/_sandbox/outbound", json={
                "phone": phone, "message": text, "deliver": False})).json()
        await publish(self.broker, self.topology.outbound.queue, OutboundSms(
            message_id=made["messageId"], location_id=self.location_id, phone=phone,
            message=text))
        return str(made["messageId"])


async def until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not (found := await check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)  # a poll interval: the loop ends when the check holds
    return found


async def get(url: str) -> Any:
    async with httpx.AsyncClient() as http:
        return (await http.get(url, timeout=10)).json()


@pytest.fixture
def bridge(rabbitmq: Infra, mongo_uri: str, ghl_sim: Any, cast_sim: Any
           ) -> Iterator[tuple[str, str, Topology]]:
    """The OAuth service and the sender, each in its own thread, one location installed."""
    ghl_sim.knobs.status_race_seconds = 0
    prefix = f"t{uuid.uuid4().hex[:10]}."
    oauth_port = free_port()
    oauth = OAuthSettings(
        rabbitmq_url=rabbitmq.url, mongo_uri=mongo_uri, queue_prefix=prefix,
        ghl_api_url=ghl_sim.url, ghl_marketplace_url=ghl_sim.url,
        base_url=f"http://127.0.0.1:{oauth_port}", ghl_client_id=DEFAULT_CLIENT_ID,
        ghl_client_secret=DEFAULT_CLIENT_SECRET, ghl_app_id=ghl_sim.knobs.app_id,
        token_encryption_keys=generate_key(), admin_api_key="admin-key-0123456789",
        sender_api_key=SENDER_KEY, cast_default_key_for="*", port=oauth_port,
        cast_api_url=cast_sim.url, cast_api_key=DEFAULT_API_KEY)
    sender = SenderSettings(
        rabbitmq_url=rabbitmq.url, mongo_uri=mongo_uri, queue_prefix=prefix,
        ghl_api_url=ghl_sim.url, oauth_url=f"http://127.0.0.1:{oauth_port}",
        sender_api_key=SENDER_KEY, cast_api_url=cast_sim.url, cast_api_key=DEFAULT_API_KEY,
        admin_api_key="admin-key-0123456789", ghl_status_delay_seconds=0.1,
        outbound_retry_delays=(0.2, 0.5),
        status_retry_delays=(0.2, 0.5), inbound_retry_delays=(0.2, 0.5),
        cast_receipt_check_delays=(0.2, 0.5, 1))
    with serve_in_thread(create_oauth(oauth), port=oauth_port) as oauth_url, \
            serve_in_thread(create_sender(sender)):
        page = httpx.get(f"{oauth_url}/oauth/install", follow_redirects=True, timeout=60)
        assert page.status_code == 200, page.text
        yield ghl_sim.url, cast_sim.url, sender.topology()
    infra.delete_queues(rabbitmq.url, sender.topology().queue_names())


@pytest.fixture
async def running(bridge: tuple[str, str, Topology], rabbitmq: Infra, ghl_sim: Any
                  ) -> AsyncIterator[Running]:
    ghl, cast, topology = bridge
    broker = make_broker(BrokerSettings(rabbitmq_url=rabbitmq.url), "test-gateway")
    await broker.connect()
    try:
        yield Running(ghl, cast, ghl_sim.knobs.location_id, topology, broker)
    finally:
        await broker.stop()


async def test_an_outbound_sms_is_sent_once_and_its_status_written(running: Running) -> None:
    text = f"hello {uuid.uuid4().hex[:8]}"
    message_id = await running.outbound(text)

    statuses = await until(
        lambda: _statuses(running, message_id), "the status to be written")
    assert [s["status"] for s in statuses] == ["delivered"]
    sent = [m for m in await get(f"{running.cast}/_sandbox/sent") if m["message"] == text]
    assert [m["to"] for m in sent] == ["09171234567"]


async def test_a_message_the_carrier_rejects_ends_failed_never_delivered(
        running: Running, cast_sim: Any) -> None:
    mark = uuid.uuid4().hex[:8]
    cast_sim.knobs.carrier_rules = [CarrierRule(contains=mark, status="undelivered",
                                                dlr_status="REJECTD", delay_seconds=0.6)]
    message_id = await running.outbound(f"trial sender {mark}")

    [status] = await until(lambda: _statuses(running, message_id), "the failed status")
    assert (status["status"], status["error"]["code"]) == ("failed", "carrier_rejected")
    cast_sim.knobs.carrier_rules = []


async def test_a_receipt_check_that_cannot_be_read_is_parked(running: Running) -> None:
    await publish(running.broker, running.topology.outbound.queue, b"{not json",
                  headers={KIND_HEADER: RECEIPT_CHECK})

    assert (await until(lambda: _parked_reason(running), "a parked check")).startswith(
        "not a ReceiptCheck")


async def test_an_invalid_number_fails_in_the_conversation_and_texts_nobody(
        running: Running) -> None:
    text = f"to nowhere {uuid.uuid4().hex[:8]}"
    message_id = await running.outbound(text, phone="+1 555 123 4567")

    [status] = await until(lambda: _statuses(running, message_id), "the failed status")
    assert status["status"] == "failed"
    assert "not a Philippine mobile number" in status["error"]["message"]
    assert [m for m in await get(f"{running.cast}/_sandbox/sent") if m["message"] == text] == []


async def test_a_reply_from_a_texted_phone_reaches_its_conversation(running: Running) -> None:
    message_id = await running.outbound("are you coming?")
    await until(lambda: _statuses(running, message_id), "the first message's status")
    await publish(running.broker, running.topology.inbound.queue, InboundSms.model_validate(
        {"from": "0917 123 4567", "message": "Yes!", "cast_message_id": "CASTIN-app-1"}))

    async def arrived() -> list[dict[str, Any]]:
        found = await get(f"{running.ghl}/_sandbox/messages?direction=inbound")
        return [m for m in found if m.get("altId") == "CASTIN-app-1"]

    [reply] = await until(arrived, "the reply in GHL")
    assert reply["locationId"] == running.location_id


async def test_an_unreadable_message_is_parked_with_its_reason(running: Running) -> None:
    await publish(running.broker, running.topology.outbound.queue, b"{not json")

    assert (await until(lambda: _parked_reason(running), "a parked message")).startswith(
        "not a OutboundSms")


async def _parked_reason(running: Running) -> str | None:
    queue = await running.broker.declare_queue(running.topology.outbound.parked)
    got = await queue.get(no_ack=True, fail=False)
    return str(got.headers.get(PARKED_REASON_HEADER)) if got is not None else None


async def _statuses(running: Running, message_id: str) -> list[dict[str, Any]]:
    found = await get(f"{running.ghl}/_sandbox/messages/{message_id}")
    return list(found.get("statuses") or [])
