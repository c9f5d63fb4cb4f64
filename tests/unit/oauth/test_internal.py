"""The internal API the sender asks: only for the sender's key; tokens, settings with the
Cast key, routing; failures as the error family's code — and the real client on top of
the real routes (`ASGITransport`), so an error comes back as the class it left as."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from castghl.common import answers
from castghl.common.errors import NeedsReauth, NotInstalled, ServiceUnavailable
from castghl.common.http import Upstream
from castghl.common.messages import CastKey, InstallStatus
from castghl.common.oauth_client import OAuthClient
from castghl.oauth.installation import LocationPrefs
from castghl.oauth.internal import internal_router
from castghl.oauth.refresh import TokenService
from castghl.oauth.tenancy import DefaultKeyFor

from .fakes import Clock, FakeGhl, FakeStore, installation

CAST_KEY = "cast_" + "ab12" * 16
SENDER_KEY = "sender-key-0123456789"
AUTH = {"Authorization": f"Bearer {SENDER_KEY}"}
NOBODY, EVERYONE = DefaultKeyFor(), DefaultKeyFor(everyone=True)


@dataclass
class Service:
    store: FakeStore
    ghl: FakeGhl
    http: httpx.AsyncClient  # to send what the OAuth client never would
    transport: httpx.AsyncBaseTransport
    default_key_for: DefaultKeyFor = NOBODY

    def client(self) -> OAuthClient:
        return OAuthClient(Upstream(self.transport), "http://oauth", SENDER_KEY)


def app_for(store: FakeStore, ghl: FakeGhl, default_key_for: DefaultKeyFor) -> FastAPI:
    app = FastAPI()
    answers.install(app)
    app.include_router(internal_router(
        TokenService(store, ghl, "p1", clock=Clock()), store, sender_api_key=SENDER_KEY,
        default_key_for=default_key_for, min_valid_floor=300))
    return app


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    store, ghl = FakeStore(), FakeGhl()
    transport = httpx.ASGITransport(app=app_for(store, ghl, NOBODY))
    async with httpx.AsyncClient(transport=transport, base_url="http://oauth") as http:
        yield Service(store, ghl, http, transport)


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/internal/tokens"), ("POST", "/internal/locations"),
    ("GET", "/internal/routes/09171234567")])
@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": SENDER_KEY}],
    ids=["none", "wrong", "no-scheme"])
async def test_only_the_senders_key_gets_an_answer(service: Service, method: str, path: str,
                                                   headers: dict[str, str]) -> None:
    service.store.put(installation(prefs=LocationPrefs(cast_api_key=CAST_KEY)))
    answer = await service.http.request(method, path, headers=headers, json={
        "requests": [{"location_id": "loc1"}], "location_ids": ["loc1"]})
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"
    assert CAST_KEY not in answer.text
    assert "access-0" not in answer.text


async def test_a_token_is_answered_with_its_expiry(service: Service) -> None:
    inst = service.store.put(installation(expires_in=3600))
    token = await service.client().token("loc1")
    assert token == "access-0"
    assert inst.expires_at is not None


async def test_the_service_floor_applies_when_a_caller_asks_for_less(service: Service) -> None:
    service.store.put(installation(expires_in=200))
    answer = await service.http.post("/internal/tokens", headers=AUTH, json={
        "requests": [{"location_id": "loc1", "min_valid_seconds": 10}]})
    [token] = answer.json()["tokens"]
    assert token["access_token"] == "access-1"  # refreshed: 200 s < the 300 s floor


async def test_a_stale_token_is_only_refreshed_if_still_stored(service: Service) -> None:
    service.store.put(installation(access="newer", expires_in=3600))
    assert await service.client().refresh("loc1", "older") == "newer"
    assert service.ghl.refreshes == []


@pytest.mark.parametrize(("stored", "raised", "status"), [
    (None, NotInstalled, 404),
    (installation(status=InstallStatus.NEEDS_REAUTH), NeedsReauth, 409),
], ids=["not-installed", "needs-reauth"])
async def test_failures_cross_as_codes_and_come_back_as_the_same_class(
        service: Service, stored: object, raised: type[Exception], status: int) -> None:
    if stored is not None:
        service.store.put(stored)  # type: ignore[arg-type]
    answer = await service.http.post("/internal/tokens", headers=AUTH,
                                     json={"requests": [{"location_id": "loc1"}]})
    [token] = answer.json()["tokens"]
    assert raised(token["detail"]).http_status == status  # type: ignore[attr-defined]
    assert token["access_token"] is None
    with pytest.raises(raised):
        await service.client().token("loc1")


async def test_many_tokens_are_answered_in_one_call_each_with_its_own_outcome(
        service: Service) -> None:
    for n in range(50):
        service.store.put(installation(f"loc{n}", access=f"access-loc{n}", expires_in=3600))
    service.store.put(installation("expired", expires_in=0))
    reads = service.store.reads
    answer = await service.http.post("/internal/tokens", headers=AUTH, json={"requests": [
        *({"location_id": f"loc{n}"} for n in range(50)),
        {"location_id": "expired"}, {"location_id": "unknown"}]})
    tokens = {t["location_id"]: t for t in answer.json()["tokens"]}
    assert [tokens[f"loc{n}"]["access_token"] for n in range(50)] == [
        f"access-loc{n}" for n in range(50)]
    assert tokens["expired"]["access_token"] == "access-1"  # refreshed on the way
    assert tokens["unknown"]["code"] == "not_installed"
    assert service.store.reads - reads <= 3  # one read for all, then the one renewal's


async def test_a_broken_store_is_the_service_being_unavailable(service: Service) -> None:
    class Broken(FakeStore):
        async def get(self, key: str) -> None:
            raise ConnectionError("mongo down")

        async def get_many(self, keys: list[str]) -> dict[str, Any]:
            raise ConnectionError("mongo down")

    transport = httpx.ASGITransport(app=app_for(Broken(), FakeGhl(), NOBODY))
    async with httpx.AsyncClient(transport=transport, base_url="http://oauth") as http:
        answer = await http.post("/internal/tokens", headers=AUTH,
                                 json={"requests": [{"location_id": "x"}]})
        assert answer.status_code == 503
        assert answer.json() == {"code": "service_unavailable",
                                 "detail": "OAuth service problem: token store unavailable"}
        with pytest.raises(ServiceUnavailable):
            await OAuthClient(Upstream(transport), "http://oauth", SENDER_KEY).location("x")


@pytest.mark.parametrize("body", [
    b"junk", b"[]", b'{"requests": [{"min_valid_seconds": 5}]}', b'{"requests": []}',
    b'{"requests": [' + b",".join([b'{"location_id": "x"}'] * 501) + b"]}"],
    ids=["not-json", "not-an-object", "no-location", "none-asked", "too-many"])
async def test_a_bad_request_is_a_clear_400(service: Service, body: bytes) -> None:
    answer = await service.http.post("/internal/tokens", headers=AUTH, content=body)
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_request"


async def test_location_settings_carry_the_locations_own_cast_key(service: Service) -> None:
    service.store.put(installation(prefs=LocationPrefs(sender_id="CASTPH", cast_api_key=CAST_KEY,
                                                       rate_limit_per_second=5,
                                                       inbound_numbers=("+639171234567",))))
    found = await service.client().location("loc1")
    assert found.installed
    assert (found.cast_key, found.sender_id, found.cast_api_key,
            found.rate_limit_per_second) == (CastKey.OWN, "CASTPH", CAST_KEY, 5)
    assert found.inbound_numbers == ["+639171234567"]


async def test_an_uninstalled_or_unknown_location_has_no_settings(service: Service) -> None:
    service.store.put(installation(status=InstallStatus.UNINSTALLED,
                                   prefs=LocationPrefs(cast_api_key=CAST_KEY)))
    for location, status in (("loc1", InstallStatus.UNINSTALLED), ("unknown", None)):
        found = await service.client().location(location)
        assert not found.installed
        assert found.status is status
        assert (found.cast_key, found.cast_api_key) == (CastKey.NONE, None)


@pytest.mark.parametrize(("default_key_for", "company", "expected"), [
    (EVERYONE, "co1", CastKey.DEFAULT),
    (DefaultKeyFor(companies=frozenset({"co1"})), "co1", CastKey.DEFAULT),
    (DefaultKeyFor(companies=frozenset({"co1"})), "co2", CastKey.NONE),
    (NOBODY, "co1", CastKey.NONE),
], ids=["everyone", "listed", "not-listed", "nobody"])
async def test_the_default_key_is_only_for_the_companies_the_operator_allows(
        default_key_for: DefaultKeyFor, company: str, expected: CastKey) -> None:
    store = FakeStore()
    store.put(installation(company_id=company))
    transport = httpx.ASGITransport(app=app_for(store, FakeGhl(), default_key_for))
    found = await OAuthClient(Upstream(transport), "http://oauth", SENDER_KEY).location("loc1")
    assert found.cast_key is expected
    assert found.cast_api_key is None  # the default key itself never travels


async def test_routing_normalises_the_receiving_number(service: Service) -> None:
    service.store.put(installation(prefs=LocationPrefs(inbound_numbers=("+639171234567",))))
    oauth = service.client()
    for number in ("+639171234567", "0917-123-4567", "639171234567"):
        assert await oauth.route(number) == "loc1"
    assert await oauth.route("09998887777") is None
    assert await oauth.route("not a number") is None
