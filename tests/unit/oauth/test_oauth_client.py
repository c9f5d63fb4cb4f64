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
from castghl.common.http import Upstream
from castghl.common.messages import (
    LocationChanged,
    LocationSettings,
    LocationsReply,
    RouteReply,
    TokenAnswer,
    TokensReply,
)
from castghl.common.oauth_client import BoundedCache, OAuthClient, OAuthTimings

KEY = "sender-key-0123456789"
Answer = Callable[[httpx.Request], Awaitable[httpx.Response]]


def json_answer(model: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=model.model_dump_json().encode(),
                          headers={"content-type": "application/json"})


def asked_ids(request: httpx.Request) -> list[str]:
    body = json.loads(request.content)
    return [r["location_id"] for r in body["requests"]] if "requests" in body \
        else list(body["location_ids"])


def token_answer(token: str = "tok-1", hours: float = 24
                 ) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        expires = datetime.now(UTC) + timedelta(hours=hours)
        return json_answer(TokensReply(tokens=[
            TokenAnswer(location_id=location_id, access_token=token, expires_at=expires)
            for location_id in asked_ids(request)]))
    return answer


def settings_answer(**fields: Any) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        return json_answer(LocationsReply(locations=[
            LocationSettings(location_id=location_id, **fields)
            for location_id in asked_ids(request)]))
    return answer


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
    http = Upstream(httpx.MockTransport(service))
    return OAuthClient(http, "http://oauth.internal", KEY, OAuthTimings(**timings))


async def test_a_token_is_cached_until_shortly_before_it_expires() -> None:
    service = FakeService(token_answer())
    oauth = client(service)
    assert await oauth.token("loc1") == "tok-1"
    assert await oauth.token("loc1") == "tok-1"
    [asked] = service.asked
    assert (asked.method, asked.url.path) == ("POST", "/internal/tokens")
    assert asked.headers["authorization"] == f"Bearer {KEY}"
    [request] = service.bodies()[0]["requests"]
    assert (request["location_id"], request["stale_token"]) == ("loc1", None)


async def test_a_token_close_to_expiry_is_asked_for_again() -> None:
    service = FakeService(token_answer(hours=0.05))  # inside the renew margin
    oauth = client(service, renew_margin=300)
    await oauth.token("loc1")
    await oauth.token("loc1")
    assert len(service.asked) == 2


async def test_concurrent_asks_for_one_location_make_one_request() -> None:
    service = FakeService(token_answer())
    oauth = client(service)
    tokens = await asyncio.gather(*(oauth.token("loc1") for _ in range(50)))
    assert set(tokens) == {"tok-1"}
    assert len(service.asked) == 1


def by_path(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/internal/tokens":
        return token_answer()(request)
    return settings_answer(sender_id="CASTPH")(request)


async def test_200_look_ups_asked_at_once_go_out_as_one_request() -> None:
    service = FakeService(by_path)
    oauth = client(service)
    found = await asyncio.gather(*(oauth.location(f"loc{n}") for n in range(200)))
    assert [f.location_id for f in found] == [f"loc{n}" for n in range(200)]
    [asked] = service.asked
    assert (asked.method, asked.url.path) == ("POST", "/internal/locations")
    assert asked_ids(asked) == [f"loc{n}" for n in range(200)]
    tokens = await asyncio.gather(*(oauth.token(f"loc{n}") for n in range(200)))
    assert len(tokens) == 200
    assert len(service.asked) == 2


async def test_an_ask_already_on_its_way_is_joined_not_repeated() -> None:
    answered = asyncio.Event()

    async def service(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        await answered.wait()
        return settings_answer()(request)

    seen: list[httpx.Request] = []
    oauth = client(service)
    first = asyncio.create_task(oauth.location("loc1"))
    await asyncio.sleep(0)  # a turn of the loop: the first call is on its way
    await asyncio.sleep(0)
    second = asyncio.create_task(oauth.location("loc1"))
    answered.set()
    assert (await first).location_id == (await second).location_id == "loc1"
    assert len(seen) == 1


async def test_one_locations_error_does_not_fail_the_others_asked_with_it() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return json_answer(TokensReply(tokens=[
            TokenAnswer(location_id="gone", code="not_installed", detail="not installed"),
            TokenAnswer(location_id="here", access_token="tok-here",
                        expires_at=datetime.now(UTC) + timedelta(hours=24))]))

    oauth = client(FakeService(answer))
    gone, here = await asyncio.gather(oauth.token("gone"), oauth.token("here"),
                                      return_exceptions=True)
    assert isinstance(gone, NotInstalled)
    assert here == "tok-here"


async def test_a_settings_look_up_does_not_wait_for_a_token_refresh() -> None:
    ghl_answered = asyncio.Event()

    async def service(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/internal/tokens":
            await ghl_answered.wait()  # a refresh waiting on GHL
            return token_answer()(request)
        return settings_answer(sender_id="CASTPH")(request)

    oauth = client(service)
    refreshing = asyncio.create_task(oauth.refresh("loc1", "tok-old"))
    assert (await asyncio.wait_for(oauth.location("loc1"), 30)).sender_id == "CASTPH"
    assert not refreshing.done()
    ghl_answered.set()
    assert await refreshing == "tok-1"


async def test_refresh_drops_the_stale_token_and_sends_it_along() -> None:
    answers = iter(["tok-1", "tok-2"])

    def each_time_a_new_token(request: httpx.Request) -> httpx.Response:
        return token_answer(next(answers))(request)

    service = FakeService(each_time_a_new_token)
    oauth = client(service)
    stale = await oauth.token("loc1")
    assert await oauth.refresh("loc1", stale) == "tok-2"
    assert service.bodies()[1]["requests"][0]["stale_token"] == "tok-1"
    assert await oauth.token("loc1") == "tok-2"
    assert len(service.asked) == 2


async def test_refresh_with_an_already_replaced_token_uses_the_cached_new_one() -> None:
    service = FakeService(token_answer("tok-new"))
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

    def answer(request: httpx.Request) -> httpx.Response:
        return json_answer(TokensReply(tokens=[
            TokenAnswer(location_id="loc1", code=error.code, detail="because")]))

    with pytest.raises(raised) as caught:
        await client(FakeService(answer)).token("loc1")
    assert isinstance(caught.value, family)
    assert caught.value.detail == "because"
    assert caught.value.user_message  # a GHL user can read it


def _refuse(_: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("slow")


@pytest.mark.parametrize("answer", [
    _refuse,
    lambda _: httpx.Response(502, json={"unexpected": True}),
    lambda _: httpx.Response(503, content=b"restarting"),
    lambda _: httpx.Response(200, json={"tokens": []}),
], ids=["timeout", "proxy-502", "bare-503", "location-left-out"])
async def test_no_answer_is_the_service_being_unavailable(
        answer: Callable[[httpx.Request], httpx.Response]) -> None:
    # An outage: waited out without using an attempt (castghl.common.outages).
    with pytest.raises(ServiceUnavailable):
        await client(FakeService(answer)).token("loc1")


@pytest.mark.parametrize("answer", [
    lambda _: httpx.Response(200, content=b"not json"),
    lambda _: httpx.Response(200, content=b""),
    lambda _: httpx.Response(500, content=b"Internal Server Error"),
    lambda _: httpx.Response(400, json={"code": "new_in_a_later_version", "detail": "?"}),
], ids=["garbage", "empty", "bare-500", "unknown-code"])
async def test_an_answer_that_cannot_be_used_is_retried_as_an_attempt(
        answer: Callable[[httpx.Request], httpx.Response]) -> None:
    # The service is up and answers something waiting will not change: attempts count.
    with pytest.raises(RetryableError) as caught:
        await client(FakeService(answer)).token("loc1")
    assert not isinstance(caught.value, ServiceUnavailable)


async def test_location_settings_are_cached_for_their_ttl_and_dropped_on_notice() -> None:
    now = [0.0]
    service = FakeService(settings_answer(company_id="co1", sender_id="CASTPH"))
    oauth = OAuthClient(Upstream(httpx.MockTransport(service)),
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
    assert asked_ids(service.asked[0]) == ["loc1"]


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


async def test_a_number_is_one_quoted_path_segment() -> None:
    service = FakeService(lambda r: json_answer(RouteReply(location_id=None)))
    await client(service).route("../tokens?x=1")
    assert service.asked[0].url.raw_path == b"/internal/routes/..%2Ftokens%3Fx%3D1"


def test_a_cache_forgets_its_oldest_entries_past_its_bound() -> None:
    cache: BoundedCache[str, int] = BoundedCache(limit=3)
    for n in range(5):
        cache.put(f"k{n}", n, until=100.0)
    assert [cache.get(f"k{n}", 0.0) for n in range(5)] == [None, None, 2, 3, 4]
    assert cache.get("k4", 100.0) is None  # expired
