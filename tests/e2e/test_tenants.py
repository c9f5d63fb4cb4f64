"""Issue #11, end to end: an operator with two client locations and an agency of 45.

Real processes, real RabbitMQ, a real Mongo wire server, the GHL and Cast simulators over
HTTP. GHL signs every app's webhooks with one key, so none of what follows may rest on a
signature: only installations of this app send, nothing crosses between clients, and an
agency of any size is installed whole. What Cast sent is found by each message's own
text, never by the bridge's idempotency-key format.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from castghl.sandbox.infra import Infra
from castghl.sandbox.stack import Stack

from .conftest import STATUS_TIMEOUT, make_stack, wait_until

CLIENT_A, CLIENT_B = "loc_client_a", "loc_client_b"
AGENCY = "comp_agency"
AGENCY_LOCATIONS = [f"loc_agency_{n:02d}" for n in range(1, 46)]
OTHER_APP = "app_someone_else"


@dataclass
class Sent:
    message_id: str
    text: str
    answers: list[int]


@dataclass
class Tenants:
    stack: Stack

    def send(self, location_id: str, phone: str, **payload: Any) -> Sent:
        """A GHL user of `location_id` texts `phone` (GHL signs and delivers the webhook)."""
        text = f"tenant test {uuid.uuid4().hex[:12]}"
        sent = self.stack.send(locationId=location_id, phone=phone, message=text,
                               extra=payload)
        return Sent(sent["messageId"], text, [d["status_code"] for d in sent["deliveries"]])

    def texted(self, sent: Sent) -> int:
        """How many SMS Cast really sent with this message's text."""
        return self.stack.cast_sent_texts().count(sent.text)

    def metric(self, name: str, labels: str = "") -> float:
        """A counter summed over every sender replica (`labels`: e.g. `reason="x"`)."""
        pattern = re.compile(rf"^{re.escape(name)}(?:{{([^}}]*)}})?\s+([0-9.e+]+)$", re.M)
        total = 0.0
        for sender in self.stack.sender_processes:
            text = httpx.get(f"{sender.url}/metrics", timeout=10).text
            total += sum(float(value) for found, value in pattern.findall(text)
                         if labels in found)
        return total


@pytest.fixture(scope="module")
def tenants(rabbitmq: Infra, mongo: Infra, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Tenants]:
    stack = make_stack(rabbitmq, mongo, tmp_path_factory.mktemp("tenants"))
    with stack.running():
        for company, location in (("comp_a", CLIENT_A), ("comp_b", CLIENT_B)):
            stack.configure_ghl(install_user_type="Location", company_id=company,
                                location_id=location)
            stack.install().raise_for_status()
        # The agency's token answer lists no locations, and GHL pages them by 20.
        stack.configure_ghl(install_user_type="Company", company_id=AGENCY,
                            approved_locations=AGENCY_LOCATIONS, token_lists_locations=False)
        stack.install(agency=True).raise_for_status()
        yield Tenants(stack)


def test_a_stranger_locations_webhook_texts_nobody(tenants: Tenants) -> None:
    refused = tenants.metric("castghl_outbound_refused_total")
    sent = tenants.send("loc_never_installed", "+639171110001")
    assert sent.answers == [200]  # GHL's signature verifies: it proves nothing more
    tenants.stack.wait_quiet()
    assert tenants.texted(sent) == 0
    assert tenants.stack.statuses(sent.message_id) == []
    assert tenants.metric("castghl_outbound_refused_total") == refused + 1


def test_locations_3_27_and_44_of_the_agency_get_statuses_with_their_own_tokens(
        tenants: Tenants) -> None:
    sent = [tenants.send(AGENCY_LOCATIONS[n - 1], f"+63917222{n:04d}") for n in (3, 27, 44)]
    statuses = tenants.stack.wait_for_statuses([s.message_id for s in sent], STATUS_TIMEOUT)
    # The simulator answers 403 to another location's token: 200 means each one's own.
    assert [s[0]["status"] for s in statuses.values()] == ["delivered"] * 3
    assert [tenants.texted(s) for s in sent] == [1, 1, 1]


def test_another_apps_uninstall_leaves_every_token_working(tenants: Tenants) -> None:
    stack = tenants.stack
    stack.app_event(type="UNINSTALL", appId=OTHER_APP, locationId=CLIENT_A, companyId="comp_a")
    stack.app_event(type="UNINSTALL", appId=OTHER_APP, companyId=AGENCY, locationId=None)
    stack.wait_quiet()
    # Access tokens expire: statuses now need a refresh, which must still work.
    httpx.post(f"{stack.ghl}/_sandbox/tokens/expire", json={}, timeout=10).raise_for_status()
    sent = [tenants.send(CLIENT_A, "+639173330001"),
            tenants.send(AGENCY_LOCATIONS[9], "+639173330002")]
    statuses = stack.wait_for_statuses([s.message_id for s in sent], STATUS_TIMEOUT)
    assert [s[0]["status"] for s in statuses.values()] == ["delivered", "delivered"]


def test_a_reply_routes_only_when_one_client_texted_the_person(tenants: Tenants) -> None:
    stack = tenants.stack
    shared, own = "+639174440001", "+639174440002"
    sent = [tenants.send(CLIENT_A, shared), tenants.send(AGENCY_LOCATIONS[2], shared),
            tenants.send(CLIENT_A, own)]
    stack.wait_for_statuses([s.message_id for s in sent], STATUS_TIMEOUT)
    ambiguous = tenants.metric("castghl_inbound_unroutable_total", 'reason="ambiguous"')

    stack.reply(sender=shared, to="09998887777", message="Sino ito?",
                message_id="CASTIN-tenant-shared")
    stack.reply(sender=own, message="Salamat!", message_id="CASTIN-tenant-own")

    [arrived] = stack.wait_for_inbound("CASTIN-tenant-own", STATUS_TIMEOUT)
    assert arrived["locationId"] == CLIENT_A
    stack.wait_quiet()
    assert stack.inbound_messages("CASTIN-tenant-shared") == []  # parked: it reaches no one
    assert tenants.metric("castghl_inbound_unroutable_total",
                          'reason="ambiguous"') == ambiguous + 1


def test_a_webhook_retried_two_hours_after_its_timestamp_is_delivered_once(
        tenants: Tenants) -> None:
    stack = tenants.stack
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    sent = tenants.send(CLIENT_A, "+639175550001", timestamp=two_hours_ago)
    again = stack.redeliver(sent.message_id)  # GHL's retry: the same bytes
    assert [*sent.answers, *(d["status_code"] for d in again["deliveries"])] == [200, 200]
    stack.wait_for_statuses([sent.message_id], STATUS_TIMEOUT)
    stack.wait_quiet()
    assert tenants.texted(sent) == 1
    assert [s["status"] for s in stack.statuses(sent.message_id)] == ["delivered"]


def test_an_uninstalled_location_texts_nobody(tenants: Tenants) -> None:
    stack = tenants.stack
    primed = tenants.send(CLIENT_B, "+639176660001")  # its settings are now cached
    stack.wait_for_statuses([primed.message_id], STATUS_TIMEOUT)
    notices = tenants.metric("castghl_location_notices_total")
    stack.app_event(type="UNINSTALL", locationId=CLIENT_B, companyId="comp_b")
    wait_until(lambda: tenants.metric("castghl_location_notices_total") > notices,
               "the senders to hear of the uninstall")
    refused = tenants.metric("castghl_outbound_refused_total")
    sent = tenants.send(CLIENT_B, "+639176660002")
    stack.wait_quiet()
    assert tenants.texted(sent) == 0
    assert tenants.metric("castghl_outbound_refused_total") == refused + 1
    assert stack.admin("GET", f"/installations/{CLIENT_B}").json()["state"] == "uninstalled"


def test_a_location_the_operator_stops_fails_at_once_until_it_is_allowed_again(
        tenants: Tenants) -> None:
    stack = tenants.stack
    location = AGENCY_LOCATIONS[10]
    primed = tenants.send(location, "+639176660011")  # its settings are now cached
    stack.wait_for_statuses([primed.message_id], STATUS_TIMEOUT)
    try:
        stopped = stack.admin("PUT", f"/installations/{location}", json={"sending": "stopped"})
        assert stopped.json()["state"] == "stopped", stopped.text
        # The change reaches the sender at once (a notice), not when its cache expires.
        sent = tenants.send(location, "+639176660012")
        [status] = stack.wait_for_statuses([sent.message_id], STATUS_TIMEOUT)[sent.message_id]
        assert status["status"] == "failed"
        assert "sending is stopped for this location" in str(status["error"])
        assert tenants.texted(sent) == 0
    finally:
        stack.admin("PUT", f"/installations/{location}", json={"sending": "allowed"})
    again = tenants.send(location, "+639176660013")
    [status] = stack.wait_for_statuses([again.message_id], STATUS_TIMEOUT)[again.message_id]
    assert status["status"] == "delivered"
    assert tenants.texted(again) == 1


def test_the_admin_api_shows_each_tenant_without_secrets(tenants: Tenants) -> None:
    answer = tenants.stack.admin("GET", "/installations")
    listed = {i["location_id"]: i for i in answer.json()["installations"]
              if i["kind"] == "location"}
    assert set(AGENCY_LOCATIONS) <= set(listed)
    assert listed[AGENCY_LOCATIONS[43]]["token_source"] == "agency"
    assert (listed[CLIENT_A]["state"], listed[CLIENT_A]["token_source"],
            listed[CLIENT_A]["cast_key"]) == ("active", "install", "default")
    assert "access_token" not in answer.text
    assert "refresh_token" not in answer.text
