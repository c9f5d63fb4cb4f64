"""The caller-side client: caching, collapsing, and the error family it raises."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from faststream.rabbit import RabbitBroker, RabbitQueue

from castghl.common.errors import AccountError, BridgeError, PermanentError, RetryableError
from castghl.common.messages import LocationSettings, RouteReply, TokenError, TokenReply
from castghl.common.oauth_client import (
    LocationPaused,
    NeedsReauth,
    NotInstalled,
    OAuthClient,
    OAuthServiceUnavailable,
    UpstreamUnavailable,
)
from castghl.common.topology import Topology

TOPOLOGY = Topology(prefix="unit.")


@dataclass
class Reply:
    body: bytes
    correlation_id: str


@dataclass
class FakeBroker:
    """`RabbitBroker.request` as the client uses it: one answer function per queue."""

    answer: Callable[[str, dict[str, Any]], bytes | Exception]
    asked: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    wrong_correlation: bool = False

    async def request(self, body: bytes, *, queue: RabbitQueue, correlation_id: str,
                      **_options: Any) -> Reply:
        request = json.loads(body)
        self.asked.append((queue.name, request))
        # A round trip takes a moment: concurrent asks overlap, whatever the machine's speed.
        await asyncio.sleep(0.001)
        answer = self.answer(queue.name, request)
        if isinstance(answer, Exception):
            raise answer
        return Reply(answer, "other" if self.wrong_correlation else correlation_id)


def in_hours(hours: float) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


def token_answer(token: str = "tok-1", hours: float = 24) -> Callable[..., bytes]:
    def answer(_queue: str, _request: dict[str, Any]) -> bytes:
        return TokenReply(access_token=token, expires_at=in_hours(hours)).model_dump_json(
        ).encode()
    return answer


def client(broker: FakeBroker, **options: Any) -> OAuthClient:
    return OAuthClient(cast("RabbitBroker", broker), TOPOLOGY, **options)


async def test_a_token_is_cached_until_shortly_before_it_expires() -> None:
    broker = FakeBroker(token_answer())
    oauth = client(broker)
    assert await oauth.token("loc1") == "tok-1"
    assert await oauth.token("loc1") == "tok-1"
    assert len(broker.asked) == 1
    queue, request = broker.asked[0]
    assert queue == TOPOLOGY.token_rpc.name
    assert request["location_id"] == "loc1"
    assert request["stale_token"] is None


async def test_a_token_close_to_expiry_is_asked_for_again() -> None:
    broker = FakeBroker(token_answer(hours=0.05))  # 3 minutes: inside the renew margin
    oauth = client(broker, renew_margin_seconds=300)
    await oauth.token("loc1")
    await oauth.token("loc1")
    assert len(broker.asked) == 2


async def test_concurrent_asks_for_one_location_make_one_request() -> None:
    broker = FakeBroker(token_answer())
    oauth = client(broker)
    tokens = await asyncio.gather(*(oauth.token("loc1") for _ in range(50)))
    assert set(tokens) == {"tok-1"}
    assert len(broker.asked) == 1


async def test_refresh_drops_the_stale_token_and_sends_it_along() -> None:
    answers = iter(["tok-1", "tok-2"])

    def answer(queue: str, request: dict[str, Any]) -> bytes:
        return token_answer(next(answers))(queue, request)

    broker = FakeBroker(answer)
    oauth = client(broker)
    stale = await oauth.token("loc1")
    assert await oauth.refresh("loc1", stale) == "tok-2"
    assert broker.asked[1][1]["stale_token"] == "tok-1"
    assert await oauth.token("loc1") == "tok-2"
    assert len(broker.asked) == 2


async def test_refresh_with_an_already_replaced_token_uses_the_cached_new_one() -> None:
    broker = FakeBroker(token_answer("tok-new"))
    oauth = client(broker)
    await oauth.token("loc1")
    assert await oauth.refresh("loc1", "tok-old") == "tok-new"
    assert len(broker.asked) == 1


@pytest.mark.parametrize(("error", "raised", "family"), [
    (TokenError.NOT_INSTALLED, NotInstalled, PermanentError),
    (TokenError.NEEDS_REAUTH, NeedsReauth, AccountError),
    (TokenError.LOCATION_INACTIVE, LocationPaused, RetryableError),
    (TokenError.UPSTREAM_UNAVAILABLE, UpstreamUnavailable, RetryableError),
])
async def test_service_errors_become_the_error_family(
        error: TokenError, raised: type[BridgeError], family: type[BridgeError]) -> None:
    reply = TokenReply(error=error, detail="because").model_dump_json().encode()
    oauth = client(FakeBroker(lambda _q, _r: reply))
    with pytest.raises(raised) as caught:
        await oauth.token("loc1")
    assert isinstance(caught.value, family)
    assert caught.value.code == error.value
    assert caught.value.user_message  # a GHL user can read it


@pytest.mark.parametrize("broker", [
    FakeBroker(lambda _q, _r: TimeoutError()),
    FakeBroker(lambda _q, _r: b"not json"),
    FakeBroker(lambda _q, _r: b""),
    FakeBroker(token_answer(), wrong_correlation=True),
], ids=["timeout", "garbage", "empty", "someone-elses-reply"])
async def test_no_usable_answer_is_retryable(broker: FakeBroker) -> None:
    with pytest.raises(OAuthServiceUnavailable) as caught:
        await client(broker).token("loc1")
    assert isinstance(caught.value, RetryableError)


async def test_location_settings_are_cached_for_their_ttl() -> None:
    now = [0.0]
    settings = LocationSettings(location_id="loc1", sender_id="CASTPH",
                                cast_api_key="cast_" + "a" * 64).model_dump_json().encode()
    broker = FakeBroker(lambda _q, _r: settings)
    oauth = client(broker, settings_ttl_seconds=60, monotonic=lambda: now[0])
    assert (await oauth.location("loc1")).sender_id == "CASTPH"
    now[0] = 59
    await oauth.location("loc1")
    assert len(broker.asked) == 1
    now[0] = 61
    await oauth.location("loc1")
    assert len(broker.asked) == 2
    assert broker.asked[0][0] == TOPOLOGY.location_rpc.name


async def test_route_answers_the_owning_location_or_none() -> None:
    def answer(_queue: str, request: dict[str, Any]) -> bytes:
        owner = "loc1" if request["to_number"] == "09171234567" else None
        return RouteReply(location_id=owner).model_dump_json().encode()

    broker = FakeBroker(answer)
    oauth = client(broker)
    assert await oauth.route("09171234567") == "loc1"
    assert await oauth.route("09998887777") is None
    # An owner is cached; "nobody" is asked again (the operator may assign it any time).
    await oauth.route("09171234567")
    await oauth.route("09998887777")
    assert [request["to_number"] for _, request in broker.asked] == [
        "09171234567", "09998887777", "09998887777"]
