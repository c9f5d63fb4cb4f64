"""The GHL simulator's API: auth, Version, rate limits, status race, contacts, inbound."""

from __future__ import annotations

import time
from typing import Any

import httpx

from castghl.sandbox.clock import SimClock
from castghl.sandbox.ghl.app import GhlKnobs, create_ghl_app
from castghl.sandbox.ghl.state import iso_time
from castghl.sandbox.server import serve_in_thread

CONVERSATIONS = "2021-04-15"
CONTACTS = "2021-07-28"
LOCATION = "loc_sandbox_1"
PHONE = "+639171234567"
RATE_HEADERS = ("X-RateLimit-Max", "X-RateLimit-Remaining", "X-RateLimit-Interval-Milliseconds",
                "X-RateLimit-Limit-Daily", "X-RateLimit-Daily-Remaining")


def _headers(token: str, version: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Version": version}


async def _token(client: httpx.AsyncClient, **body: Any) -> str:
    token: str = (await client.post("/_sandbox/tokens/issue", json=body)).json()["access_token"]
    return token


async def _contact(client: httpx.AsyncClient, token: str, phone: str = PHONE) -> str:
    answer = await client.post("/contacts/upsert", headers=_headers(token, CONTACTS),
                               json={"locationId": LOCATION, "phone": phone})
    assert answer.status_code == 200, answer.text
    contact_id: str = answer.json()["contact"]["id"]
    return contact_id


async def _outbound(client: httpx.AsyncClient, **body: Any) -> str:
    answer = await client.post("/_sandbox/outbound",
                               json={"phone": PHONE, "message": "hi", "deliver": False, **body})
    assert answer.status_code == 200, answer.text
    message_id: str = answer.json()["messageId"]
    return message_id


async def _put_status(client: httpx.AsyncClient, token: str, message_id: str,
                      body: Any, version: str = CONVERSATIONS) -> httpx.Response:
    return await client.put(f"/conversations/messages/{message_id}/status",
                            headers=_headers(token, version), json=body)


# --- auth, Version, scopes -------------------------------------------------------------------

async def test_missing_or_invalid_bearer_is_401_in_ghls_error_shape(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        for authorization in (None, "Bearer not-a-token", "Basic abc", "Bearer"):
            headers = {"Version": CONTACTS,
                       **({"Authorization": authorization} if authorization else {})}
            answer = await client.post("/contacts/upsert", headers=headers,
                                       json={"locationId": LOCATION, "phone": PHONE})
            assert answer.status_code == 401, authorization
            assert answer.json() == {"statusCode": 401, "error": "Unauthorized",
                                     "message": "Invalid token: access token is invalid"}
        unknown = await client.post("/conversations/messages/sms")
    assert unknown.status_code == 404
    assert unknown.json() == {"statusCode": 404, "error": "Not Found",
                              "message": "Cannot POST /conversations/messages/sms"}


async def test_wrong_or_missing_version_is_401_and_nothing_is_recorded(ghl_sim: Any) -> None:
    ghl_sim.knobs.status_race_seconds = 0
    cases = [
        (None, "version header was not found."),
        ("2021-07-28", "version header is invalid"),  # the contacts version on conversations
        ("2020-01-01", "version header is invalid"),
    ]
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        message_id = await _outbound(client)
        for version, message in cases:
            headers = {"Authorization": f"Bearer {token}",
                       **({"Version": version} if version else {})}
            answer = await client.put(f"/conversations/messages/{message_id}/status",
                                      headers=headers, json={"status": "delivered"})
            assert answer.status_code == 401, version
            assert answer.json()["message"] == message
        recorded = (await client.get(f"/_sandbox/messages/{message_id}")).json()
        assert recorded["statuses"] == []

        # With strict_version off any published version passes, as on the live API.
        ghl_sim.knobs.strict_version = False
        relaxed = await _put_status(client, token, message_id, {"status": "delivered"},
                                    version=CONTACTS)
    assert relaxed.status_code == 200


async def test_token_must_carry_the_scope_and_the_location(ghl_sim: Any) -> None:
    ghl_sim.knobs.status_race_seconds = 0
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        narrow = await _token(client, scope="conversations/message.write")
        no_scope = await client.post("/contacts/upsert", headers=_headers(narrow, CONTACTS),
                                     json={"locationId": LOCATION, "phone": PHONE})
        other = await _token(client, locationId="loc_other")
        message_id = await _outbound(client)
        status = await _put_status(client, other, message_id, {"status": "delivered"})
        upsert = await client.post("/contacts/upsert", headers=_headers(other, CONTACTS),
                                   json={"locationId": LOCATION, "phone": PHONE})
    assert no_scope.status_code == 401
    assert no_scope.json()["message"] == "The token is not authorized for this scope."
    assert status.status_code == 403
    assert upsert.status_code == 403
    assert upsert.json()["message"] == "The token does not have access to this location."


# --- rate limits -----------------------------------------------------------------------------
# The clock is frozen first: "inside the window" then holds however slowly the calls go,
# and `advance` opens the next window exactly.

async def test_101st_call_in_the_window_is_429_with_rate_limit_headers(ghl_sim: Any) -> None:
    ghl_sim.clock.freeze()
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        other = await _token(client, locationId="loc_other")
        body = {"locationId": LOCATION, "phone": PHONE}
        answers = [await client.post("/contacts/upsert", headers=_headers(token, CONTACTS),
                                     json=body) for _ in range(101)]
        elsewhere = await client.post("/contacts/upsert", headers=_headers(other, CONTACTS),
                                      json={"locationId": "loc_other", "phone": PHONE})
    assert [a.status_code for a in answers[:100]] == [200] * 100
    assert answers[0].headers["X-RateLimit-Remaining"] == "99"
    refused = answers[100]
    assert refused.status_code == 429
    assert all(name in refused.headers for name in RATE_HEADERS)
    assert refused.headers["X-RateLimit-Max"] == "100"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-RateLimit-Interval-Milliseconds"] == "10000"
    assert refused.headers["X-RateLimit-Limit-Daily"] == "200000"
    assert refused.headers["X-RateLimit-Daily-Remaining"] == "199900"
    assert "Retry-After" not in refused.headers
    assert elsewhere.status_code == 200  # the limit is per location


async def test_window_reopens_after_the_interval_and_retry_after_is_a_knob(ghl_sim: Any
                                                                           ) -> None:
    ghl_sim.knobs.rate_limit_max = 2  # per the default 10 s interval
    ghl_sim.knobs.send_retry_after = True
    ghl_sim.clock.freeze()
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)

        async def call() -> httpx.Response:
            return await client.post("/contacts/upsert", headers=_headers(token, CONTACTS),
                                     json={"locationId": LOCATION, "phone": PHONE})

        assert [(await call()).status_code for _ in range(3)] == [200, 200, 429]
        assert (await call()).headers["Retry-After"] == "10"
        ghl_sim.clock.advance(9.5)
        late = await call()
        ghl_sim.clock.advance(0.5)
        reopened = await call()
    assert late.status_code == 429
    assert late.headers["Retry-After"] == "1"  # whole seconds, rounded up
    assert reopened.status_code == 200
    assert reopened.headers["X-RateLimit-Remaining"] == "1"


# --- status updates --------------------------------------------------------------------------

async def test_status_update_inside_the_race_window_is_403_then_200_and_recorded(ghl_sim: Any
                                                                                 ) -> None:
    ghl_sim.knobs.status_race_seconds = 8
    ghl_sim.clock.freeze()
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        message_id = await _outbound(client)
        early = await _put_status(client, token, message_id, {"status": "delivered"})
        ghl_sim.clock.advance(7.5)
        still = await _put_status(client, token, message_id, {"status": "delivered"})
        ghl_sim.clock.advance(0.5)
        failed = {"status": "failed",
                  "error": {"code": "30007", "type": "saas", "message": "Carrier rejected"}}
        late = await _put_status(client, token, message_id, failed)
        recorded = (await client.get(f"/_sandbox/messages/{message_id}")).json()
    assert early.status_code == still.status_code == 403
    assert early.json()["statusCode"] == 403
    assert early.json()["message"] == "No conversation provider found for this message"
    assert late.status_code == 200
    assert late.json() == {"conversationId": recorded["conversationId"],
                           "messageId": message_id, "status": "failed"}
    assert [(s["status"], s["error"]) for s in recorded["statuses"]] == [
        ("failed", failed["error"])]


async def test_invalid_status_bodies_are_400_and_not_recorded(ghl_sim: Any) -> None:
    ghl_sim.knobs.status_race_seconds = 0
    bodies: list[Any] = [
        {"status": "sent"},
        {"status": "failed", "error": {"code": "1", "message": "no type"}},
        {"status": "delivered", "reason": "misspelt field"},
        {},
        ["delivered"],
    ]
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        message_id = await _outbound(client)
        for body in bodies:
            answer = await _put_status(client, token, message_id, body)
            assert answer.status_code == 400, body
            assert answer.json()["error"] == "Bad Request"
            assert isinstance(answer.json()["message"], list)
        recorded = (await client.get(f"/_sandbox/messages/{message_id}")).json()
    assert recorded["statuses"] == []


async def test_status_of_an_unknown_message_is_404(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        answer = await _put_status(client, token, "NoSuchMessage0000000", {"status": "read"})
    assert answer.status_code == 404


# --- contacts --------------------------------------------------------------------------------

async def test_upserting_a_phone_twice_finds_the_same_contact(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        first = await client.post("/contacts/upsert", headers=_headers(token, CONTACTS),
                                  json={"locationId": LOCATION, "phone": PHONE})
        second = await client.post("/contacts/upsert", headers=_headers(token, CONTACTS),
                                   json={"locationId": LOCATION, "phone": "+63 917-123-4567",
                                         "firstName": "Maria"})
        listed = (await client.get("/_sandbox/contacts")).json()
    assert first.json()["new"] is True
    assert second.json()["new"] is False
    assert first.json()["contact"]["id"] == second.json()["contact"]["id"]
    assert second.json()["contact"]["phone"] == PHONE
    assert second.json()["contact"]["locationId"] == LOCATION
    assert second.json()["traceId"]
    assert len(listed) == 1
    assert listed[0]["firstName"] == "Maria"


async def test_a_reply_upserted_in_e164_finds_the_contact_a_formatted_send_made(
        ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        sent = (await client.post("/_sandbox/outbound", json={
            "phone": "+63 917 123-4567", "message": "hi", "deliver": False})).json()
        token = await _token(client)
        assert await _contact(client, token, "+639171234567") == sent["contactId"]


async def test_upsert_rejects_what_ghl_would(ghl_sim: Any) -> None:
    cases: list[tuple[Any, str]] = [
        ({"locationId": LOCATION, "phoneNumber": PHONE}, "property phoneNumber should not exist"),
        ({"locationId": LOCATION, "phone": "09171234567"},
         "phone must be a valid E.164 phone number"),
        ({"phone": PHONE}, "locationId should not be empty"),
        ({"locationId": LOCATION, "phone": PHONE, "dnd": "true"},
         "dnd must be a boolean value"),
    ]
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        for body, message in cases:
            answer = await client.post("/contacts/upsert", headers=_headers(token, CONTACTS),
                                       json=body)
            assert answer.status_code == 422, body
            assert answer.json()["error"] == "Unprocessable Entity"
            assert message in answer.json()["message"]
        # Without a JSON content type the body is not read at all.
        unread = await client.post("/contacts/upsert", headers=_headers(token, CONTACTS),
                                   content=b'{"locationId": "loc_sandbox_1"}')
        assert unread.status_code == 422
        assert (await client.get("/_sandbox/contacts")).json() == []


# --- inbound messages ------------------------------------------------------------------------

async def test_inbound_message_is_recorded_with_alt_id_and_never_deduped(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        contact_id = await _contact(client, token)
        body = {"type": "SMS", "message": "Salamat po", "contactId": contact_id,
                "direction": "inbound", "date": "2026-08-01T02:03:04.000Z",
                "altId": "cast-msg-1", "attachments": []}
        answers = [await client.post("/conversations/messages/inbound",
                                     headers=_headers(token, CONVERSATIONS), json=body)
                   for _ in range(2)]
        conversations = (await client.get("/_sandbox/conversations")).json()
    first = answers[0].json()
    assert answers[0].status_code == 200
    assert first["success"] is True
    assert first["contactId"] == contact_id
    assert first["messageId"]
    assert first["dateAdded"]
    assert len(conversations) == 1
    assert conversations[0]["id"] == first["conversationId"]
    messages = conversations[0]["messages"]
    assert [(m["altId"], m["direction"], m["message"]) for m in messages] == [
        ("cast-msg-1", "inbound", "Salamat po")] * 2


async def test_inbound_without_direction_is_stored_as_outbound(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        contact_id = await _contact(client, token)
        await client.post("/conversations/messages/inbound",
                          headers=_headers(token, CONVERSATIONS),
                          json={"type": "SMS", "message": "hello", "contactId": contact_id})
        messages = (await client.get("/_sandbox/messages")).json()
    assert [m["direction"] for m in messages] == ["outbound"]


async def test_inbound_for_an_unknown_contact_is_rejected(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        body = {"type": "SMS", "message": "x", "contactId": "NoSuchContact0000000",
                "direction": "inbound"}
        answer = await client.post("/conversations/messages/inbound",
                                   headers=_headers(token, CONVERSATIONS), json=body)
        ghl_sim.knobs.inbound_bad_contact_status = 500
        as_500 = await client.post("/conversations/messages/inbound",
                                   headers=_headers(token, CONVERSATIONS), json=body)
        messages = (await client.get("/_sandbox/messages")).json()
    assert answer.status_code == 400
    assert answer.json()["message"] == "Contact not found"
    assert as_500.status_code == 500
    assert messages == []


async def test_inbound_body_is_validated_against_the_spec(ghl_sim: Any) -> None:
    cases: list[tuple[Any, str]] = [
        ({"type": "SMS", "message": "x"},
         "contactId should not be empty when conversationId is not given"),
        ({"type": "sms", "message": "x", "contactId": "c"}, "type must be one of"),
        ({"type": "SMS", "message": "x", "contactId": "c", "phone": PHONE},
         "property phone should not exist"),
        ({"type": "SMS", "contactId": "c", "date": "yesterday"}, "date must be a valid ISO"),
    ]
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        for body, message in cases:
            answer = await client.post("/conversations/messages/inbound",
                                       headers=_headers(token, CONVERSATIONS), json=body)
            assert answer.status_code == 400, body
            assert any(m.startswith(message) for m in answer.json()["message"]), answer.json()


async def test_inbound_can_answer_201_with_an_empty_body(ghl_sim: Any) -> None:
    ghl_sim.knobs.inbound_empty_201 = True
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        contact_id = await _contact(client, token)
        answer = await client.post("/conversations/messages/inbound",
                                   headers=_headers(token, CONVERSATIONS),
                                   json={"type": "SMS", "message": "x", "contactId": contact_id,
                                         "direction": "inbound"})
        messages = (await client.get("/_sandbox/messages")).json()
    assert answer.status_code == 201
    assert answer.content == b""
    assert len(messages) == 1  # stored all the same


# --- injected failures, reset, isolation -----------------------------------------------------

async def test_fail_next_answers_matching_calls_in_order_then_serves_again(ghl_sim: Any
                                                                           ) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        contact_id = await _contact(client, token)
        patched = await client.patch("/_sandbox/config", json={"fail_next": [
            {"path_prefix": "/conversations/messages/inbound", "status": 500, "count": 2},
            {"path_prefix": "/contacts", "status": 401, "method": "POST"},
        ]})
        assert patched.status_code == 200
        body = {"type": "SMS", "message": "x", "contactId": contact_id, "direction": "inbound"}

        async def inbound() -> int:
            return (await client.post("/conversations/messages/inbound",
                                      headers=_headers(token, CONVERSATIONS),
                                      json=body)).status_code

        assert [await inbound(), await inbound(), await inbound()] == [500, 500, 200]
        upsert = await client.post("/contacts/upsert", headers=_headers(token, CONTACTS),
                                   json={"locationId": LOCATION, "phone": PHONE})
        assert upsert.status_code == 401
        assert upsert.json()["statusCode"] == 401
        assert (await client.get("/_sandbox/config")).json()["fail_next"] == []
        assert len((await client.get("/_sandbox/messages")).json()) == 1


async def test_reset_forgets_everything_but_the_knobs(ghl_sim: Any) -> None:
    ghl_sim.knobs.status_race_seconds = 0.1
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = await _token(client)
        await _contact(client, token)
        await _outbound(client)
        assert (await client.post("/_sandbox/reset")).status_code == 200
        assert (await client.get("/_sandbox/messages")).json() == []
        assert (await client.get("/_sandbox/contacts")).json() == []
        assert (await client.get("/_sandbox/conversations")).json() == []
        view = (await client.get("/_sandbox/oauth")).json()
        assert view["tokens"] == {}
        assert view["refreshes"] == 0
        old = await client.post("/contacts/upsert", headers=_headers(token, CONTACTS),
                                json={"locationId": LOCATION, "phone": PHONE})
        assert old.status_code == 401
        fresh = await _token(client)
        answer = await client.post("/contacts/upsert", headers=_headers(fresh, CONTACTS),
                                   json={"locationId": LOCATION, "phone": PHONE})
        assert answer.headers["X-RateLimit-Remaining"] == "99"  # rate windows start over
        assert (await client.get("/_sandbox/config")).json()["status_race_seconds"] == 0.1


async def test_two_simulators_share_nothing(ghl_sim: Any) -> None:
    other_clock = SimClock()
    other_clock.freeze()  # its own time: stopping it stops nothing in the first simulator
    second = create_ghl_app(GhlKnobs(), other_clock)
    with serve_in_thread(second) as other_url:
        async with httpx.AsyncClient(base_url=ghl_sim.url) as client, \
                httpx.AsyncClient(base_url=other_url) as other:
            token = await _token(client)
            await _contact(client, token)
            answer = await other.post("/contacts/upsert", headers=_headers(token, CONTACTS),
                                      json={"locationId": LOCATION, "phone": PHONE})
            assert answer.status_code == 401
            assert (await other.get("/_sandbox/contacts")).json() == []
    assert not ghl_sim.clock.frozen


# --- the clock -------------------------------------------------------------------------------

async def test_clock_route_steers_the_ghl_simulator_too(ghl_sim: Any) -> None:
    ghl_sim.knobs.status_race_seconds = 8
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        frozen = (await client.post("/_sandbox/clock", json={"freeze": True})).json()
        token = await _token(client)
        message_id = await _outbound(client)
        early = await _put_status(client, token, message_id, {"status": "delivered"})
        moved = (await client.post("/_sandbox/clock", json={"advance": 8})).json()
        late = await _put_status(client, token, message_id, {"status": "delivered"})
        read = (await client.get("/_sandbox/clock")).json()
        recorded = (await client.get(f"/_sandbox/messages/{message_id}")).json()
    assert frozen["frozen"] is True
    assert moved == read == {"now": frozen["now"] + 8, "frozen": True}
    assert (early.status_code, late.status_code) == (403, 200)
    assert recorded["dateAdded"] == iso_time(frozen["now"])
    assert recorded["statuses"][0]["at"] == iso_time(frozen["now"] + 8)


async def test_bad_clock_changes_are_refused_by_the_ghl_simulator(ghl_sim: Any) -> None:
    at = ghl_sim.clock.freeze()
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        for body in ({"advance": -5}, {"advance": "1s"}, {"freeze": "no"}, {"speed": 2}, [0]):
            answer = await client.post("/_sandbox/clock", json=body)
            assert answer.status_code in (400, 422), body
    assert ghl_sim.clock() == at


async def test_ghl_reset_puts_the_clock_back_on_real_time(ghl_sim: Any) -> None:
    ghl_sim.clock.freeze()
    ghl_sim.clock.advance(3600)
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        assert (await client.post("/_sandbox/reset")).status_code == 200
        reading = (await client.get("/_sandbox/clock")).json()
    assert reading["frozen"] is False
    assert abs(reading["now"] - time.time()) < 5
