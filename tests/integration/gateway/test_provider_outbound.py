"""POST /webhooks/ghl/provider-outbound: verify, validate, publish durably, answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
import pytest

from castghl.common.messages import OutboundSms

from .conftest import RunningGateway, drain

PATH = "/webhooks/ghl/provider-outbound"
BAD = "invalid_request"
UNTIMELY = "untimely_webhook"


def webhook(**overrides: object) -> dict[str, object]:
    return {"contactId": "c1", "locationId": "loc1", "messageId": "m1", "type": "SMS",
            "phone": "+639171234567", "message": "Hello", "attachments": [],
            "userId": "u1", **overrides}


async def test_signed_webhook_is_published_persistently_then_accepted(
    gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel,
) -> None:
    body = gateway.body(**webhook(attachments=["https://x.test/a.png"], surprise="tolerated"))
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=body, headers=gateway.signer.headers(body))
    assert answer.status_code == 200
    assert answer.json() == {"status": "accepted"}
    [message] = await drain(amqp, gateway.topology.outbound.queue.name)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == "m1"
    published = OutboundSms.model_validate_json(message.body)
    assert (published.message_id, published.location_id, published.phone, published.message,
            published.attachments) == ("m1", "loc1", "+639171234567", "Hello",
                                       ["https://x.test/a.png"])


async def test_rsa_signature_in_the_legacy_header_is_accepted(
    gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel,
) -> None:
    body = gateway.body(**webhook())
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=body,
                                   headers={"X-WH-Signature": gateway.signer.rsa(body)})
    assert answer.status_code == 200
    assert len(await drain(amqp, gateway.topology.outbound.queue.name)) == 1


def _tampered(gateway: RunningGateway, body: bytes) -> dict[str, str]:
    return gateway.signer.headers(body + b" ")


@pytest.mark.parametrize(
    ("headers_for", "code", "error"),
    [
        pytest.param(lambda g, b: {}, "missing_signature", "missing signature", id="unsigned"),
        pytest.param(lambda g, b: {"X-GHL-Signature": "N/A"}, "missing_signature",
                     "missing signature", id="n/a"),
        pytest.param(lambda g, b: {"X-GHL-Signature": "not base64!"}, "missing_signature",
                     "missing signature", id="garbage"),
        pytest.param(_tampered, "invalid_signature", "invalid signature",
                     id="signed-other-bytes"),
        pytest.param(lambda g, b: {"X-GHL-Signature": g.signer.rsa(b)}, None, None,
                     id="rsa-in-ed25519-header-accepted"),
    ],
)
async def test_signature_rules(gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel,
                               headers_for: object, code: str | None, error: str | None
                               ) -> None:
    body = gateway.body(**webhook())
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=body,
                                   headers=headers_for(gateway, body))  # type: ignore[operator]
    published = await drain(amqp, gateway.topology.outbound.queue.name)
    if error is None:
        assert answer.status_code == 200
        assert len(published) == 1
    else:
        assert answer.status_code == 401
        assert answer.json() == {"code": code, "detail": answer.json()["detail"]}
        assert error in answer.json()["detail"]
        assert published == []


async def test_reserialised_json_fails_verification(
    gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel,
) -> None:
    signed = json.dumps(webhook()).encode()  # GHL's bytes: default separators
    sent = gateway.body(**webhook())  # same data, compact separators
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=sent, headers=gateway.signer.headers(signed))
    assert answer.status_code == 401
    assert await drain(amqp, gateway.topology.outbound.queue.name) == []


def stamped(**offset: float) -> Callable[[], bytes]:
    """A webhook whose `timestamp` is `offset` from the moment it is sent."""
    return lambda: json.dumps(webhook(
        timestamp=(datetime.now(UTC) + timedelta(**offset)).isoformat())).encode()


@pytest.mark.parametrize(
    ("raw", "status", "code", "error"),
    [
        pytest.param(b"not json", 400, BAD, "body is not valid JSON", id="not-json"),
        pytest.param(b"[1, 2]", 400, BAD, "body must be a JSON object", id="array"),
        pytest.param(json.dumps({**webhook(), "messageId": None}).encode(), 400, BAD,
                     "messageId", id="null-message-id"),
        pytest.param(json.dumps({k: v for k, v in webhook().items() if k != "messageId"}
                                ).encode(), 400, BAD, "messageId is missing",
                     id="no-message-id"),
        pytest.param(json.dumps({k: v for k, v in webhook().items() if k != "locationId"}
                                ).encode(), 400, BAD, "locationId is missing",
                     id="no-location-id"),
        # Stamped when the test runs, not when it is collected: a slow run must not age
        # a timestamp "10 minutes ahead" into the present.
        pytest.param(stamped(hours=-73), 401, UNTIMELY, "stale webhook",
                     id="stale-timestamp"),
        pytest.param(stamped(minutes=10), 401, UNTIMELY, "in the future",
                     id="future-timestamp"),
        pytest.param(json.dumps(webhook(message="x" * 70_000)).encode(), 413, "body_too_large",
                     "larger than", id="oversized"),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_publishes_nothing(
    gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel,
    raw: bytes | Callable[[], bytes], status: int, code: str, error: str,
) -> None:
    raw = raw() if callable(raw) else raw
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=raw, headers=gateway.signer.headers(raw))
    assert answer.status_code == status
    assert answer.json()["code"] == code
    assert error in answer.json()["detail"]
    assert await drain(amqp, gateway.topology.outbound.queue.name) == []


async def test_oversized_chunked_body_is_refused_without_a_length_header(
    gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel,
) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(80):
            yield b"x" * 1024

    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=chunks(), headers={"X-GHL-Signature": "x"})
    assert answer.status_code == 413
    assert answer.json()["code"] == "body_too_large"
    assert await drain(amqp, gateway.topology.outbound.queue.name) == []


async def test_fresh_timestamp_is_accepted(gateway: RunningGateway,
                                           amqp: aio_pika.abc.AbstractChannel) -> None:
    body = gateway.body(**webhook(timestamp=datetime.now(UTC).isoformat(), webhookId="w1"))
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=body, headers=gateway.signer.headers(body))
    assert answer.status_code == 200
    assert len(await drain(amqp, gateway.topology.outbound.queue.name)) == 1


async def test_a_retry_hours_after_its_timestamp_is_still_accepted(
        gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel) -> None:
    # GHL retries for about three days: a retry after an outage must not be lost.
    late = datetime.now(UTC) - timedelta(hours=2)
    body = gateway.body(**webhook(timestamp=late.isoformat(), webhookId="w2"))
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=body, headers=gateway.signer.headers(body))
    assert answer.status_code == 200
    assert len(await drain(amqp, gateway.topology.outbound.queue.name)) == 1


async def test_non_sms_type_is_acknowledged_and_ignored(
    gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel,
) -> None:
    body = gateway.body(**webhook(type="Email"))
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=body, headers=gateway.signer.headers(body))
    assert answer.status_code == 200
    assert answer.json()["status"] == "ignored"
    assert await drain(amqp, gateway.topology.outbound.queue.name) == []


async def test_unroutable_publish_answers_503_so_ghl_retries(
    gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel,
) -> None:
    # The queue vanishing is the broker refusing to store: the gateway must not say 2xx.
    await amqp.queue_delete(gateway.topology.outbound.queue.name, if_unused=False,
                            if_empty=False)
    body = gateway.body(**webhook())
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=body, headers=gateway.signer.headers(body))
    assert answer.status_code == 503
    assert answer.json() == {"code": "not_stored",
                             "detail": "temporarily unable to accept webhooks"}
    await amqp.declare_queue(gateway.topology.outbound.queue.name, durable=True,
                             arguments=gateway.topology.outbound.queue.arguments)


async def test_only_post_is_allowed(gateway: RunningGateway,
                                    amqp: aio_pika.abc.AbstractChannel) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.get(PATH)
    assert answer.status_code == 405
    assert answer.json()["code"] == "method_not_allowed"
    assert await drain(amqp, gateway.topology.outbound.queue.name) == []


async def test_health_routes_are_served_beside_the_webhooks(
        gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        ready = await client.get("/readyz")
        metrics = await client.get("/metrics")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"rabbitmq": True}
    assert "castghl_webhooks_accepted_total" in metrics.text
