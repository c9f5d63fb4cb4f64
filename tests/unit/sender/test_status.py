"""Status delivery to GHL: the 403 race, one refresh on 401, rate limits, parking."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from pymongo.errors import AutoReconnect

from castghl.common.errors import PermanentError, RetryableError
from castghl.common.ghl.api import GhlApi
from castghl.common.http import Upstream
from castghl.common.messages import OutboundSms, StatusError, StatusUpdate
from castghl.common.worker import Done, Park, Retry
from castghl.sender.status import BUSY_RETRY_SECONDS, StatusReporter

from .fakes import FakeTokens, MemoryMessageStore, Settled

RACE = (403, {"statusCode": 403, "message": "No conversation provider found for this message"})


def ghl(*answers: tuple[int, dict[str, object]], seen: list[httpx.Request],
        headers: dict[str, str] | None = None) -> GhlApi:
    script = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = script.pop(0) if script else (200, {"success": True})
        return httpx.Response(status, json=body, headers=headers or {})

    return GhlApi(Upstream(httpx.MockTransport(handle)), "https://ghl.test")


async def reporter(api: GhlApi, tokens: FakeTokens | None = None
                   ) -> tuple[Settled[StatusUpdate], MemoryMessageStore]:
    store = MemoryMessageStore()
    await store.claim(OutboundSms(message_id="m1", location_id="loc1"))
    return Settled(StatusReporter(store, tokens or FakeTokens(), api, lease_seconds=60.0).process,
                   backoff=(10, 30)), store


FAILED = StatusUpdate(message_id="m1", location_id="loc1", status="failed",
                      error=StatusError(code="invalid_number", message="Cast SMS: bad number"))


async def test_status_is_written_with_the_location_token_and_spec_body() -> None:
    seen: list[httpx.Request] = []
    worker, store = await reporter(ghl(seen=seen))
    assert await worker.process(FAILED, attempt=1) == Done()
    [request] = seen
    assert request.method == "PUT"
    assert request.url.path == "/conversations/messages/m1/status"
    assert request.headers["Authorization"] == "Bearer tok1"
    assert request.headers["Version"] == "2021-04-15"
    assert json.loads(request.content) == {"status": "failed", "error": {
        "code": "invalid_number", "type": "cast_sms", "message": "Cast SMS: bad number"}}
    assert await store.status_written("m1")


async def test_a_written_status_is_not_written_again() -> None:
    seen: list[httpx.Request] = []
    worker, _ = await reporter(ghl(seen=seen))
    await worker.process(FAILED, attempt=1)
    assert await worker.process(FAILED, attempt=1) == Done()
    assert len(seen) == 1


async def test_two_copies_of_a_status_at_once_write_it_once() -> None:
    # Queued twice: a crash between queueing it and recording that it was queued.
    seen: list[httpx.Request] = []
    worker, _ = await reporter(ghl(seen=seen))
    first, second = await asyncio.gather(worker.process(FAILED, attempt=1),
                                         worker.process(FAILED, attempt=1))
    assert len(seen) == 1
    # The other copy found it written, or being written (then it looks again later).
    assert {first, second} <= {Done(), Retry(BUSY_RETRY_SECONDS, "status_being_written",
                                             counts=False)}
    assert await worker.process(FAILED, attempt=1) == Done()
    assert len(seen) == 1


async def test_a_copy_arriving_while_the_status_is_written_looks_again_later() -> None:
    seen: list[httpx.Request] = []
    asked, gate = asyncio.Event(), asyncio.Event()

    async def slow_ghl(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        asked.set()
        await gate.wait()
        return httpx.Response(200, json={"success": True})

    api = GhlApi(Upstream(httpx.MockTransport(slow_ghl)), "https://ghl.test")
    worker, _ = await reporter(api)
    writing = asyncio.create_task(worker.process(FAILED, attempt=1))
    await asked.wait()
    assert await worker.process(FAILED, attempt=1) == Retry(
        BUSY_RETRY_SECONDS, "status_being_written", counts=False)
    gate.set()
    assert await writing == Done()
    assert len(seen) == 1


async def test_a_copy_waiting_on_a_failed_writer_writes_it_after() -> None:
    seen: list[httpx.Request] = []
    worker, store = await reporter(ghl(RACE, seen=seen))
    assert isinstance(await worker.process(FAILED, attempt=1), Retry)  # released its lease
    assert await worker.process(FAILED, attempt=1) == Done()
    assert len(seen) == 2
    assert await store.status_written("m1")


async def test_the_provider_race_is_retried_never_refreshed() -> None:
    seen: list[httpx.Request] = []
    tokens = FakeTokens()
    worker, store = await reporter(ghl(RACE, seen=seen), tokens)
    outcome = await worker.process(FAILED, attempt=1)
    assert outcome == Retry(10, "ghl_provider_not_ready")
    assert tokens.refreshed == []
    assert not await store.status_written("m1")


async def test_a_401_refreshes_once_and_retries_with_the_new_token() -> None:
    seen: list[httpx.Request] = []
    tokens = FakeTokens()
    worker, _ = await reporter(ghl((401, {"message": "Invalid JWT"}), seen=seen), tokens)
    assert await worker.process(FAILED, attempt=1) == Done()
    assert tokens.refreshed == ["tok1"]
    assert [r.headers["Authorization"] for r in seen] == ["Bearer tok1", "Bearer tok2"]


async def test_a_second_401_goes_back_through_the_tiers() -> None:
    seen: list[httpx.Request] = []
    tokens = FakeTokens(["a", "b", "c"])
    worker, _ = await reporter(ghl((401, {}), (401, {}), seen=seen), tokens)
    assert isinstance(await worker.process(FAILED, attempt=1), Retry)
    assert tokens.refreshed == ["a"]


async def test_a_429_waits_for_ghls_interval_without_using_an_attempt() -> None:
    seen: list[httpx.Request] = []
    api = ghl((429, {"message": "Too many"}), seen=seen,
              headers={"X-RateLimit-Interval-Milliseconds": "10000"})
    worker, _ = await reporter(api)
    assert await worker.process(FAILED, attempt=1) == Retry(10.0, "ghl_rate_limited",
                                                            counts=False)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(PermanentError("gone", code="not_installed"), Park, id="not-installed"),
        pytest.param(RetryableError("down", code="upstream_unavailable"), Retry,
                     id="oauth-down"),
    ],
)
async def test_token_problems_park_or_retry(error: Exception, expected: type) -> None:
    worker, _ = await reporter(ghl(seen=[]), FakeTokens(error=error))
    assert isinstance(await worker.process(FAILED, attempt=1), expected)


async def test_ghl_rejecting_the_body_parks_it_with_the_reason() -> None:
    worker, _ = await reporter(ghl((422, {"message": ["status must be one of"]}), seen=[]))
    outcome = await worker.process(FAILED, attempt=1)
    assert isinstance(outcome, Park)
    assert outcome.code == "ghl_http_422"


async def test_a_status_ghl_took_is_recorded_through_a_store_outage_not_written_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("castghl.common.outages.OUTLAST_PAUSES", (0.0,))
    seen: list[httpx.Request] = []
    worker, store = await reporter(ghl(seen=seen))
    record = store.mark_status_written
    outage = [AutoReconnect("primary stepped down")] * 3

    async def flaky(message_id: str) -> None:
        if outage:
            raise outage.pop()
        await record(message_id)

    monkeypatch.setattr(store, "mark_status_written", flaky)
    assert await worker.process(FAILED, attempt=1) == Done()
    assert len(seen) == 1
    assert await store.status_written("m1")
