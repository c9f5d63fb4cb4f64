"""Cast accounts over real HTTP: one per API key — balance, profile, sender IDs and their
channels (SMS or SIM), opt-outs — and the `sandbox: true` mark of `cast_test_` keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from castghl.sandbox.cast.knobs import DEFAULT_API_KEY

LIVE_KEY = "cast_" + "ab" * 32          # a second account, live: answers are not marked
THIRD_KEY = "cast_" + "cd" * 32
NUMBER = "09171234567"
SIM_SENDER = {"sender_id": "09998887777", "label": "Front desk SIM", "channel": "sim"}


@pytest.fixture(scope="module")
async def http(_cast_server: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=_cast_server.url,
                                 headers={"X-API-Key": DEFAULT_API_KEY}) as client:
        yield client


@pytest.fixture
def client(cast_sim: Any, http: httpx.AsyncClient) -> httpx.AsyncClient:
    cast_sim.knobs.api_keys = [DEFAULT_API_KEY, LIVE_KEY]
    return http


async def post_send(client: httpx.AsyncClient, channel: str = "sms", *,
                    key: str | None = None, idempotency_key: str | None = None,
                    prefix: str = "/api/v1", **body: Any) -> httpx.Response:
    headers = {"X-API-Key": key} if key is not None else {}
    if idempotency_key is not None:
        headers["X-Idempotency-Key"] = idempotency_key
    return await client.post(f"{prefix}/{channel}/send",
                             json={"to": NUMBER, "message": "Hello", **body}, headers=headers)


async def get(client: httpx.AsyncClient, path: str, key: str | None = None,
              **params: Any) -> httpx.Response:
    headers = {"X-API-Key": key} if key is not None else {}
    return await client.get(f"/api/v1{path}", headers=headers, params=params)


def assert_cast_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error_code"] == code
    assert body["error"]


async def credits_of(client: httpx.AsyncClient, key: str | None = None) -> int:
    answer = await get(client, "/account/balance", key)
    assert answer.status_code == 200, answer.text
    credits: int = answer.json()["credits"]
    return credits


# --- balance per key --------------------------------------------------------------------------

async def test_each_listed_key_has_its_own_balance_and_the_rest_share_credits(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.accept_any_key = True
    cast_sim.knobs.credits = 10
    cast_sim.knobs.credits_by_key = {LIVE_KEY: 3}

    assert (await post_send(client, key=LIVE_KEY, message="a" * 161)).status_code == 200
    assert (await post_send(client)).status_code == 200
    assert (await post_send(client, key=THIRD_KEY)).status_code == 200

    assert await credits_of(client, LIVE_KEY) == 1
    assert await credits_of(client) == await credits_of(client, THIRD_KEY) == 8
    assert cast_sim.knobs.credits_by_key == {LIVE_KEY: 1}
    assert_cast_error(await post_send(client, key=LIVE_KEY, message="a" * 161),
                      402, "INSUFFICIENT_CREDITS")
    assert (await post_send(client)).status_code == 200  # the default account still pays


async def test_a_key_listed_as_none_is_unlimited(cast_sim: Any,
                                                client: httpx.AsyncClient) -> None:
    cast_sim.knobs.credits = 0
    cast_sim.knobs.credits_by_key = {LIVE_KEY: None}

    assert (await post_send(client, key=LIVE_KEY)).status_code == 200
    assert await credits_of(client, LIVE_KEY) == 1_000_000
    assert_cast_error(await post_send(client), 402, "INSUFFICIENT_CREDITS")


async def test_sandbox_keys_can_be_made_free_as_on_the_real_api(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.credits = 1
    cast_sim.knobs.credits_by_key = {LIVE_KEY: 1}
    cast_sim.knobs.charge_sandbox_keys = False

    for _ in range(3):
        assert (await post_send(client, message="a" * 200)).status_code == 200
    assert (await post_send(client, key=LIVE_KEY)).status_code == 200

    assert await credits_of(client) == 1
    assert await credits_of(client, LIVE_KEY) == 0
    assert_cast_error(await post_send(client, key=LIVE_KEY), 402, "INSUFFICIENT_CREDITS")


# --- profile and the sandbox mark -------------------------------------------------------------

async def test_profile_names_the_account_of_each_key(cast_sim: Any,
                                                     client: httpx.AsyncClient) -> None:
    cast_sim.knobs.profile_by_key = {LIVE_KEY: {"name": "Clinic Cebu", "email": None}}

    default = await get(client, "/account/profile")
    own = await get(client, "/account/profile", LIVE_KEY)
    legacy = await client.get("/api/account/profile")

    assert default.json() == {"success": True, "name": "Cast Sandbox",
                              "email": "sandbox@example.com", "sandbox": True}
    assert own.json() == {"success": True, "name": "Clinic Cebu", "email": None}
    assert legacy.json() == default.json()
    assert_cast_error(await get(client, "/account/profile", ""), 401, "INVALID_API_KEY")


async def test_every_answer_to_a_test_key_is_marked_sandbox_and_no_live_one_is(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.credits = 1
    cast_sim.knobs.credits_by_key = {LIVE_KEY: 1}
    answers = {
        "sent": await post_send(client, idempotency_key="k1"),
        "replayed": await post_send(client, idempotency_key="k1"),
        "refused": await post_send(client, to="123"),
        "no credit": await post_send(client),
        "not found": await get(client, "/sms/status/CASTNOPE"),
    }
    cast_sim.knobs.fail_next = [{"status": 503}]
    answers["injected"] = await post_send(client)
    live = [await post_send(client, key=LIVE_KEY), await post_send(client, key=LIVE_KEY),
            await get(client, "/account/balance", LIVE_KEY)]

    assert [a.status_code for a in answers.values()] == [200, 200, 400, 402, 404, 503]
    for what, answer in answers.items():
        assert answer.json()["sandbox"] is True, what
        assert int(answer.headers["content-length"]) == len(answer.content)
    assert answers["replayed"].headers["X-Idempotent-Replay"] == "true"
    assert [a.status_code for a in live] == [200, 402, 200]
    assert all("sandbox" not in a.json() for a in live)


async def test_answers_before_the_key_is_known_are_not_marked(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.burst = 1
    cast_sim.clock.freeze()
    await get(client, "/account/balance")

    limited = await get(client, "/account/balance")
    cast_sim.clock.advance(1)
    unknown = await get(client, "/account/balance", "cast_test_" + "9" * 64)

    assert_cast_error(limited, 429, "RATE_LIMIT_EXCEEDED")
    assert_cast_error(unknown, 401, "INVALID_API_KEY")
    assert "sandbox" not in limited.json()
    assert "sandbox" not in unknown.json()


# --- sender IDs and channels ------------------------------------------------------------------

async def test_sender_ids_are_listed_per_key_with_label_and_channel(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = ["CASTDEMO", SIM_SENDER]
    cast_sim.knobs.sender_ids_by_key = {LIVE_KEY: [{"sender_id": "CLINIC", "label": "Clinic"}]}

    mine = (await get(client, "/account/sender-ids")).json()
    theirs = (await get(client, "/account/sender-ids", LIVE_KEY)).json()

    assert mine["sender_ids"] == [
        {"sender_id": "CASTDEMO", "label": "CASTDEMO", "channel": "sms"},
        {"sender_id": "09998887777", "label": "Front desk SIM", "channel": "sim"}]
    assert theirs == {"success": True, "sender_ids": [
        {"sender_id": "CLINIC", "label": "Clinic", "channel": "sms"}]}


async def test_sim_send_goes_out_on_the_sim_channel_with_its_own_receipts(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.credits = 5
    cast_sim.knobs.sender_ids = ["CASTDEMO", SIM_SENDER]
    cast_sim.knobs.dlr_delay_seconds = 10
    cast_sim.clock.freeze()

    sent = await post_send(client, "sim", sender_id="09998887777", message="a" * 161)
    legacy = await post_send(client, "sim", prefix="/api")
    message_id = sent.json()["message_id"]
    before = (await get(client, f"/sim/status/{message_id}")).json()
    cast_sim.clock.advance(10)
    after = (await client.get(f"/api/sim/status/{message_id}")).json()
    on_sms_path = await get(client, f"/sms/status/{message_id}")
    rows = (await client.get("/_sandbox/sent")).json()

    assert sent.status_code == legacy.status_code == 200
    assert sent.json()["parts"] == 2
    assert before["status"] == "sent"
    assert (after["status"], after["dlr_status"]) == ("delivered", "DELIVRD")
    assert_cast_error(on_sms_path, 404, "NOT_FOUND")
    assert [(r["channel"], r["sender_id"]) for r in rows] == [
        ("sim", "09998887777"), ("sim", "09998887777")]  # absent: the first SIM sender ID
    assert await credits_of(client) == 2


async def test_sms_sent_messages_are_not_found_on_the_sim_status_path(
        client: httpx.AsyncClient) -> None:
    message_id = (await post_send(client)).json()["message_id"]

    assert_cast_error(await get(client, f"/sim/status/{message_id}"), 404, "NOT_FOUND")


async def test_a_sender_id_on_the_wrong_channel_is_403_channel_not_allowed(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = ["CASTDEMO", SIM_SENDER]

    sim_on_sms = await post_send(client, "sms", sender_id="09998887777")
    sms_on_sim = await post_send(client, "sim", sender_id="CASTDEMO")
    unknown_on_sim = await post_send(client, "sim", sender_id="NOPE")

    assert_cast_error(sim_on_sms, 403, "CHANNEL_NOT_ALLOWED")
    assert_cast_error(sms_on_sim, 403, "CHANNEL_NOT_ALLOWED")
    assert_cast_error(unknown_on_sim, 400, "VALIDATION_ERROR")
    assert (await client.get("/_sandbox/sent")).json() == []


async def test_an_absent_sender_id_defaults_to_the_first_of_the_channel(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = [SIM_SENDER, "CASTDEMO", "OTHER"]

    assert (await post_send(client, "sms")).status_code == 200
    assert (await post_send(client, "sim")).status_code == 200

    rows = (await client.get("/_sandbox/sent")).json()
    assert [(r["channel"], r["sender_id"]) for r in rows] == [
        ("sms", "CASTDEMO"), ("sim", "09998887777")]


async def test_an_account_without_sim_sender_ids_cannot_use_the_sim_channel(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    # No sender IDs listed: any sender ID is approved on SMS, and there is no SIM.
    assert (await post_send(client, "sms", sender_id="ANYTHING")).status_code == 200
    assert_cast_error(await post_send(client, "sim"), 403, "CHANNEL_NOT_ALLOWED")
    assert_cast_error(await post_send(client, "sim", sender_id="ANYTHING"),
                      403, "CHANNEL_NOT_ALLOWED")

    cast_sim.knobs.sender_ids = ["CASTDEMO"]
    assert_cast_error(await post_send(client, "sim"), 403, "CHANNEL_NOT_ALLOWED")


async def test_sender_ids_are_checked_against_the_callers_account(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = ["CASTDEMO"]
    cast_sim.knobs.sender_ids_by_key = {LIVE_KEY: [SIM_SENDER]}

    assert_cast_error(await post_send(client, "sim", sender_id="09998887777"),
                      400, "VALIDATION_ERROR")
    assert_cast_error(await post_send(client, "sms", key=LIVE_KEY, sender_id="CASTDEMO"),
                      400, "VALIDATION_ERROR")
    assert (await post_send(client, "sim", key=LIVE_KEY)).status_code == 200


async def test_sender_ids_up_to_20_characters_on_the_newer_api(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    long_sim = {"sender_id": "S" * 20, "channel": "sim"}
    cast_sim.knobs.sender_ids = ["A" * 20, long_sim]

    assert_cast_error(await post_send(client, sender_id="A" * 20), 400, "VALIDATION_ERROR")

    cast_sim.knobs.max_sender_id_chars = 20
    assert (await post_send(client, sender_id="A" * 20)).status_code == 200
    assert (await post_send(client, "sim", sender_id="S" * 20)).status_code == 200
    assert_cast_error(await post_send(client, sender_id="A" * 21), 400, "VALIDATION_ERROR")
    assert_cast_error(await post_send(client, "sim", sender_id="S" * 21),
                      400, "VALIDATION_ERROR")


async def test_sim_send_validates_its_body_as_sms_send_does(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = [SIM_SENDER]

    assert_cast_error(await post_send(client, "sim", to="+639171234567"),
                      400, "VALIDATION_ERROR")
    assert_cast_error(await post_send(client, "sim", priority="high"), 400, "VALIDATION_ERROR")
    assert_cast_error(await client.post("/api/v1/sim/send", content=b"{not json",
                                        headers={"Content-Type": "application/json"}),
                      400, "INVALID_REQUEST")
    assert_cast_error(await post_send(client, "sim", key=""), 401, "INVALID_API_KEY")


async def test_an_idempotency_key_is_one_send_across_both_channels(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = ["CASTDEMO", SIM_SENDER]

    first = await post_send(client, "sim", idempotency_key="ghl-1:1")
    replay = await post_send(client, "sim", idempotency_key="ghl-1:1")
    other_channel = await post_send(client, "sms", idempotency_key="ghl-1:1")

    assert replay.headers["X-Idempotent-Replay"] == "true"
    assert replay.json()["message_id"] == first.json()["message_id"]
    assert_cast_error(other_channel, 400, "INVALID_REQUEST")
    assert len((await client.get("/_sandbox/sent")).json()) == 1


async def test_faults_and_opt_outs_apply_to_sim_sends_too(cast_sim: Any,
                                                          client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = [SIM_SENDER]
    cast_sim.knobs.opted_out = [NUMBER]
    cast_sim.knobs.fail_next = [{"status": 502, "after_send": False}]

    assert_cast_error(await post_send(client, "sim", to="09181234567"), 502, "PROVIDER_ERROR")
    assert_cast_error(await post_send(client, "sim"), 422, "ALREADY_UNSUBSCRIBED")


# --- opt-outs ---------------------------------------------------------------------------------

async def test_unsubscribed_lists_the_accounts_opt_outs_in_cast_number_form(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.opted_out = [
        "+639171234567",
        {"number": "09181234567", "sender_id": "CASTDEMO",
         "unsubscribed_at": "2026-11-02T03:04:05+08:00"},
    ]
    cast_sim.knobs.opted_out_by_key = {LIVE_KEY: ["09190000000"]}

    mine = (await get(client, "/account/unsubscribed")).json()
    theirs = (await get(client, "/account/unsubscribed", LIVE_KEY)).json()

    assert mine == {"success": True, "sandbox": True, "total": 2, "unsubscribed": [
        {"number": "09171234567", "sender_id": None, "unsubscribed_at": None},
        {"number": "09181234567", "sender_id": "CASTDEMO",
         "unsubscribed_at": "2026-11-01T19:04:05Z"}]}
    assert theirs == {"success": True, "total": 1, "unsubscribed": [
        {"number": "09190000000", "sender_id": None, "unsubscribed_at": None}]}


async def test_unsubscribed_pages_with_limit_and_offset(cast_sim: Any,
                                                        client: httpx.AsyncClient) -> None:
    numbers = [f"0917000000{n}" for n in range(7)]
    cast_sim.knobs.opted_out = numbers

    page = (await get(client, "/account/unsubscribed", limit=3, offset=3)).json()
    tail = (await get(client, "/account/unsubscribed", limit=500, offset=6)).json()

    assert page["total"] == tail["total"] == 7
    assert [row["number"] for row in page["unsubscribed"]] == numbers[3:6]
    assert [row["number"] for row in tail["unsubscribed"]] == numbers[6:]
    for query in ({"limit": 0}, {"limit": 501}, {"offset": "x"}, {"search": "0917"}):
        assert_cast_error(await get(client, "/account/unsubscribed", **query),
                          400, "VALIDATION_ERROR")


async def test_an_opt_out_from_one_sender_id_leaves_the_others(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = ["CASTDEMO", "PROMO"]
    cast_sim.knobs.opted_out = [{"number": NUMBER, "sender_id": "PROMO"}]
    cast_sim.knobs.opted_out_by_key = {LIVE_KEY: []}

    assert_cast_error(await post_send(client, sender_id="PROMO"), 422, "ALREADY_UNSUBSCRIBED")
    assert (await post_send(client, sender_id="CASTDEMO")).status_code == 200
    assert (await post_send(client, key=LIVE_KEY, sender_id="PROMO")).status_code == 200


# --- limits, recording, reset, config ---------------------------------------------------------

READS = ["/sms/logs", "/account/profile", "/account/unsubscribed", "/account/balance",
         "/account/sender-ids", "/sim/status/CASTNOPE"]


async def test_every_new_endpoint_counts_against_the_per_ip_limit(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = [SIM_SENDER]
    cast_sim.clock.freeze()
    calls = [get(client, READS[n % len(READS)]) for n in range(48)]
    calls += [post_send(client, "sim"), post_send(client, "sim")]
    answers = await asyncio.gather(*calls)
    assert 429 not in {a.status_code for a in answers}

    for path in READS:
        assert_cast_error(await get(client, path), 429, "RATE_LIMIT_EXCEEDED")
    assert_cast_error(await post_send(client, "sim"), 429, "RATE_LIMIT_EXCEEDED")

    cast_sim.clock.advance(1)
    assert (await get(client, "/sms/logs")).status_code == 200


async def test_sim_sends_count_against_the_per_key_message_limit(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = ["CASTDEMO", SIM_SENDER]
    cast_sim.knobs.key_rate_per_second = 2
    cast_sim.clock.freeze()

    sends = [await post_send(client, "sms"), await post_send(client, "sim"),
             await post_send(client, "sim")]
    theirs = await post_send(client, "sms", key=LIVE_KEY)

    assert [a.status_code for a in sends] == [200, 200, 429]
    assert "Retry-After" in sends[2].headers
    assert theirs.status_code == 200


async def test_new_endpoints_are_recorded_in_calls(cast_sim: Any,
                                                  client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = [SIM_SENDER]
    await post_send(client, "sim")
    for path in READS:
        paged = path in ("/sms/logs", "/account/unsubscribed")
        await client.get(f"/api/v1{path}", params={"limit": 5} if paged else None)

    calls = (await client.get("/_sandbox/calls")).json()

    assert [(c["method"], c["path"], c["status"]) for c in calls] == [
        ("POST", "/api/v1/sim/send", 200),
        *[("GET", f"/api/v1{path}", 404 if "CASTNOPE" in path else 200) for path in READS]]
    assert calls[0]["body"] == {"to": NUMBER, "message": "Hello"}
    assert calls[1]["query"] == {"limit": "5"}
    assert all(c["response"]["sandbox"] is True for c in calls)


async def test_reset_forgets_sim_traffic_and_keeps_account_knobs(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = [SIM_SENDER]
    cast_sim.knobs.credits_by_key = {DEFAULT_API_KEY: 5}
    message_id = (await post_send(client, "sim", idempotency_key="k1")).json()["message_id"]

    assert (await client.post("/_sandbox/reset")).status_code == 200

    assert_cast_error(await get(client, f"/sim/status/{message_id}"), 404, "NOT_FOUND")
    assert (await get(client, "/sms/logs")).json()["total"] == 0
    assert cast_sim.knobs.credits_by_key == {DEFAULT_API_KEY: 4}
    again = await post_send(client, "sim", idempotency_key="k1")
    assert "X-Idempotent-Replay" not in again.headers


async def test_account_knobs_are_steered_over_http(client: httpx.AsyncClient) -> None:
    changes = {
        "credits_by_key": {LIVE_KEY: 7},
        "sender_ids_by_key": {LIVE_KEY: [SIM_SENDER]},
        "profile_by_key": {LIVE_KEY: {"name": "Clinic Davao"}},
        "opted_out_by_key": {LIVE_KEY: ["09171112222"]},
        "charge_sandbox_keys": False,
        "max_sender_id_chars": 20,
    }
    patched = await client.patch("/_sandbox/config", json=changes)
    assert patched.status_code == 200, patched.text

    assert await credits_of(client, LIVE_KEY) == 7
    assert (await get(client, "/account/profile", LIVE_KEY)).json()["name"] == "Clinic Davao"
    assert (await post_send(client, "sim", key=LIVE_KEY)).status_code == 200
    assert (await get(client, "/account/unsubscribed", LIVE_KEY)).json()["total"] == 1

    for bad in ({"credits_by_key": {LIVE_KEY: -1}},
                {"sender_ids": [{"sender_id": "X", "channel": "mms"}]},
                {"sender_ids": [{"sender_id": ""}]},
                {"profile": {"email": "a@example.com"}},
                {"opted_out": [{"number": NUMBER, "when": "now"}]}):
        assert (await client.patch("/_sandbox/config", json=bad)).status_code == 422, bad
