"""INSTALL / UNINSTALL from GHL's signed webhooks, through the real gateway and RabbitMQ."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from castghl.common.broker import publish
from castghl.common.errors import NotInstalled
from castghl.common.ghl.webhooks import AppInstall
from castghl.common.oauth_client import OAuthClient
from castghl.common.topology import PARKED_REASON_HEADER
from castghl.gateway.app import create_app as create_gateway
from castghl.gateway.settings import GatewaySettings
from castghl.oauth.lifecycle import IGNORED
from castghl.sandbox.server import serve_in_thread

from .conftest import (
    AUTH,
    Brokers,
    Running,
    Stack,
    install,
    queue_counts,
    take_one,
    wait_for,
)

LOCATION = "loc_sandbox_1"
CAST_KEY = "cast_" + "0123456789abcdef" * 4


@pytest.fixture
def gateway(stack: Stack) -> Iterator[str]:
    """The gateway verifying the simulator's signatures, publishing to this test's queues;
    the simulator sends its app webhooks there."""
    keys = stack.ghl.sandbox("GET", "/keys")
    settings = GatewaySettings(
        rabbitmq_url=stack.rabbitmq_url, queue_prefix=stack.topology.prefix,
        ghl_webhook_public_key=keys["ed25519_public_pem"],
        ghl_webhook_rsa_public_key=keys["rsa_public_pem"],
        inbound_api_key="inbound-key-0123456789")
    with serve_in_thread(create_gateway(settings)) as url:
        stack.ghl.knobs.app_webhook_url = f"{url}/webhooks/ghl/app"
        yield url


async def test_uninstall_deletes_the_secrets_and_keeps_a_tombstone(
        stack: Stack, service: Running, gateway: str, oauth: OAuthClient, cast_sim: Any
) -> None:
    cast_sim.knobs.api_keys = [*cast_sim.knobs.api_keys, CAST_KEY]  # the location's account
    assert (await install(service.url)).status_code == 200
    async with httpx.AsyncClient(base_url=service.url, headers=AUTH) as admin:
        answer = await admin.put(f"/admin/installations/{LOCATION}",
                                 json={"cast_api_key": CAST_KEY, "sender_id": "CASTPH"})
        assert answer.status_code == 200

    sent = stack.ghl.sandbox("POST", "/app-event", json={"type": "UNINSTALL"})

    assert [d["status_code"] for d in sent["deliveries"]] == [200]
    doc = wait_for(lambda: (d := stack.docs()[f"location:{LOCATION}"])["status"] == "uninstalled"
                   and d, "the uninstall to be stored")
    assert doc["access_token_enc"] is None
    assert doc["refresh_token_enc"] is None
    assert doc["prefs"]["cast_api_key_enc"] is None
    assert doc["uninstalled_at_ms"] > 0
    assert doc["prefs"]["sender_id"] == "CASTPH"  # the tombstone keeps what is not secret
    with pytest.raises(NotInstalled):
        await oauth.token(LOCATION)
    assert not (await oauth.location(LOCATION)).installed


async def test_install_of_a_location_under_a_stored_agency_mints_its_token(
        stack: Stack, service: Running, gateway: str, oauth: OAuthClient) -> None:
    stack.ghl.knobs.install_user_type = "Company"
    stack.ghl.knobs.approved_locations = ["loc_a", "loc_b"]
    assert (await install(service.url, agency=True)).status_code == 200
    stack.ghl.sandbox("POST", "/app-event", json={"type": "UNINSTALL", "locationId": "loc_b"})
    wait_for(lambda: stack.docs()["location:loc_b"]["status"] == "uninstalled",
             "loc_b to be uninstalled")
    minted_before = stack.ghl.counters()["location_tokens"]

    # The agency installs the app on loc_b again: no browser, just GHL's INSTALL webhook.
    sent = stack.ghl.sandbox("POST", "/app-event", json={"type": "INSTALL",
                                                         "locationId": "loc_b"})

    assert [d["status_code"] for d in sent["deliveries"]] == [200]
    wait_for(lambda: stack.docs()["location:loc_b"]["status"] == "active",
             "loc_b to be minted again")
    assert stack.ghl.counters()["location_tokens"] == minted_before + 1
    assert stack.ghl.token_works(await oauth.token("loc_b"), "loc_b")


async def test_an_unreadable_lifecycle_message_is_parked_and_the_consumer_goes_on(
        stack: Stack, service: Running, brokers: Brokers, oauth: OAuthClient) -> None:
    broker = await brokers.connect()
    lifecycle = stack.topology.lifecycle
    await publish(broker, lifecycle.queue, b'{"type": "REINSTALL", "locationId": 7}')
    assert (await install(service.url)).status_code == 200
    await publish(broker, lifecycle.queue, AppInstall(type="INSTALL", location_id=LOCATION,
                                                      company_id="comp_sandbox_1"))

    message = await take_one(stack.rabbitmq_url, lifecycle.parked.name)
    assert json.loads(message.body)["type"] == "REINSTALL"
    assert str(message.headers[PARKED_REASON_HEADER]).startswith("not a LifecycleEvent")
    # The consumer carried on: the INSTALL after the poison one was handled (and acked).
    assert await oauth.token(LOCATION)
    assert (await queue_counts(stack.rabbitmq_url, lifecycle.queue.name))[0] == 0


async def test_another_apps_uninstall_leaves_the_tokens_working_even_after_a_refresh(
        stack: Stack, service: Running, gateway: str, oauth: OAuthClient) -> None:
    assert (await install(service.url)).status_code == 200
    ignored = IGNORED.labels("other_app")._value.get()
    # Someone pointed their own app's webhooks at us; GHL signs them with the same key.
    for scope in ({"locationId": LOCATION}, {"companyId": "comp_sandbox_1", "locationId": None}):
        sent = stack.ghl.sandbox("POST", "/app-event", json={
            "type": "UNINSTALL", "appId": "someone-elses-app", **scope})
        assert [d["status_code"] for d in sent["deliveries"]] == [200]
    wait_for(lambda: IGNORED.labels("other_app")._value.get() == ignored + 2,
             "both events to be handled")
    assert stack.docs()[f"location:{LOCATION}"]["status"] == "active"
    # The access token expires: the refresh token, never touched, still works.
    stack.ghl.sandbox("POST", "/tokens/expire", json={"locationId": LOCATION})
    refreshed = await oauth.refresh(LOCATION, await oauth.token(LOCATION))
    assert stack.ghl.token_works(refreshed, LOCATION)


async def test_a_webhook_delivered_twice_is_handled_once_and_a_late_install_mints_nothing(
        stack: Stack, service: Running, gateway: str, oauth: OAuthClient) -> None:
    stack.ghl.knobs.install_user_type = "Company"
    stack.ghl.knobs.approved_locations = ["loc_a"]
    assert (await install(service.url, agency=True)).status_code == 200
    # After the install (just now): an INSTALL stamped a minute on, an UNINSTALL two.
    now = datetime.now(UTC)
    late_install = {"type": "INSTALL", "locationId": "loc_a", "webhookId": "wh-install",
                    "timestamp": (now + timedelta(minutes=1)).isoformat()}
    uninstall = {"type": "UNINSTALL", "locationId": "loc_a", "webhookId": "wh-uninstall",
                 "timestamp": (now + timedelta(minutes=2)).isoformat()}
    duplicates = IGNORED.labels("duplicate")._value.get()
    stale = IGNORED.labels("stale")._value.get()
    minted = stack.ghl.counters()["location_tokens"]

    for event in (uninstall, uninstall, late_install):
        stack.ghl.sandbox("POST", "/app-event", json=event)

    wait_for(lambda: IGNORED.labels("stale")._value.get() == stale + 1,
             "the late INSTALL to be judged stale")
    assert IGNORED.labels("duplicate")._value.get() == duplicates + 1
    assert stack.docs()["location:loc_a"]["status"] == "uninstalled"
    assert stack.ghl.counters()["location_tokens"] == minted
    assert not (await oauth.location("loc_a")).installed


async def test_an_agency_of_45_whose_token_lists_none_gets_every_location(
        stack: Stack, service: Running, oauth: OAuthClient) -> None:
    locations = [f"loc_{n:02d}" for n in range(1, 46)]
    stack.ghl.knobs.install_user_type = "Company"
    stack.ghl.knobs.approved_locations = locations
    stack.ghl.knobs.token_lists_locations = False  # GHL's installedLocations pages by 20
    page = await install(service.url, agency=True)
    assert page.status_code == 200, page.text
    docs = stack.docs()
    assert all(docs[f"location:{loc}"]["status"] == "active" for loc in locations)
    for location in ("loc_03", "loc_27", "loc_44"):
        assert stack.ghl.token_works(await oauth.token(location), location)
