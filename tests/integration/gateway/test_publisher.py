"""The gateway's way to RabbitMQ: declared like FastStream, unready while cut off, back after.

A relay between the gateway and RabbitMQ (the `relay` fixture) stands in for the network:
cutting it drops the connection exactly as a broker restart or a lost link would.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import httpx

from castghl.common.broker import Publisher, declare, make_broker
from castghl.common.settings import BrokerSettings
from castghl.common.topology import Topology
from castghl.gateway.app import create_app
from castghl.gateway.settings import GatewaySettings
from castghl.sandbox.infra import Infra
from castghl.sandbox.relay import Relay
from castghl.sandbox.server import serve_in_thread

from .conftest import INBOUND_KEY, Signer, _pem, drain

PATH = "/webhooks/ghl/provider-outbound"


async def _until(condition: object, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_the_publisher_declares_queues_exactly_as_faststream_does(
    rabbitmq: Infra,
) -> None:
    # The gateway declares with aio-pika, the workers with FastStream: either may start
    # first, so the arguments must be identical (RabbitMQ refuses a mismatch).
    topology = Topology(prefix=f"t{uuid.uuid4().hex[:10]}.")
    works = [topology.outbound, topology.inbound]
    queues = [queue for work in works for queue in (work.parked, work.queue)]
    publisher = Publisher(rabbitmq.url, "test")
    broker = make_broker(BrokerSettings(rabbitmq_url=rabbitmq.url), "test")
    await publisher.connect()
    await broker.connect()
    try:
        assert await publisher.declare_routes(topology.intake, works)
        await declare(broker, queues)
        assert await publisher.declare_routes(topology.intake, works)
    finally:
        for queue in queues:
            await publisher.channel.queue_delete(queue.name)
        await publisher.channel.exchange_delete(topology.intake.name)
        await broker.stop()
        await publisher.close()


async def test_cut_off_from_rabbitmq_the_gateway_is_unready_refuses_then_recovers(
    rabbitmq: Infra, relay: tuple[Relay, str], signer: Signer,
) -> None:
    cable, url = relay
    settings = GatewaySettings(
        rabbitmq_url=url, queue_prefix=f"t{uuid.uuid4().hex[:10]}.",
        ghl_webhook_public_key=_pem(signer.ed25519_key), ghl_webhook_rsa_public_key="",
        inbound_api_key=INBOUND_KEY)
    topology = settings.topology()

    def webhook(message_id: str) -> tuple[bytes, dict[str, str]]:
        body = (b'{"locationId":"loc1","messageId":"%s","type":"SMS",'
                b'"phone":"+639171234567","message":"Hello"}' % message_id.encode())
        return body, signer.headers(body)

    with serve_in_thread(create_app(settings)) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            async def unready() -> bool:
                return not await ready()

            assert await ready()
            body, headers = webhook("before")
            assert (await client.post(PATH, content=body, headers=headers)).status_code == 200

            cable.cut()
            await _until(unready)
            body, headers = webhook("during")
            refused = await client.post(PATH, content=body, headers=headers)
            assert refused.status_code == 503
            assert refused.json()["code"] == "not_stored"

            cable.restore()
            await _until(ready)
            body, headers = webhook("after")
            assert (await client.post(PATH, content=body, headers=headers)).status_code == 200

    connection = await aio_pika.connect(rabbitmq.url)
    try:
        channel = await connection.channel()
        stored = await drain(channel, topology.outbound.queue.name)
        assert sorted(m.message_id or "" for m in stored) == ["after", "before"]
        for work in (topology.outbound, topology.inbound, topology.lifecycle):
            for queue in work.all_queues():
                await channel.queue_delete(queue.name)
    finally:
        await connection.close()
