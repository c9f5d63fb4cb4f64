"""The sender's client of the OAuth service's internal API: caching, collapsing,
concurrency, and the error family it raises — with `httpx.MockTransport` as the service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from castghl.common.errors import (
    AccountError,
    BridgeError,
    LocationInactive,
    NeedsReauth,
    NotInstalled,
    PermanentError,
    RetryableError,
    ServiceUnavailable,
    UpstreamUnavailable,
)
from castghl.common.messages import LocationChanged, LocationSettings, RouteReply, TokenReply
from castghl.common.oauth_client import BoundedCache, OAuthClient, OAuthTimings

KEY = "sender-key-0123456789"
Answer = Callable[[httpx.Request], Awaitable[httpx.Response]]


def json_answer(model: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=model.model_dump_json().encode(),
                          headers={"content-type": "application/json"})


def token_answer(token: str = "tok-1", hours: float = 24) -> httpx.Response:
    return json_answer(TokenReply(access_token=token,
                                  expires_at=datetime.now(UTC) + timedelta(hours=hours)))


@dataclass
class FakeService:
    """The internal API: answers from `answer`, every request recorded."""

    answer: Callable[[httpx.Request], httpx.Response]
    asked: list[httpx.Request] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(request)
        await asyncio.sleep(0)  # a real answer comes back on a later turn of the loop
        return self.answer(request)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.asked if r.content]


def client(service: Callable[[httpx.Request], Awaitable[httpx.Response]],
           **timings: Any) -> OAuthClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(service))
    return OAuthClient(http, "http://oauth.internal", KEY, OAuthTimings(**timings))


async def test_a_token_is_cached_until_shortly_before_it_expires() -> None:
    service = FakeService(lambda _: token_answer())
    oauth = client(service)
    assert await oauth.token("loc1") == "tok-1"
    assert await oauth.token("loc1") == "tok-1"
    [asked] = service.asked
    assert (asked.method, asked.url.path) == ("POST", "/internal/tokens")
    assert asked.headers["authorization"] == f"Bearer {KEY}"
    assert service.bodies()[0]["location_id"] == "loc1"
    assert service.bodies()[0]["stale_token"] is None


async def test_a_token_close_to_expiry_is_asked_for_again() -> None:
    service = FakeService(lambda _: token_answer(hours=0.05))  # inside the renew margin
    oauth = client(service, renew_margin=300)
    await oauth.token("loc1")
    await oauth.token("loc1")
    assert len(service.asked) == 2


async def test_concurrent_asks_for_one_location_make_one_request() -> None:
    service = FakeService(lambda _: token_answer())
    oauth = client(service)
    tokens = await asyncio.gather(*(oauth.token("loc1") for _ in range(50)))
    assert set(tokens) == {"tok-1"}
    assert len(service.asked) == 1


async def test_200_look_ups_of_different_locations_are_all_in_flight_at_once() -> None:
    # The service answers nobody until all 200 are waiting: a client that asked one at a
    # time (FastStream's RPC did) would never get there.
    waiting, everyone = 0, asyncio.Event()

    async def service(request: httpx.Request) -> httpx.Response:
        nonlocal waiting
        waiting += 1
        if waiting == 200:
            everyone.set()
        await everyone.wait()
        location = request.url.path.rsplit("/", 1)[-1]
        return json_answer(LocationSettings(location_id=location))

    oauth = client(service)
    found = await asyncio.wait_for(
        asyncio.gather(*(oauth.location(f"loc{n}") for n in range(200))), timeout=60)
    assert [f.location_id for f in found] == [f"loc{n}" for n in range(200)]


async def test_a_settings_look_up_does_not_wait_for_a_token_refresh() -> None:
    ghl_answered = asyncio.Event()

    async def service(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/internal/tokens":
            await ghl_answered.wait()  # a refresh waiting on GHL
            return token_answer()
        return json_answer(LocationSettings(location_id="loc1", sender_id="CASTPH"))

    oauth = client(service)
    refreshing = asyncio.create_task(oauth.refresh("loc1", "tok-old"))
    assert (await asyncio.wait_for(oauth.location("loc1"), 30)).sender_id == "CASTPH"
    assert not refreshing.done()
    ghl_answered.set()
    assert await refreshing == "tok-1"


async def test_refresh_drops_the_stale_token_and_sends_it_along() -> None:
    answers = iter(["tok-1", "tok-2"])
    service = FakeService(lambda _: token_answer(next(answers)))
    oauth = client(service)
    stale = await oauth.token("loc1")
    assert await oauth.refresh("loc1", stale) == "tok-2"
    assert service.bodies()[1]["stale_token"] == "tok-1"
    assert await oauth.token("loc1") == "tok-2"
    assert len(service.asked) == 2


async def test_refresh_with_an_already_replaced_token_uses_the_cached_new_one() -> None:
    service = FakeService(lambda _: token_answer("tok-new"))
    oauth = client(service)
    await oauth.token("loc1")
    assert await oauth.refresh("loc1", "tok-old") == "tok-new"
    assert len(service.asked) == 1


@pytest.mark.parametrize(("raised", "family", "status"), [
    (NotInstalled, PermanentError, 404),
    (NeedsReauth, AccountError, 409),
    (LocationInactive, RetryableError, 503),
    (UpstreamUnavailable, RetryableError, 503),
])
async def test_the_services_errors_come_back_as_the_same_class(
        raised: type[BridgeError], family: type[BridgeError], status: int) -> None:
    error = raised("because")
    assert error.http_status == status
    service = FakeService(lambda _: httpx.Response(
        status, json={"code": error.code, "detail": "because"}))
    with pytest.raises(raised) as caught:
        await client(service).token("loc1")
    assert isinstance(caught.value, family)
    assert caught.value.detail == "because"
    assert caught.value.user_message  # a GHL user can read it


def _refuse(_: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("slow")


@pytest.mark.parametrize("answer", [
    _refuse,
    lambda _: httpx.Response(200, content=b"not json"),
    lambda _: httpx.Response(200, content=b""),
    lambda _: httpx.Response(500, content=b"Internal Server Error"),
    lambda _: httpx.Response(502, json={"unexpected": True}),
], ids=["timeout", "garbage", "empty", "bare-500", "no-code"])
async def test_no_usable_answer_is_the_service_being_unavailable(
        answer: Callable[[httpx.Request], httpx.Response]) -> None:
    with pytest.raises(ServiceUnavailable) as caught:
        await client(FakeService(answer)).token("loc1")
    assert isinstance(caught.value, RetryableError)


async def test_location_settings_are_cached_for_their_ttl_and_dropped_on_notice() -> None:
    now = [0.0]
    settings = LocationSettings(location_id="loc1", company_id="co1", sender_id="CASTPH")
    service = FakeService(lambda _: json_answer(settings))
    oauth = OAuthClient(httpx.AsyncClient(transport=httpx.MockTransport(service)),
                        "http://oauth.internal", KEY, OAuthTimings(settings_ttl=60),
                        monotonic=lambda: now[0])
    assert (await oauth.location("loc1")).sender_id == "CASTPH"
    now[0] = 59
    await oauth.location("loc1")
    assert len(service.asked) == 1
    now[0] = 61
    await oauth.location("loc1")
    assert len(service.asked) == 2
    oauth.forget(LocationChanged(company_id="co1"))
    await oauth.location("loc1")
    assert len(service.asked) == 3
    assert service.asked[0].url.path == "/internal/locations/loc1"


async def test_route_answers_the_owning_location_or_none() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        owner = "loc1" if request.url.path.endswith("/09171234567") else None
        return json_answer(RouteReply(location_id=owner))

    service = FakeService(answer)
    oauth = client(service)
    assert await oauth.route("09171234567") == "loc1"
    assert await oauth.route("09998887777") is None
    # An owner is cached; "nobody" is asked again (the operator may assign it any time).
    await oauth.route("09171234567")
    await oauth.route("09998887777")
    assert [r.url.path.rsplit("/", 1)[-1] for r in service.asked] == [
        "09171234567", "09998887777", "09998887777"]


async def test_ids_are_one_quoted_path_segment() -> None:
    service = FakeService(lambda r: json_answer(LocationSettings(location_id="x")))
    await client(service).location("../tokens?x=1")
    assert service.asked[0].url.raw_path == b"/internal/locations/..%2Ftokens%3Fx%3D1"


def test_a_cache_forgets_its_oldest_entries_past_its_bound() -> None:
    cache: BoundedCache[str, int] = BoundedCache(limit=3)
    for n in range(5):
        cache.put(f"k{n}", n, until=100.0)
    assert [cache.get(f"k{n}", 0.0) for n in range(5)] == [None, None, 2, 3, 4]
    assert cache.get("k4", 100.0) is None  # expired
