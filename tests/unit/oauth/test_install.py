"""The install pages: redirect, state, code exchange, agency installs, error pages.

GHL is an `httpx.MockTransport` behind the real GhlOAuth client; the store is the fake.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from castghl.common.ghl.oauth import SCOPES, GhlOAuth
from castghl.oauth.install import Installer, install_router
from castghl.oauth.install_state import StateSigner
from castghl.oauth.installation import company_key, location_key
from castghl.oauth.refresh import TokenService

from .fakes import Clock, FakeNotices, FakeStore

CALLBACK = "https://bridge.example/oauth/callback"
APP_ID = "app-1"
AUTHORIZE = "https://marketplace.example/v2/oauth/chooselocation"
ACCESS = "eyJhbGciOiJIUzI1NiJ9.location-access-token-value.signature"
REFRESH = "eyJhbGciOiJIUzI1NiJ9.location-refresh-token-value.signature"


@dataclass
class FakeGhlHttp:
    """GHL's /oauth/token and /oauth/locationToken, as HTTP."""

    user_type: str = "Location"
    location_id: str = "loc1"
    approved: list[str] = field(default_factory=lambda: ["loc1", "loc2"])
    # GHL's answer may list no locations: then installedLocations has them, in pages.
    token_lists_locations: bool = True
    token_answer: Callable[[], httpx.Response] | None = None
    forms: list[dict[str, str]] = field(default_factory=list)
    pages: list[dict[str, str]] = field(default_factory=list)
    busy_mints: set[str] = field(default_factory=set)  # locationToken answers 503 for these

    def installed_locations(self, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        self.pages.append(query)
        if query.get("appId") != APP_ID or query.get("companyId") != "co1":
            return httpx.Response(200, json={"locations": [], "count": 0})
        skip, limit = int(query.get("skip", "0")), int(query.get("limit", "20"))
        return httpx.Response(200, json={
            "locations": [{"_id": loc, "name": loc, "address": ""}
                          for loc in self.approved[skip:skip + limit]],
            "count": len(self.approved)})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/installedLocations":
            return self.installed_locations(request)
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        if request.url.path == "/oauth/locationToken":
            if form["locationId"] in self.busy_mints:
                return httpx.Response(503, text="busy")
            return httpx.Response(200, json={
                "access_token": f"minted-{form['locationId']}", "expires_in": 86399,
                "locationId": form["locationId"], "refresh_token": "minted-refresh"})
        if self.token_answer is not None:
            return self.token_answer()
        body: dict[str, Any] = {"access_token": ACCESS, "refresh_token": REFRESH,
                                "expires_in": 86399, "scope": SCOPES,
                                "userType": self.user_type, "companyId": "co1"}
        if self.user_type == "Location":
            body["locationId"] = self.location_id
        elif self.token_lists_locations:
            body["approvedLocations"] = self.approved
        return httpx.Response(200, json=body)


@dataclass
class Harness:
    client: httpx.AsyncClient
    ghl: FakeGhlHttp
    store: FakeStore
    signer: StateSigner
    now: list[float]
    installer: Installer


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    ghl, store, now = FakeGhlHttp(), FakeStore(), [1_000_000.0]
    http = httpx.AsyncClient(transport=httpx.MockTransport(ghl))
    oauth = GhlOAuth(http, "https://ghl.example", "client-1", "secret-1")
    signer = StateSigner("secret-1", 600, clock=lambda: now[0])
    installer = Installer(store, oauth, TokenService(store, oauth, "p1", clock=Clock()),
                          signer, FakeNotices(), authorize_url=AUTHORIZE,
                          callback_url=CALLBACK, client_id="client-1", app_id=APP_ID)
    app = FastAPI()
    app.include_router(install_router(installer))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="https://bridge.example") as client:
        yield Harness(client, ghl, store, signer, now, installer)
    await http.aclose()


async def test_install_redirects_to_ghl_with_everything_the_authorize_page_needs(
        harness: Harness) -> None:
    answer = await harness.client.get("/oauth/install")
    assert answer.status_code == 302
    target = urlsplit(answer.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == AUTHORIZE
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == "client-1"
    assert query["redirect_uri"] == CALLBACK
    assert set(SCOPES.split()) <= set(query["scope"].split())
    assert harness.signer.check(query["state"]) == "Location"


async def test_callback_stores_the_location_and_shows_the_next_step(harness: Harness) -> None:
    state = harness.signer.issue()
    answer = await harness.client.get("/oauth/callback", params={"code": "c1", "state": state})
    assert answer.status_code == 200
    assert "loc1" in answer.text
    assert "SMS Provider" in answer.text
    assert "Cast SMS" in answer.text
    assert '<a href="/ghl/settings">' in answer.text  # the settings page inside GHL
    assert ACCESS not in answer.text
    assert REFRESH not in answer.text
    assert answer.headers["cache-control"] == "no-store"
    stored = harness.store.docs[location_key("loc1")]
    assert stored.access_token == ACCESS
    assert stored.refresh_token == REFRESH
    form = harness.ghl.forms[0]
    assert (form["grant_type"], form["code"], form["user_type"], form["redirect_uri"]) == (
        "authorization_code", "c1", "Location", CALLBACK)


async def test_a_marketplace_install_without_state_is_accepted(harness: Harness) -> None:
    answer = await harness.client.get("/oauth/callback", params={"code": "c1"})
    assert answer.status_code == 200
    assert location_key("loc1") in harness.store.docs


async def test_an_agency_apps_marketplace_install_is_exchanged_as_company(
        harness: Harness) -> None:
    harness.installer.marketplace_user_type = "Company"
    harness.ghl.user_type = "Company"
    answer = await harness.client.get("/oauth/callback", params={"code": "c1"})
    assert answer.status_code == 200
    assert harness.ghl.forms[0]["user_type"] == "Company"
    assert company_key("co1") in harness.store.docs


async def test_an_agency_install_stores_the_company_and_mints_each_approved_location(
        harness: Harness) -> None:
    harness.ghl.user_type = "Company"
    state = harness.signer.issue("Company")
    answer = await harness.client.get("/oauth/callback", params={"code": "c1", "state": state})
    assert answer.status_code == 200
    assert "loc1" in answer.text
    assert "loc2" in answer.text
    assert harness.ghl.forms[0]["user_type"] == "Company"
    assert harness.store.docs[company_key("co1")].access_token == ACCESS
    for location in ("loc1", "loc2"):
        minted = harness.store.docs[location_key(location)]
        assert minted.minted
        assert minted.access_token == f"minted-{location}"


async def test_an_agency_of_45_whose_token_lists_none_is_paged_and_fully_installed(
        harness: Harness) -> None:
    harness.ghl.user_type = "Company"
    harness.ghl.approved = [f"loc{n:02d}" for n in range(1, 46)]
    harness.ghl.token_lists_locations = False
    state = harness.signer.issue("Company")
    answer = await harness.client.get("/oauth/callback", params={"code": "c1", "state": state})
    assert answer.status_code == 200
    # Past GHL's default page of 20: asked page by page, with a limit, until `count`.
    assert [(p["skip"], p["limit"]) for p in harness.ghl.pages] == [("0", "100")]
    for location in harness.ghl.approved:
        minted = harness.store.docs[location_key(location)]
        assert (minted.minted, minted.access_token) == (True, f"minted-{location}")


async def test_installed_locations_are_read_to_the_last_page() -> None:
    ghl = FakeGhlHttp(approved=[f"loc{n:03d}" for n in range(1, 251)])
    http = httpx.AsyncClient(transport=httpx.MockTransport(ghl))
    oauth = GhlOAuth(http, "https://ghl.example", "client-1", "secret-1")
    found = await oauth.installed_locations("company-token", "co1", APP_ID)
    assert found == ghl.approved
    assert [p["skip"] for p in ghl.pages] == ["0", "100", "200"]


async def test_a_location_whose_token_cannot_be_minted_yet_is_still_installed(
        harness: Harness) -> None:
    harness.ghl.user_type = "Company"
    harness.ghl.busy_mints = {"loc2"}
    state = harness.signer.issue("Company")
    await harness.client.get("/oauth/callback", params={"code": "c1", "state": state})
    pending = harness.store.docs[location_key("loc2")]
    # Recorded as installed through its agency, its token minted on first need.
    assert (pending.installed, pending.minted, pending.access_token) == (True, True, None)


async def test_values_from_ghl_are_escaped_on_the_page(harness: Harness) -> None:
    harness.ghl.location_id = "<script>alert(1)</script>"
    answer = await harness.client.get("/oauth/callback", params={"code": "c1"})
    assert "<script>alert(1)</script>" not in answer.text
    assert "&lt;script&gt;" in answer.text


def _expired_state(h: Harness) -> str:
    state = h.signer.issue()
    h.now[0] += 601
    return state


@pytest.mark.parametrize(("params", "status", "says"), [
    (lambda h: {"state": h.signer.issue()}, 400, "no authorization code"),
    (lambda h: {"code": "c1", "state": "1.abc.L.forged"}, 400, "invalid or has expired"),
    (lambda h: {"code": "c1", "state": _expired_state(h)}, 400, "invalid or has expired"),
    (lambda h: {"error": "access_denied"}, 400, "did not approve"),
], ids=["missing-code", "forged-state", "expired-state", "denied"])
async def test_bad_callbacks_get_a_clear_page_and_change_nothing(
        harness: Harness, params: Callable[[Harness], dict[str, str]], status: int,
        says: str) -> None:
    answer = await harness.client.get("/oauth/callback", params=params(harness))
    assert answer.status_code == status
    assert says in answer.text
    assert harness.ghl.forms == []
    assert harness.store.docs == {}


@pytest.mark.parametrize(("ghl_answer", "status", "says"), [
    (lambda: httpx.Response(400, json={"error": "invalid_grant",
                                       "error_description": "Invalid grant: code is invalid"}),
     400, "expired or was already used"),
    (lambda: httpx.Response(503, text="upstream down"), 502, "did not answer"),
    (lambda: (_ for _ in ()).throw(httpx.ConnectError("refused")), 502, "did not answer"),
    # GHL answers a reused code and wrong app credentials alike: the page says both.
    (lambda: httpx.Response(401, json={"error": "invalid_client"}), 400,
     "expired or was already used: start the install again from the Marketplace. If it "
     "keeps happening, the app's operator should check the client ID and secret."),
], ids=["invalid-grant", "ghl-5xx", "ghl-unreachable", "reused-code-or-bad-client"])
async def test_ghl_failures_get_a_clear_page_without_internals(
        harness: Harness, ghl_answer: Callable[[], httpx.Response], status: int,
        says: str) -> None:
    harness.ghl.token_answer = ghl_answer
    answer = await harness.client.get("/oauth/callback", params={"code": "c1"})
    assert answer.status_code == status
    assert says in html.unescape(answer.text)
    assert "Traceback" not in answer.text
    assert "c1" not in answer.text
    assert harness.store.docs == {}

