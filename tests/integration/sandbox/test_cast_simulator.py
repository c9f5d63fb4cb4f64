"""The Cast.ph simulator over real HTTP: it must refuse what Cast refuses, the same way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from castghl.sandbox.cast.app import CastKnobs, create_cast_app
from castghl.sandbox.cast.knobs import DEFAULT_API_KEY, DEFAULT_INBOUND_API_KEY
from castghl.sandbox.clock import SimClock
from castghl.sandbox.server import serve_in_thread

OTHER_KEY = "cast_" + "ab" * 32
NUMBER = "09171234567"
SEND = "/api/v1/sms/send"


@pytest.fixture
def client(cast_sim: Any, http: httpx.AsyncClient) -> httpx.AsyncClient:
    return http


async def send(client: httpx.AsyncClient, *, key: str | None = None,
               idempotency_key: str | None = None, path: str = SEND,
               **body: Any) -> httpx.Response:
    headers = {}
    if key is not None:
        headers["X-API-Key"] = key
    if idempotency_key is not None:
        headers["X-Idempotency-Key"] = idempotency_key
    return await client.post(path, json={"to": NUMBER, "message": "Hello", **body},
                             headers=headers)


async def sent(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (await client.get("/_sandbox/sent")).json()
    return rows


def assert_cast_error(response: httpx.Response, status: int, *codes: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error_code"] in codes
    assert isinstance(body["error"], str)
    assert body["error"]


# --- 1. send ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/sms/send", "/api/sms/send"])
async def test_valid_send_answers_a_unique_cast_message_id(client: httpx.AsyncClient,
                                                           path: str) -> None:
    first, second = await send(client, path=path), await send(client, path=path)

    assert first.status_code == 200
    assert first.json()["success"] is True
    assert first.json()["parts"] == 1
    ids = {first.json()["message_id"], second.json()["message_id"]}
    assert len(ids) == 2
    assert all(i.startswith("CAST") for i in ids)
    assert [row["message_id"] for row in await sent(client)] == [
        first.json()["message_id"], second.json()["message_id"]]


@pytest.mark.parametrize(("message", "parts"), [
    ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),
    ("{" * 80, 1), ("{" * 81, 2), ("€" + "a" * 158, 1), ("€" + "a" * 159, 2),
    ("ñ" * 160, 1),                       # in the GSM-7 alphabet: no Unicode switch
    ("á" * 70, 1), ("á" * 71, 2), ("日" * 134, 2), ("日" * 135, 3),
    ("😀" * 35, 1), ("😀" * 36, 2),       # a surrogate pair counts two UCS-2 units
])
async def test_parts_are_counted_gsm7_or_ucs2(client: httpx.AsyncClient, message: str,
                                              parts: int) -> None:
    response = await send(client, message=message)

    assert response.status_code == 200, response.text
    assert response.json()["parts"] == parts


@pytest.mark.parametrize("to", [
    "+639171234567", "639171234567", "9171234567", "0917123456", "091712345678",
    "08171234567", "0917-123-4567", "0917 123 4567", "",
])
async def test_malformed_recipient_is_a_validation_error(client: httpx.AsyncClient,
                                                         to: str) -> None:
    assert_cast_error(await send(client, to=to), 400, "VALIDATION_ERROR")


async def test_non_string_recipient_is_refused(client: httpx.AsyncClient) -> None:
    assert_cast_error(await send(client, to=9171234567), 400, "VALIDATION_ERROR")


async def test_e164_recipient_is_accepted_when_the_new_api_is_simulated(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.accept_e164 = True

    assert (await send(client, to="+639171234567")).status_code == 200
    assert_cast_error(await send(client, to="+6391712345678"), 400, "VALIDATION_ERROR")


async def test_message_length_limit_is_450_characters(client: httpx.AsyncClient) -> None:
    assert (await send(client, message="a" * 450)).json()["parts"] == 3
    assert_cast_error(await send(client, message="a" * 451), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("body", [
    {"message": ""}, {"message": "   "}, {"message": None}, {"message": 5},
])
async def test_empty_or_missing_message_is_refused(client: httpx.AsyncClient,
                                                   body: dict[str, Any]) -> None:
    assert_cast_error(await send(client, **body), 400, "VALIDATION_ERROR")


async def test_message_limit_follows_the_knob(cast_sim: Any,
                                              client: httpx.AsyncClient) -> None:
    cast_sim.knobs.max_message_chars = 10_000

    assert (await send(client, message="a" * 1000)).json()["parts"] == 7


async def test_sender_id_longer_than_11_characters_is_refused(
        client: httpx.AsyncClient) -> None:
    assert (await send(client, sender_id="A" * 11)).status_code == 200
    assert_cast_error(await send(client, sender_id="A" * 12), 400, "VALIDATION_ERROR")


async def test_only_approved_sender_ids_are_accepted_when_listed(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = ["CASTDEMO", "BRAND"]

    assert_cast_error(await send(client, sender_id="OTHER"), 400, "VALIDATION_ERROR")
    assert (await send(client, sender_id="BRAND")).status_code == 200
    assert (await send(client)).status_code == 200
    assert [row["sender_id"] for row in await sent(client)] == ["BRAND", "CASTDEMO"]


async def test_unknown_fields_are_refused(client: httpx.AsyncClient) -> None:
    response = await send(client, priority="high")

    assert_cast_error(response, 400, "VALIDATION_ERROR")
    assert "priority" in response.json()["error"]


async def test_null_sender_id_reads_as_absent(client: httpx.AsyncClient) -> None:
    assert (await send(client, sender_id=None)).status_code == 200


@pytest.mark.parametrize(("content", "content_type"), [
    (b"to=09171234567&message=hi", "application/x-www-form-urlencoded"),
    (b'{"to": "09171234567", "message": "hi"}', "text/plain"),
    (b"{not json", "application/json"),
    (b'["09171234567", "hi"]', "application/json"),
    (b"", "application/json"),
])
async def test_malformed_bodies_get_cast_400_never_fastapi_422(
        client: httpx.AsyncClient, content: bytes, content_type: str) -> None:
    response = await client.post(SEND, content=content,
                                 headers={"Content-Type": content_type})

    assert_cast_error(response, 400, "INVALID_REQUEST")
    assert "detail" not in response.json()


async def test_unknown_api_path_answers_in_cast_shape(client: httpx.AsyncClient) -> None:
    assert_cast_error(await client.get("/api/v1/sms/bulk"), 404, "NOT_FOUND")
    assert_cast_error(await client.get(SEND), 405, "INVALID_REQUEST")


async def test_missing_or_unknown_key_is_401(client: httpx.AsyncClient) -> None:
    no_key = await client.post(SEND, json={"to": NUMBER, "message": "hi"},
                               headers={"X-API-Key": ""})

    assert_cast_error(no_key, 401, "INVALID_API_KEY")
    assert_cast_error(await send(client, key=OTHER_KEY), 401, "INVALID_API_KEY")
    assert await sent(client) == []


async def test_revoked_key_is_403(cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.revoked_keys = [DEFAULT_API_KEY]

    assert_cast_error(await send(client), 403, "API_KEY_REVOKED")


async def test_accept_any_key_takes_well_formed_keys_only(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.accept_any_key = True

    assert (await send(client, key=OTHER_KEY)).status_code == 200
    assert (await send(client, key="cast_test_" + "9" * 64)).status_code == 200
    assert_cast_error(await send(client, key="cast_" + "z" * 64), 401, "INVALID_API_KEY")
    assert_cast_error(await send(client, key="cast_" + "a" * 63), 401, "INVALID_API_KEY")


async def test_send_without_enough_credits_is_402_and_not_sent(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.credits = 2

    assert_cast_error(await send(client, message="a" * 307), 402, "INSUFFICIENT_CREDITS")
    assert await sent(client) == []
    assert (await send(client, message="a" * 200)).status_code == 200
    assert cast_sim.knobs.credits == 0
    assert_cast_error(await send(client), 402, "INSUFFICIENT_CREDITS")
    assert len(await sent(client)) == 1


async def test_opted_out_recipient_is_422(cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.accept_e164 = True
    cast_sim.knobs.opted_out = [NUMBER]

    assert_cast_error(await send(client), 422, "ALREADY_UNSUBSCRIBED")
    assert_cast_error(await send(client, to="+639171234567"), 422, "ALREADY_UNSUBSCRIBED")
    assert (await send(client, to="09181234567")).status_code == 200


# --- 2. idempotency -----------------------------------------------------------------------

async def test_idempotent_retry_replays_without_sending_or_charging_again(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.credits = 10

    first = await send(client, idempotency_key="ghl-msg-1:1", message="a" * 161)
    again = await send(client, idempotency_key="ghl-msg-1:1", message="a" * 161)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["X-Idempotent-Replay"] == "true"
    assert "X-Idempotent-Replay" not in first.headers
    assert len(await sent(client)) == 1
    assert cast_sim.knobs.credits == 8


async def test_idempotency_keys_are_scoped_per_api_key(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.api_keys = [DEFAULT_API_KEY, OTHER_KEY]

    mine = await send(client, idempotency_key="k1")
    theirs = await send(client, idempotency_key="k1", key=OTHER_KEY)

    assert "X-Idempotent-Replay" not in theirs.headers
    assert mine.json()["message_id"] != theirs.json()["message_id"]
    assert len(await sent(client)) == 2


async def test_old_api_ignores_the_idempotency_header(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.idempotency = False

    await send(client, idempotency_key="k1")
    await send(client, idempotency_key="k1")
    await send(client, idempotency_key="x" * 300)  # not even checked

    assert len(await sent(client)) == 3


async def test_idempotency_key_longer_than_255_is_refused(client: httpx.AsyncClient) -> None:
    assert (await send(client, idempotency_key="x" * 255)).status_code == 200
    assert_cast_error(await send(client, idempotency_key="x" * 256), 400, "VALIDATION_ERROR")


async def test_reusing_a_key_for_another_message_is_refused(
        client: httpx.AsyncClient) -> None:
    await send(client, idempotency_key="k1", message="part one")

    assert_cast_error(await send(client, idempotency_key="k1", message="part two"),
                      400, "INVALID_REQUEST")
    assert len(await sent(client)) == 1


async def test_refusals_before_processing_are_not_kept(client: httpx.AsyncClient) -> None:
    # A validation error is not "the answer" for a key: the corrected request goes through.
    assert (await send(client, idempotency_key="k1", to="123")).status_code == 400

    assert (await send(client, idempotency_key="k1")).status_code == 200


async def test_concurrent_retry_waits_for_the_first_and_sends_once(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    # The latency makes the retries arrive while the first is processing; one that came
    # after it finished would be a replay all the same, so a slow machine changes nothing.
    cast_sim.knobs.latency_ms = {"min": 300, "max": 300}

    answers = await asyncio.gather(*(send(client, idempotency_key="k1") for _ in range(3)))

    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["message_id"] for a in answers}) == 1
    assert sorted(a.headers.get("X-Idempotent-Replay", "") for a in answers) == [
        "", "true", "true"]
    assert len(await sent(client)) == 1


async def test_kept_answers_expire(cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.idempotency_ttl_seconds = 60
    cast_sim.clock.freeze()

    first = await send(client, idempotency_key="k1")
    cast_sim.clock.advance(59)
    kept = await send(client, idempotency_key="k1")
    cast_sim.clock.advance(1)
    again = await send(client, idempotency_key="k1")

    assert kept.headers["X-Idempotent-Replay"] == "true"
    assert kept.json()["message_id"] == first.json()["message_id"]
    assert "X-Idempotent-Replay" not in again.headers
    assert len(await sent(client)) == 2


# --- 3. rate limits -----------------------------------------------------------------------
# Each test freezes the simulator's clock first: "inside one second" then holds however
# slowly the machine fires the burst, and `advance` moves the bucket and the window exactly.

async def burst(client: httpx.AsyncClient, count: int, **kwargs: Any) -> list[httpx.Response]:
    return list(await asyncio.gather(*(send(client, **kwargs) for _ in range(count))))


def statuses(responses: list[httpx.Response]) -> list[int]:
    return sorted(r.status_code for r in responses)


async def test_51st_call_inside_a_second_is_429_with_retry_after(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.clock.freeze()

    responses = await burst(client, 51)

    assert statuses(responses) == [200] * 50 + [429]
    refused = next(r for r in responses if r.status_code == 429)
    assert_cast_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert int(refused.headers["Retry-After"]) >= 1
    assert len(await sent(client)) == 50


async def test_ip_limit_is_shared_by_every_key(cast_sim: Any,
                                               client: httpx.AsyncClient) -> None:
    cast_sim.knobs.api_keys = [DEFAULT_API_KEY, OTHER_KEY]
    cast_sim.clock.freeze()

    responses = await asyncio.gather(*(send(client, key=(OTHER_KEY if i % 2 else None))
                                       for i in range(51)))

    assert statuses(list(responses)) == [200] * 50 + [429]


async def test_after_the_burst_the_rate_is_30_per_second_not_50(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.clock.freeze()
    assert statuses(await burst(client, 50)) == [200] * 50

    # The rolling second is clear again, but the bucket has refilled only 1 s x 30/s.
    cast_sim.clock.advance(1.0)

    assert statuses(await burst(client, 50)) == [200] * 30 + [429] * 20


async def test_half_a_second_later_the_window_still_refuses(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.clock.freeze()
    await burst(client, 50)

    # 15 tokens are back, but 50 calls already sit inside the last second.
    cast_sim.clock.advance(0.5)

    assert statuses(await burst(client, 5)) == [429] * 5


async def test_refused_calls_consume_no_tokens(cast_sim: Any,
                                               client: httpx.AsyncClient) -> None:
    cast_sim.knobs.rate_per_second, cast_sim.knobs.burst = 4.0, 2
    cast_sim.clock.freeze()
    assert statuses(await burst(client, 2)) == [200, 200]
    assert statuses(await burst(client, 6)) == [429] * 6

    # The window is clear and 4 tokens refilled, capped at 2: had the six refusals
    # taken tokens, the bucket would still be empty.
    cast_sim.clock.advance(1.0)

    assert statuses(await burst(client, 3)) == [200, 200, 429]


async def test_retry_after_follows_the_knob(cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.burst, cast_sim.knobs.retry_after_seconds = 1, 7
    cast_sim.clock.freeze()
    await send(client)

    assert (await send(client)).headers["Retry-After"] == "7"


async def test_per_key_limit_refuses_one_account_not_the_other(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.api_keys = [DEFAULT_API_KEY, OTHER_KEY]
    cast_sim.knobs.key_rate_per_second = 10
    cast_sim.clock.freeze()

    mine = await burst(client, 11)
    theirs = await burst(client, 5, key=OTHER_KEY)

    assert statuses(mine) == [200] * 10 + [429]
    refused = next(r for r in mine if r.status_code == 429)
    assert_cast_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert "Retry-After" in refused.headers
    assert statuses(theirs) == [200] * 5


async def test_sent_log_has_send_times_to_bin_per_second(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    at = cast_sim.clock.freeze()
    await send(client, idempotency_key="k1")
    cast_sim.clock.advance(3)
    await send(client, idempotency_key="k1")  # a replay is not a send
    await send(client, to="bad")              # nor is a refusal

    [row] = await sent(client)
    assert row["at"] == at
    assert row["api_key"].startswith("cast_test_")
    assert row["api_key"] != DEFAULT_API_KEY
    assert row["idempotency_key"] == "k1"
    assert {"message_id", "to", "message", "sender_id", "parts", "status"} <= set(row)


# --- 4. faults ----------------------------------------------------------------------------

async def test_fail_next_503_twice_then_success(cast_sim: Any,
                                                client: httpx.AsyncClient) -> None:
    cast_sim.knobs.fail_next = [{"status": 503, "count": 2}]

    answers = [await send(client, idempotency_key="k1") for _ in range(3)]

    assert_cast_error(answers[0], 503, "SERVICE_UNAVAILABLE")
    assert_cast_error(answers[1], 503, "SERVICE_UNAVAILABLE")
    assert answers[2].status_code == 200
    assert "X-Idempotent-Replay" not in answers[2].headers
    assert len(await sent(client)) == 1
    assert (await client.get("/_sandbox/config")).json()["fail_next"] == []


async def test_500_after_send_is_sent_and_the_retry_replays(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.fail_next = [{"status": 500}]

    failed = await send(client, idempotency_key="k1")
    retry = await send(client, idempotency_key="k1")

    assert_cast_error(failed, 500, "INTERNAL_ERROR")
    [row] = await sent(client)
    assert retry.status_code == 200
    assert retry.headers["X-Idempotent-Replay"] == "true"
    assert retry.json()["message_id"] == row["message_id"]


async def test_500_before_send_sends_nothing_and_the_retry_sends(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.fail_next = [{"status": 500, "after_send": False},
                                {"status": 502, "after_send": False}]

    assert_cast_error(await send(client, idempotency_key="k1"), 500, "INTERNAL_ERROR")
    assert_cast_error(await send(client, idempotency_key="k1"), 502, "PROVIDER_ERROR")
    assert await sent(client) == []
    assert (await send(client, idempotency_key="k1")).status_code == 200
    assert len(await sent(client)) == 1


async def test_injected_fault_can_carry_another_documented_code(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.fail_next = [{"status": 402, "error_code": "CREDIT_LIMIT_REACHED"}]

    assert_cast_error(await send(client), 402, "CREDIT_LIMIT_REACHED")


async def test_random_faults_are_reproducible_with_a_seed(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.seed = 7
    cast_sim.knobs.fault_rates = {"500": 0.0, "502": 0.0, "503": 0.5}

    first = [r.status_code for r in [await send(client) for _ in range(12)]]
    await client.post("/_sandbox/reset")
    second = [r.status_code for r in [await send(client) for _ in range(12)]]

    assert first == second
    assert set(first) == {200, 503}


async def test_random_500_happens_after_sending_by_default(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.fault_rates = {"500": 1.0}

    assert_cast_error(await send(client), 500, "INTERNAL_ERROR")
    assert len(await sent(client)) == 1

    cast_sim.knobs.fault_after_send = False
    assert_cast_error(await send(client), 500, "INTERNAL_ERROR")
    assert len(await sent(client)) == 1


async def test_latency_delays_the_answer(cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.latency_ms = {"min": 200, "max": 250}

    # Real time on purpose: latency stands for the network, and a slow machine only adds.
    started = time.monotonic()
    await send(client)

    assert time.monotonic() - started >= 0.2


async def test_hang_sends_then_times_out_and_the_retry_replays(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.hang_next, cast_sim.knobs.hang_seconds = 1, 1.0

    # Real time on purpose: the hang outlasts the client's timeout by construction.
    with pytest.raises(httpx.ReadTimeout):
        await client.post(SEND, json={"to": NUMBER, "message": "Hello"},
                          headers={"X-Idempotency-Key": "k1"}, timeout=0.5)
    # Retried first: on a slow machine the first send may still be processing, and the
    # retry then waits for it rather than the log being read too early.
    retry = await send(client, idempotency_key="k1")
    [row] = await sent(client)

    assert retry.status_code == 200
    assert retry.json()["message_id"] == row["message_id"]
    assert retry.headers["X-Idempotent-Replay"] == "true"
    assert len(await sent(client)) == 1


async def test_bad_knobs_are_refused_by_config(client: httpx.AsyncClient) -> None:
    for change in ({"fault_rates": {"500": 0.7, "503": 0.6}}, {"fail_next": [{"status": 418}]},
                   {"latency_ms": {"min": 5, "max": 1}}, {"no_such_knob": 1}):
        assert (await client.patch("/_sandbox/config", json=change)).status_code == 422


# --- 5. delivery status -------------------------------------------------------------------

async def status_of(client: httpx.AsyncClient, message_id: str, *, legacy: bool = False
                    ) -> dict[str, Any]:
    prefix = "/api" if legacy else "/api/v1"
    response = await client.get(f"{prefix}/sms/status/{message_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_status_is_delivered_by_default(client: httpx.AsyncClient) -> None:
    message_id = (await send(client)).json()["message_id"]

    for legacy in (False, True):
        body = await status_of(client, message_id, legacy=legacy)
        assert body["success"] is True
        assert body["message_id"] == message_id
        assert body["status"] == "delivered"
        assert body["dlr_status"] == "DELIVRD"
        assert body["sent_at"].endswith("Z")
        assert body["delivered_at"].endswith("Z")


async def test_status_is_sent_until_the_receipt_arrives(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.dlr_delay_seconds = 30
    cast_sim.knobs.carrier_outcome = "undelivered"
    cast_sim.clock.freeze()
    message_id = (await send(client)).json()["message_id"]

    early = await status_of(client, message_id)
    cast_sim.clock.advance(29)
    still = await status_of(client, message_id)
    cast_sim.clock.advance(1)
    late = await status_of(client, message_id)

    assert early["status"] == still["status"] == "sent"
    assert "dlr_status" not in still
    assert late["status"] == "undelivered"
    assert late["dlr_status"] == "UNDELIV"
    assert late["error_message"]
    assert "delivered_at" not in late


async def test_outcome_override_applies_to_one_message(client: httpx.AsyncClient) -> None:
    one, other = (await send(client)).json()["message_id"], (await send(client)).json()[
        "message_id"]

    put = await client.put(f"/_sandbox/messages/{one}/outcome",
                           json={"status": "undelivered", "dlr_status": "REJECTD"})

    assert put.status_code == 200
    assert (await status_of(client, one))["dlr_status"] == "REJECTD"
    assert (await status_of(client, other))["status"] == "delivered"
    assert (await client.put("/_sandbox/messages/CASTNOPE/outcome",
                             json={"status": "failed"})).status_code == 404


async def test_status_of_unknown_or_anothers_message_is_404(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.api_keys = [DEFAULT_API_KEY, OTHER_KEY]
    message_id = (await send(client)).json()["message_id"]

    assert_cast_error(await client.get("/api/v1/sms/status/CASTNOPE"), 404, "NOT_FOUND")
    theirs = await client.get(f"/api/v1/sms/status/{message_id}",
                              headers={"X-API-Key": OTHER_KEY})
    assert_cast_error(theirs, 404, "NOT_FOUND")
    no_key = await client.get(f"/api/v1/sms/status/{message_id}", headers={"X-API-Key": ""})
    assert_cast_error(no_key, 401, "INVALID_API_KEY")


# --- 6. account ---------------------------------------------------------------------------

async def test_balance_and_sender_ids(cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.credits = 5
    cast_sim.knobs.sender_ids = ["CASTDEMO"]
    await send(client, message="a" * 161)

    balance = (await client.get("/api/v1/account/balance")).json()
    senders = (await client.get("/api/v1/account/sender-ids")).json()

    # The default key is a `cast_test_` one: Cast marks its answers.
    assert balance == {"success": True, "credits": 3, "currency": "PHP", "sandbox": True}
    assert senders == {"success": True, "sandbox": True, "sender_ids": [
        {"sender_id": "CASTDEMO", "label": "CASTDEMO", "channel": "sms"}]}
    assert_cast_error(await client.get("/api/v1/account/balance", headers={"X-API-Key": ""}),
                      401, "INVALID_API_KEY")


# --- 7. inbound ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for the bridge's inbound endpoint that records what it was sent."""
    got: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/inbound")
    async def inbound(request: Request) -> dict[str, Any]:
        got.append({"key": request.headers.get("x-api-key"), "json": await request.json()})
        return {"ok": True, "n": len(got)}

    with serve_in_thread(app) as url:
        yield url + "/inbound", got


@pytest.fixture
def receiver(served_receiver: tuple[str, list[dict[str, Any]]]
             ) -> tuple[str, list[dict[str, Any]]]:
    served_receiver[1].clear()
    return served_receiver


async def test_inbound_posts_the_reply_to_the_bridge(
        client: httpx.AsyncClient, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, got = receiver

    answer = (await client.post("/_sandbox/inbound", json={
        "url": url, "from": NUMBER, "to": "CASTDEMO", "message": "YES"})).json()

    assert answer["status_code"] == 200
    assert answer["body"] == {"ok": True, "n": 1}
    [delivered] = got
    assert delivered["key"] == DEFAULT_INBOUND_API_KEY
    assert delivered["json"] == answer["sent"]
    assert answer["sent"]["message_id"].startswith("CASTIN")
    assert answer["sent"]["received_at"].endswith("Z")
    assert {k: answer["sent"][k] for k in ("from", "to", "message")} == {
        "from": NUMBER, "to": "CASTDEMO", "message": "YES"}


async def test_inbound_retries_repost_the_same_payload(
        client: httpx.AsyncClient, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, got = receiver
    fixed = {"message_id": "CASTIN42", "received_at": "2026-01-02T03:04:05Z"}

    answer = (await client.post("/_sandbox/inbound", json={
        "url": url, "from": NUMBER, "to": "CASTDEMO", "message": "STOP", "times": 3,
        "api_key": "other-secret", **fixed})).json()

    assert len(got) == 3
    assert len(answer["attempts"]) == 3
    assert all(g["json"] == got[0]["json"] for g in got)
    assert {k: got[0]["json"][k] for k in fixed} == fixed
    assert {g["key"] for g in got} == {"other-secret"}
    assert answer["body"] == {"ok": True, "n": 3}


async def test_inbound_to_an_unreachable_url_reports_the_error(
        client: httpx.AsyncClient) -> None:
    answer = (await client.post("/_sandbox/inbound", json={
        "url": "http://127.0.0.1:9/inbound", "from": NUMBER, "to": "X", "message": "hi"}))

    assert answer.status_code == 200
    assert answer.json()["status_code"] is None
    assert answer.json()["error"]


async def test_bad_inbound_trigger_is_a_400_not_a_422(client: httpx.AsyncClient) -> None:
    assert_cast_error(await client.post("/_sandbox/inbound", json={"url": "x"}),
                      400, "VALIDATION_ERROR")


# --- 8. reset and state -------------------------------------------------------------------

async def test_reset_forgets_traffic_and_keeps_knobs(cast_sim: Any,
                                                     client: httpx.AsyncClient) -> None:
    cast_sim.knobs.credits = 100
    await burst(client, 49, idempotency_key="k1")
    cast_sim.knobs.fail_next = [{"status": 503, "count": 5}]
    cast_sim.knobs.hang_next = 3

    assert (await client.post("/_sandbox/reset")).status_code == 200

    state = (await client.get("/_sandbox/state")).json()
    assert state["ip_buckets"] == {}
    assert state["idempotency"] == {"stored": 0, "in_flight": 0}
    assert await sent(client) == []
    assert cast_sim.knobs.fail_next == []
    assert cast_sim.knobs.hang_next == 0
    assert cast_sim.knobs.credits == 99
    again = await send(client, idempotency_key="k1")
    assert again.status_code == 200
    assert "X-Idempotent-Replay" not in again.headers
    assert statuses(await burst(client, 49)) == [200] * 49  # full bucket again


async def test_state_shows_bucket_levels(cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.key_rate_per_second = 10
    cast_sim.clock.freeze()
    await burst(client, 5)

    state = (await client.get("/_sandbox/state")).json()

    assert state["ip_buckets"]["127.0.0.1"] == {"tokens": 45, "last_second": 5}
    [key_bucket] = state["key_buckets"].values()
    assert key_bucket == {"tokens": 5, "last_second": 5}


# --- 9. isolation -------------------------------------------------------------------------

async def test_two_simulators_share_nothing(cast_sim: Any, client: httpx.AsyncClient) -> None:
    other_clock = SimClock()
    other_clock.freeze()  # its 51 calls land inside one of its seconds
    with serve_in_thread(create_cast_app(CastKnobs(credits=1), other_clock)) as other_url:
        async with httpx.AsyncClient(base_url=other_url,
                                     headers={"X-API-Key": DEFAULT_API_KEY}) as other:
            assert statuses(await burst(other, 51)) == [200] + [402] * 49 + [429]
            assert len(await sent(other)) == 1

    assert await sent(client) == []
    assert not cast_sim.clock.frozen
    assert (await send(client, idempotency_key="k1")).status_code == 200


# --- 10. the clock ------------------------------------------------------------------------

async def test_clock_reads_real_time_until_a_test_steers_it(client: httpx.AsyncClient) -> None:
    before = time.time()
    reading = (await client.get("/_sandbox/clock")).json()

    assert reading["frozen"] is False
    # Monotonic time anchored on the wall clock at start: close to it, not equal.
    assert abs(reading["now"] - before) < 5


async def test_clock_route_freezes_advances_and_resumes(client: httpx.AsyncClient) -> None:
    frozen = (await client.post("/_sandbox/clock", json={"freeze": True})).json()
    still = (await client.get("/_sandbox/clock")).json()
    moved = (await client.post("/_sandbox/clock", json={"advance": 2.5})).json()
    both = (await client.post("/_sandbox/clock",
                              json={"freeze": True, "advance": 3600})).json()
    resumed = (await client.post("/_sandbox/clock", json={"freeze": False})).json()

    assert frozen["frozen"] is True
    assert still == frozen
    assert moved == {"now": frozen["now"] + 2.5, "frozen": True}
    assert both == {"now": frozen["now"] + 3602.5, "frozen": True}
    assert resumed["frozen"] is False
    assert resumed["now"] < both["now"]  # back on real time: the advance is dropped


async def test_clock_route_moves_the_rate_limit_for_a_separate_process(
        client: httpx.AsyncClient) -> None:
    await client.post("/_sandbox/clock", json={"freeze": True})
    assert statuses(await burst(client, 51)) == [200] * 50 + [429]

    await client.post("/_sandbox/clock", json={"advance": 1})

    assert statuses(await burst(client, 31)) == [200] * 30 + [429]


async def test_a_receipt_delay_passes_when_the_clock_is_advanced_over_http(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.dlr_delay_seconds = 3600
    await client.post("/_sandbox/clock", json={"freeze": True})
    message_id = (await send(client)).json()["message_id"]

    await client.post("/_sandbox/clock", json={"advance": 3600})

    assert (await status_of(client, message_id))["status"] == "delivered"


@pytest.mark.parametrize("body", [
    {"advance": -1}, {"advance": "soon"}, {"advance": None}, {"advance": 1e300},
    {"freeze": "yes"}, {"freeze": 1}, {"rewind": 5}, [1], "now",
])
async def test_bad_clock_changes_are_refused_and_change_nothing(
        cast_sim: Any, client: httpx.AsyncClient, body: Any) -> None:
    at = cast_sim.clock.freeze()

    answer = await client.post("/_sandbox/clock", json=body)

    assert answer.status_code in (400, 422), answer.text
    assert cast_sim.clock() == at


@pytest.mark.parametrize("raw", [b'{"advance": NaN}', b'{"advance": Infinity}', b"{not json"])
async def test_clock_changes_that_are_not_numbers_or_json_are_refused(
        client: httpx.AsyncClient, raw: bytes) -> None:
    answer = await client.post("/_sandbox/clock", content=raw,
                               headers={"Content-Type": "application/json"})

    assert answer.status_code in (400, 422), answer.text


async def test_empty_clock_post_only_reads(cast_sim: Any, client: httpx.AsyncClient) -> None:
    at = cast_sim.clock.freeze()

    for answer in (await client.post("/_sandbox/clock"),
                   await client.post("/_sandbox/clock", json={})):
        assert answer.json() == {"now": at, "frozen": True}


async def test_reset_puts_the_clock_back_on_real_time(cast_sim: Any,
                                                      client: httpx.AsyncClient) -> None:
    cast_sim.clock.freeze()
    cast_sim.clock.advance(86_400)

    assert (await client.post("/_sandbox/reset")).status_code == 200

    assert not cast_sim.clock.frozen
    assert abs(cast_sim.clock() - time.time()) < 5


async def test_calls_are_recorded_at_simulator_time(cast_sim: Any,
                                                    client: httpx.AsyncClient) -> None:
    at = cast_sim.clock.freeze()
    cast_sim.clock.advance(60)
    await send(client)

    [call] = (await client.get("/_sandbox/calls")).json()
    assert call["at"] == at + 60
