"""Cast's delivery truth over real HTTP: receipts scripted before the send, their statuses
as reference/cast.md defines them, refunds of failed submissions, and `/sms/logs`.

Every test that waits for a receipt freezes the simulator's clock and advances it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from castghl.sandbox.cast.knobs import DEFAULT_API_KEY

OTHER_KEY = "cast_" + "ab" * 32
NUMBER = "09171234567"
REJECTED = "09170000001"


@pytest.fixture
def client(cast_sim: Any, http: httpx.AsyncClient) -> httpx.AsyncClient:
    return http


async def send(client: httpx.AsyncClient, *, to: str = NUMBER, message: str = "Hello",
               key: str | None = None, channel: str = "sms", **body: Any) -> str:
    headers = {"X-API-Key": key} if key is not None else {}
    answer = await client.post(f"/api/v1/{channel}/send",
                               json={"to": to, "message": message, **body}, headers=headers)
    assert answer.status_code == 200, answer.text
    message_id: str = answer.json()["message_id"]
    return message_id


async def status_of(client: httpx.AsyncClient, message_id: str, channel: str = "sms"
                    ) -> dict[str, Any]:
    answer = await client.get(f"/api/v1/{channel}/status/{message_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def logs(client: httpx.AsyncClient, key: str | None = None, **params: Any
               ) -> dict[str, Any]:
    headers = {"X-API-Key": key} if key is not None else {}
    answer = await client.get("/api/v1/sms/logs", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def balance(client: httpx.AsyncClient) -> int:
    credits: int = (await client.get("/api/v1/account/balance")).json()["credits"]
    return credits


def assert_cast_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["success"] is False
    assert response.json()["error_code"] == code


# --- receipts scripted before the send -------------------------------------------------------

async def test_a_rule_rejects_one_recipient_and_leaves_the_others_delivered(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.accept_e164 = True
    cast_sim.knobs.carrier_rules = [
        {"to": "+639170000001", "status": "undelivered", "dlr_status": "REJECTD"}]

    rejected = await send(client, to=REJECTED)
    also_rejected = await send(client, to="+639170000001")
    fine = await send(client)

    for message_id in (rejected, also_rejected):
        body = await status_of(client, message_id)
        assert body["status"] == "undelivered"
        assert body["dlr_status"] == "REJECTD"
        assert body["error_message"]
        assert "delivered_at" not in body
    assert (await status_of(client, fine))["dlr_status"] == "DELIVRD"


async def test_a_rule_arrives_after_its_own_delay(cast_sim: Any,
                                                  client: httpx.AsyncClient) -> None:
    cast_sim.knobs.dlr_delay_seconds = 5
    cast_sim.knobs.carrier_rules = [{"contains": "[expire]", "status": "undelivered",
                                     "dlr_status": "EXPIRED", "delay_seconds": 120}]
    cast_sim.clock.freeze()
    marked = await send(client, message="Promo [expire] today")
    plain = await send(client, message="Promo today")

    cast_sim.clock.advance(5)
    early = await status_of(client, marked)
    plain_now = await status_of(client, plain)
    cast_sim.clock.advance(115)
    late = await status_of(client, marked)

    assert early == {"success": True, "message_id": marked, "status": "sent",
                     "sent_at": early["sent_at"], "sandbox": True}
    assert plain_now["status"] == "delivered"
    assert (late["status"], late["dlr_status"]) == ("undelivered", "EXPIRED")


async def test_first_matching_rule_wins_and_every_matcher_must_hold(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.carrier_rules = [
        {"sender_id": "TRIAL", "contains": "otp", "status": "pending"},
        {"sender_id": "TRIAL", "status": "undelivered", "dlr_status": "REJECTD",
         "error_message": "Trial sender ID blocked by the carrier"},
    ]

    pending = await send(client, sender_id="TRIAL", message="your otp is 1234")
    blocked = await send(client, sender_id="TRIAL", message="hello")
    other = await send(client, sender_id="BRAND", message="your otp is 1234")

    assert {k: (await status_of(client, pending)).get(k) for k in ("status", "dlr_status")} \
        == {"status": "pending", "dlr_status": "ACCEPTD"}
    body = await status_of(client, blocked)
    assert body["error_message"] == "Trial sender ID blocked by the carrier"
    assert (await status_of(client, other))["status"] == "delivered"


async def test_a_rule_changed_later_does_not_rewrite_a_sent_message(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.dlr_delay_seconds = 10
    cast_sim.clock.freeze()
    message_id = await send(client, to=REJECTED)

    cast_sim.knobs.carrier_rules = [{"to": REJECTED, "status": "undelivered"}]
    cast_sim.clock.advance(10)

    assert (await status_of(client, message_id))["status"] == "delivered"


async def test_rules_are_set_over_http_and_bad_ones_refused(client: httpx.AsyncClient) -> None:
    good = await client.patch("/_sandbox/config", json={"carrier_rules": [
        {"to": REJECTED, "status": "undelivered", "dlr_status": "REJECTD"}]})
    assert good.status_code == 200, good.text
    assert (await status_of(client, await send(client, to=REJECTED)))["dlr_status"] \
        == "REJECTD"

    for rule in ({"status": "undelivered"},                        # matches nothing
                 {"to": REJECTED, "status": "delivered", "dlr_status": "REJECTD"},
                 {"to": REJECTED, "status": "undelivered", "dlr_status": "DELIVRD"},
                 {"to": REJECTED, "status": "failed", "dlr_status": "UNDELIV"},
                 {"to": REJECTED, "status": "bounced"},
                 {"to": REJECTED, "status": "sent", "color": "red"}):
        answer = await client.patch("/_sandbox/config", json={"carrier_rules": [rule]})
        assert answer.status_code == 422, rule


@pytest.mark.parametrize(("status", "dlr_status"), [
    ("pending", "ACCEPTD"), ("delivered", "DELIVRD"), ("undelivered", "UNDELIV"),
    ("undelivered", "REJECTD"), ("undelivered", "EXPIRED"), ("failed", None),
    ("sent", None),
])
async def test_each_status_carries_the_receipt_code_reference_cast_md_gives_it(
        cast_sim: Any, client: httpx.AsyncClient, status: str, dlr_status: str | None
        ) -> None:
    cast_sim.knobs.carrier_rules = [{"to": NUMBER, "status": status, "dlr_status": dlr_status}]

    body = await status_of(client, await send(client))

    assert body["status"] == status
    assert body.get("dlr_status") == dlr_status
    assert ("delivered_at" in body) == (status == "delivered")
    assert ("error_message" in body) == (status in ("failed", "undelivered"))


async def test_an_override_must_pair_status_and_code_as_cast_does(
        client: httpx.AsyncClient) -> None:
    message_id = await send(client)

    bad = await client.put(f"/_sandbox/messages/{message_id}/outcome",
                           json={"status": "delivered", "dlr_status": "REJECTD"})

    assert bad.status_code == 400, bad.text
    assert (await status_of(client, message_id))["status"] == "delivered"


# --- failed submissions are refunded ----------------------------------------------------------

async def test_a_failed_submission_is_refunded_when_its_receipt_arrives(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.credits = 10
    cast_sim.knobs.dlr_delay_seconds = 30
    cast_sim.knobs.carrier_rules = [{"contains": "[fail]", "status": "failed"}]
    cast_sim.clock.freeze()
    failing = await send(client, message="[fail]" + "a" * 200)  # 2 parts
    await send(client, message="fine")

    charged = await balance(client)
    cast_sim.clock.advance(30)
    refunded = await balance(client)
    again = await balance(client)

    assert charged == 7
    assert (await status_of(client, failing))["status"] == "failed"
    assert refunded == again == 9


async def test_an_override_to_failed_refunds_once(cast_sim: Any,
                                                 client: httpx.AsyncClient) -> None:
    cast_sim.knobs.credits = 5
    message_id = await send(client)

    for _ in range(2):
        put = await client.put(f"/_sandbox/messages/{message_id}/outcome",
                               json={"status": "failed"})
        assert put.status_code == 200
    await client.put(f"/_sandbox/messages/{message_id}/outcome",
                     json={"status": "undelivered"})

    assert await balance(client) == 5


async def test_an_override_before_a_scripted_failure_stops_its_refund(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.credits = 5
    cast_sim.knobs.dlr_delay_seconds = 30
    cast_sim.knobs.carrier_outcome = "failed"
    cast_sim.clock.freeze()
    message_id = await send(client)

    await client.put(f"/_sandbox/messages/{message_id}/outcome",
                     json={"status": "delivered"})
    cast_sim.clock.advance(30)

    assert (await status_of(client, message_id))["status"] == "delivered"
    assert await balance(client) == 4


# --- GET /api/v1/sms/logs ---------------------------------------------------------------------

async def test_logs_list_the_callers_messages_newest_first_with_their_receipts(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.sender_ids = ["BRAND", {"sender_id": "PHSIM", "channel": "sim"}]
    cast_sim.knobs.carrier_rules = [{"to": REJECTED, "status": "undelivered",
                                     "dlr_status": "REJECTD", "delay_seconds": 60}]
    cast_sim.clock.freeze()
    first = await send(client, message="a" * 161)
    cast_sim.clock.advance(1)
    second = await send(client, to=REJECTED, message="second")
    cast_sim.clock.advance(1)
    third = await send(client, channel="sim", message="via a SIM")

    before = await logs(client)
    cast_sim.clock.advance(60)
    after = await logs(client)

    assert before["success"] is True
    assert before["total"] == 3
    assert [row["message_id"] for row in before["logs"]] == [third, second, first]
    sim_row, rejected_row, long_row = before["logs"]
    assert sim_row["channel"] == "sim"
    assert sim_row["sender_id"] == "PHSIM"
    assert rejected_row == {
        "message_id": second, "to": REJECTED, "message": "second", "sender_id": "BRAND",
        "status": "sent", "sent_at": rejected_row["sent_at"], "parts": 1, "channel": "sms"}
    assert long_row["parts"] == 2
    assert long_row["status"] == "delivered"
    assert long_row["dlr_status"] == "DELIVRD"
    assert long_row["delivered_at"].endswith("Z")
    late = after["logs"][1]
    assert (late["status"], late["dlr_status"]) == ("undelivered", "REJECTD")
    assert late["error_message"]
    assert late == {**late, **{k: v for k, v in (await status_of(client, second)).items()
                               if k not in ("success", "sandbox")}}


async def test_logs_page_with_limit_and_offset(cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.clock.freeze()
    sent = []
    for n in range(7):
        sent.append(await send(client, message=f"message {n}"))
        cast_sim.clock.advance(1)
    newest_first = sent[::-1]

    page_one = await logs(client, limit=3)
    page_three = await logs(client, limit=3, offset=6)
    past_the_end = await logs(client, limit=3, offset=50)
    everything = await logs(client, limit=500)

    assert [r["message_id"] for r in page_one["logs"]] == newest_first[:3]
    assert [r["message_id"] for r in page_three["logs"]] == newest_first[6:]
    assert past_the_end == {"success": True, "total": 7, "logs": [], "sandbox": True}
    assert page_one["total"] == everything["total"] == 7
    assert [r["message_id"] for r in everything["logs"]] == newest_first


async def test_logs_default_to_50_rows(cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.rate_per_second, cast_sim.knobs.burst = 1000.0, 1000
    for n in range(51):
        await send(client, message=f"n{n}")

    body = await logs(client)

    assert body["total"] == 51
    assert len(body["logs"]) == 50


async def test_logs_search_by_number_in_either_form_text_id_or_sender(
        cast_sim: Any, client: httpx.AsyncClient) -> None:
    cast_sim.knobs.accept_e164 = True
    to_maria = await send(client, to="09181112222", message="Hi Maria", sender_id="CLINIC")
    to_e164 = await send(client, to="+639181112222", message="Reminder")
    other = await send(client, message="Hi Jose")

    def ids(body: dict[str, Any]) -> set[str]:
        return {row["message_id"] for row in body["logs"]}

    assert ids(await logs(client, search="09181112222")) == {to_maria, to_e164}
    assert ids(await logs(client, search="+63918111")) == {to_maria, to_e164}
    assert ids(await logs(client, search="maria")) == {to_maria}
    assert ids(await logs(client, search="clinic")) == {to_maria}
    assert ids(await logs(client, search=other[-8:].lower())) == {other}
    found = await logs(client, search="hi ", limit=1)
    assert found["total"] == 2
    assert len(found["logs"]) == 1
    assert (await logs(client, search="nobody"))["total"] == 0


async def test_logs_show_only_the_callers_own_messages(cast_sim: Any,
                                                      client: httpx.AsyncClient) -> None:
    cast_sim.knobs.api_keys = [DEFAULT_API_KEY, OTHER_KEY]
    mine = await send(client)
    theirs = await send(client, key=OTHER_KEY)

    assert [r["message_id"] for r in (await logs(client))["logs"]] == [mine]
    their_logs = await logs(client, key=OTHER_KEY)
    assert [r["message_id"] for r in their_logs["logs"]] == [theirs]
    assert "sandbox" not in their_logs  # a live key's answers are not marked


@pytest.mark.parametrize("query", [
    "limit=0", "limit=501", "limit=-1", "limit=ten", "limit=", "offset=-1", "offset=1.5",
    "page=2", "ofset=10", "limit=5&limit=6", "search=a&search=b",
])
async def test_bad_log_parameters_are_a_validation_error(client: httpx.AsyncClient,
                                                         query: str) -> None:
    answer = await client.get(f"/api/v1/sms/logs?{query}")

    assert_cast_error(answer, 400, "VALIDATION_ERROR")


async def test_logs_exist_on_the_legacy_path_and_need_a_key(client: httpx.AsyncClient) -> None:
    message_id = await send(client)

    legacy = await client.get("/api/sms/logs")
    no_key = await client.get("/api/v1/sms/logs", headers={"X-API-Key": ""})

    assert [r["message_id"] for r in legacy.json()["logs"]] == [message_id]
    assert_cast_error(no_key, 401, "INVALID_API_KEY")


async def test_reset_empties_the_logs(client: httpx.AsyncClient) -> None:
    await send(client)

    await client.post("/_sandbox/reset")

    assert (await logs(client))["total"] == 0
