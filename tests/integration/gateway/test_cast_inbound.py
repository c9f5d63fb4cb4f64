"""POST /webhooks/cast/inbound: the contract of docs/inbound.md, enforced."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import aio_pika
import httpx
import pytest

from castghl.common.messages import InboundSms

from .conftest import INBOUND_KEY, RunningGateway, drain

PATH = "/webhooks/cast/inbound"
MANILA = timezone(timedelta(hours=8))
AUTH = {"X-API-Key": INBOUND_KEY}
BAD = "invalid_request"


def ago(**delta: float) -> str:
    """A receive time relative to now, in Manila time as Cast's gateway may write it."""
    return (datetime.now(MANILA) - timedelta(**delta)).isoformat()


def reply(**overrides: object) -> bytes:
    fields = {"from": "0917-123-4567", "to": "+63 918 123 4567", "message": "Yes po",
              "message_id": "CASTIN1", "received_at": ago(minutes=3)}
    fields.update(overrides)
    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


@pytest.mark.parametrize("headers", [AUTH, {"Authorization": f"Bearer {INBOUND_KEY}"}],
                         ids=["x-api-key", "bearer"])
async def test_a_reply_is_normalised_and_published(gateway: RunningGateway,
                                                   amqp: aio_pika.abc.AbstractChannel,
                                                   headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=reply(extra="tolerated"), headers=headers)
    assert answer.status_code == 200
    assert answer.json() == {"status": "accepted"}
    [message] = await drain(amqp, gateway.topology.inbound.queue.name)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    sms = InboundSms.model_validate_json(message.body)
    # Both numbers parsed once, here, and carried in E.164.
    assert (str(sms.from_number), str(sms.to_number), sms.message, sms.cast_message_id) == (
        "+639171234567", "+639181234567", "Yes po", "CASTIN1")
    assert sms.received_at.utcoffset() is not None


async def test_without_a_message_id_a_repost_gets_the_same_id(
    gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel,
) -> None:
    body = reply(message_id=...)  # the same bytes twice, as a re-post sends them
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for _ in range(2):
            answer = await client.post(PATH, content=body, headers=AUTH)
            assert answer.status_code == 200
    first, second = await drain(amqp, gateway.topology.inbound.queue.name)
    ids = {InboundSms.model_validate_json(m.body).cast_message_id for m in (first, second)}
    assert len(ids) == 1
    assert ids.pop().startswith("sha256-")


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "error"),
    [
        pytest.param(reply(), {}, 401, "unauthorized", "missing API key", id="no-key"),
        pytest.param(reply(), {"X-API-Key": "wrong-key-0123456789"}, 401, "unauthorized",
                     "invalid API key", id="wrong-key"),
        pytest.param(reply(), {"Authorization": "Basic abc"}, 401, "unauthorized",
                     "missing API key", id="not-bearer"),
        pytest.param(b"junk", AUTH, 400, BAD, "body is not valid JSON", id="junk"),
        pytest.param(reply(**{"from": ...}), AUTH, 400, BAD, "from is missing", id="no-from"),
        pytest.param(reply(**{"from": "+1 555 123 4567"}), AUTH, 400, BAD,
                     "must be a Philippine mobile number", id="foreign-from"),
        pytest.param(reply(to="12"), AUTH, 400, BAD, "to", id="bad-to"),
        pytest.param(reply(message=...), AUTH, 400, BAD, "message is missing",
                     id="no-message"),
        pytest.param(reply(message=7), AUTH, 400, BAD, "message", id="message-not-text"),
        pytest.param(reply(received_at=123), AUTH, 400, BAD, "ISO-8601", id="epoch-number"),
        # Timed when the test runs, not when it is collected (a slow run moves "now").
        pytest.param(lambda: reply(received_at=ago(days=8)), AUTH, 400, BAD, "last 7 days",
                     id="received-long-ago"),
        pytest.param(lambda: reply(received_at=ago(minutes=-30)), AUTH, 400, BAD,
                     "not in the future", id="received-in-the-future"),
        pytest.param(reply(received_at="yesterday"), AUTH, 400, BAD, "received_at",
                     id="bad-time"),
        pytest.param(reply(message="x" * 70_000), AUTH, 413, "body_too_large", "larger than",
                     id="oversized"),
    ],
)
async def test_bad_requests_are_refused_and_publish_nothing(
    gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel,
    body: bytes | Callable[[], bytes], headers: dict[str, str], status: int, code: str,
    error: str,
) -> None:
    body = body() if callable(body) else body
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=body, headers=headers)
    assert answer.status_code == status
    assert answer.json()["code"] == code
    assert error in answer.json()["detail"]
    assert await drain(amqp, gateway.topology.inbound.queue.name) == []
