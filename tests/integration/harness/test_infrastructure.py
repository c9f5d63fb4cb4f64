"""The harness hands tests real services, and says which."""

from __future__ import annotations

import uuid

import aio_pika
from pymongo import AsyncMongoClient

from castghl.sandbox.infra import Infra


async def test_rabbitmq_confirms_a_persistent_publish_to_a_quorum_queue(rabbitmq: Infra) -> None:
    queue_name = f"harness.{uuid.uuid4().hex}"
    connection = await aio_pika.connect(rabbitmq.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await channel.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        await channel.default_exchange.publish(
            aio_pika.Message(b"ping", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue_name, mandatory=True)
        message = await queue.get(timeout=5)
        assert message is not None
        assert message.body == b"ping"
        await message.ack()
        await queue.delete(if_unused=False, if_empty=False)
    assert rabbitmq.description


async def test_mongo_round_trips_a_document_and_names_itself(mongo: Infra, mongo_uri: str
                                                               ) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_uri)
    try:
        db = client.get_default_database()
        await db.things.insert_one({"_id": "a", "n": 1})
        assert await db.things.find_one({"_id": "a"}) == {"_id": "a", "n": 1}
    finally:
        await client.close()
    # The emulator must never be reported as MongoDB.
    if "nx-27017" in mongo.description:
        assert "emulator" in mongo.description
        assert "not MongoDB" in mongo.description
