"""A real gateway on a real socket, publishing to the test's own queues on real RabbitMQ."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from castghl.common import serve
from castghl.common.topology import Topology
from castghl.gateway.app import create_app
from castghl.gateway.settings import GatewaySettings
from castghl.sandbox import infra
from castghl.sandbox.infra import Infra
from castghl.sandbox.server import serve_in_thread

INBOUND_KEY = "inbound-test-key-0123456789"


def _pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@dataclass
class Signer:
    ed25519_key: ed25519.Ed25519PrivateKey
    rsa_key: rsa.RSAPrivateKey

    def ed25519(self, body: bytes) -> str:
        return base64.b64encode(self.ed25519_key.sign(body)).decode()

    def rsa(self, body: bytes) -> str:
        return base64.b64encode(
            self.rsa_key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()

    def headers(self, body: bytes) -> dict[str, str]:
        return {"X-GHL-Signature": self.ed25519(body), "Content-Type": "application/json"}


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer(ed25519.Ed25519PrivateKey.generate(),
                  rsa.generate_private_key(public_exponent=65537, key_size=2048))


@dataclass
class RunningGateway:
    url: str
    topology: Topology
    signer: Signer

    @staticmethod
    def body(**fields: Any) -> bytes:
        return json.dumps(fields, separators=(",", ":")).encode()


@pytest.fixture
def gateway(rabbitmq: Infra, signer: Signer) -> Iterator[RunningGateway]:
    settings = GatewaySettings(
        rabbitmq_url=rabbitmq.url,
        queue_prefix=f"t{uuid.uuid4().hex[:10]}.",
        ghl_webhook_public_key=_pem(signer.ed25519_key),
        ghl_webhook_rsa_public_key=_pem(signer.rsa_key),
        inbound_api_key=INBOUND_KEY,
    )
    # On the gateway's own server settings (its HTTP limits among them).
    with serve_in_thread(create_app(settings), configure=serve.config) as url:
        yield RunningGateway(url, settings.topology(), signer)
    # The queues it declared: quorum queues left behind weigh on a shared broker.
    infra.delete_queues(rabbitmq.url, settings.topology().queue_names())


@pytest.fixture
async def amqp(rabbitmq: Infra, gateway: RunningGateway
               ) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A channel for inspecting (and afterwards deleting) the gateway's queues."""
    connection = await aio_pika.connect(rabbitmq.url)
    channel = await connection.channel()
    yield channel
    for work in gateway.topology.work_queues():
        for queue in work.all_queues():
            await channel.queue_delete(queue.name, if_unused=False, if_empty=False)
    await connection.close()


async def drain(channel: aio_pika.abc.AbstractChannel, name: str, idle: float = 0.3
                ) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message now in `name`, acked. A consumer, not basic.get: quorum queues with a
    single active consumer refuse basic.get."""
    queue = await channel.declare_queue(name, passive=True)
    found: list[aio_pika.abc.AbstractIncomingMessage] = []
    arrived = asyncio.Event()

    async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        found.append(message)
        arrived.set()

    tag = await queue.consume(take)
    try:
        while True:
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), idle)
            except TimeoutError:
                break
    finally:
        await queue.cancel(tag)
    return found
