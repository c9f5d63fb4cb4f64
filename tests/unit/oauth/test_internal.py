"""The RPC answers: tokens (errors as data), settings with the Cast key, routing."""

from __future__ import annotations

import pytest

from castghl.common.messages import (
    CastKey,
    InstallStatus,
    LocationRequest,
    RouteRequest,
    TokenError,
    TokenRequest,
)
from castghl.oauth.installation import LocationPrefs
from castghl.oauth.refresh import TokenService
from castghl.oauth.rpc import answer_location, answer_route, answer_token
from castghl.oauth.tenancy import DefaultKeyFor

from .fakes import Clock, FakeGhl, FakeStore, installation

CAST_KEY = "cast_" + "ab12" * 16


def tokens(store: FakeStore) -> TokenService:
    return TokenService(store, FakeGhl(), "p1", clock=Clock())


async def test_a_token_request_is_answered_with_the_token_and_its_expiry() -> None:
    store = FakeStore()
    inst = store.put(installation(expires_in=3600))
    reply = await answer_token(tokens(store), TokenRequest(location_id="loc1"), 300)
    assert (reply.access_token, reply.expires_at, reply.error) == (
        "access-0", inst.expires_at, None)


async def test_the_service_floor_applies_when_a_caller_asks_for_less() -> None:
    store = FakeStore()
    store.put(installation(expires_in=200))
    request = TokenRequest(location_id="loc1", min_valid_seconds=10)
    reply = await answer_token(tokens(store), request, 300)
    assert reply.access_token == "access-1"  # refreshed: 200 s < the 300 s floor


async def test_a_stale_token_request_goes_through_refresh_if_stale() -> None:
    store = FakeStore()
    store.put(installation(access="newer", expires_in=3600))
    request = TokenRequest(location_id="loc1", stale_token="older")
    assert (await answer_token(tokens(store), request, 300)).access_token == "newer"


async def test_failures_are_answers_not_exceptions() -> None:
    store = FakeStore()
    reply = await answer_token(tokens(store), TokenRequest(location_id="nowhere"), 300)
    assert reply.error is TokenError.NOT_INSTALLED
    assert reply.access_token is None
    assert "nowhere" in reply.detail


async def test_a_broken_store_is_answered_as_upstream_unavailable() -> None:
    class Broken(FakeStore):
        async def get(self, key: str) -> None:
            raise ConnectionError("mongo down")

    reply = await answer_token(tokens(Broken()), TokenRequest(location_id="loc1"), 300)
    assert reply.error is TokenError.UPSTREAM_UNAVAILABLE
    assert reply.detail == "OAuth service problem: token store unavailable"


NOBODY, EVERYONE = DefaultKeyFor(), DefaultKeyFor(everyone=True)


async def test_location_settings_carry_the_decrypted_cast_key() -> None:
    store = FakeStore()
    store.put(installation(prefs=LocationPrefs(sender_id="CASTPH", cast_api_key=CAST_KEY,
                                               rate_limit_per_second=5,
                                               inbound_numbers=("09171234567",))))
    reply = await answer_location(store, LocationRequest(location_id="loc1"), NOBODY)
    assert reply.installed
    assert (reply.cast_key, reply.sender_id, reply.cast_api_key,
            reply.rate_limit_per_second) == (CastKey.OWN, "CASTPH", CAST_KEY, 5)
    assert reply.inbound_numbers == ["09171234567"]


async def test_an_uninstalled_or_unknown_location_has_no_settings() -> None:
    store = FakeStore()
    store.put(installation(status=InstallStatus.UNINSTALLED,
                           prefs=LocationPrefs(cast_api_key=CAST_KEY)))
    for location, status in (("loc1", InstallStatus.UNINSTALLED), ("unknown", None)):
        reply = await answer_location(store, LocationRequest(location_id=location), EVERYONE)
        assert not reply.installed
        assert reply.status is status
        assert (reply.cast_key, reply.cast_api_key) == (CastKey.NONE, None)


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
    reply = await answer_location(store, LocationRequest(location_id="loc1"), default_key_for)
    assert reply.cast_key is expected
    assert reply.cast_api_key is None  # the default key itself never travels


async def test_routing_normalises_the_receiving_number() -> None:
    store = FakeStore()
    store.put(installation(prefs=LocationPrefs(inbound_numbers=("09171234567",))))
    for number in ("+639171234567", "0917-123-4567", "639171234567"):
        assert (await answer_route(store, RouteRequest(to_number=number))).location_id == "loc1"
    assert (await answer_route(store, RouteRequest(to_number="09998887777"))).location_id is None
    assert (await answer_route(store, RouteRequest(to_number="not a number"))).location_id is None
