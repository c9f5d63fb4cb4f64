"""POST /webhooks/ghl/app: signed INSTALL/UNINSTALL events reach the lifecycle queue."""

from __future__ import annotations

import aio_pika
import httpx

from castghl.common.ghl.webhooks import AppInstall, AppUninstall

from .conftest import RunningGateway, drain

PATH = "/webhooks/ghl/app"


async def test_install_and_uninstall_are_published(gateway: RunningGateway,
                                                   amqp: aio_pika.abc.AbstractChannel) -> None:
    install = gateway.body(type="INSTALL", appId="app1", companyId="co1", locationId="loc1",
                           userId="u1", planId="p1", trial={}, companyName="Acme")
    uninstall = gateway.body(type="UNINSTALL", appId="app1", locationId="loc1")
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for body in (install, uninstall):
            answer = await client.post(PATH, content=body, headers=gateway.signer.headers(body))
            assert answer.status_code == 200, answer.text
    first, second = await drain(amqp, gateway.topology.lifecycle.queue.name)
    assert AppInstall.model_validate_json(first.body).location_id == "loc1"
    assert AppUninstall.model_validate_json(second.body).type == "UNINSTALL"


async def test_other_event_types_are_ignored(gateway: RunningGateway,
                                             amqp: aio_pika.abc.AbstractChannel) -> None:
    body = gateway.body(type="LocationUpdate", locationId="loc1")
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answer = await client.post(PATH, content=body, headers=gateway.signer.headers(body))
    assert answer.status_code == 200
    assert answer.json()["status"] == "ignored"
    assert await drain(amqp, gateway.topology.lifecycle.queue.name) == []


async def test_unsigned_or_incomplete_events_are_refused(
    gateway: RunningGateway, amqp: aio_pika.abc.AbstractChannel,
) -> None:
    unsigned = gateway.body(type="INSTALL", locationId="loc1")
    nowhere = gateway.body(type="UNINSTALL", appId="app1")
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert (await client.post(PATH, content=unsigned)).status_code == 401
        answer = await client.post(PATH, content=nowhere, headers=gateway.signer.headers(nowhere))
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_request"
    assert "locationId or companyId" in answer.json()["detail"]
    assert await drain(amqp, gateway.topology.lifecycle.queue.name) == []
