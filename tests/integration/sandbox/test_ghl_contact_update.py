"""`PUT /contacts/{contactId}` of the GHL simulator: how the bridge sets a contact's SMS DND
on STOP. Validated against contacts.json's `UpdateContactDto`; answered as its 200."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from castghl.sandbox.ghl.state import iso_time

CONTACTS = "2021-07-28"
LOCATION = "loc_sandbox_1"
PHONE = "+639171234567"
STOP = {"SMS": {"status": "active", "message": "Replied STOP", "code": "STOP"}}


@pytest.fixture
async def client(ghl_sim: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as http:
        yield http


def _headers(token: str, version: str = CONTACTS) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Version": version}


async def _token(client: httpx.AsyncClient, **body: Any) -> str:
    token: str = (await client.post("/_sandbox/tokens/issue", json=body)).json()["access_token"]
    return token


async def _contact(client: httpx.AsyncClient, token: str, **fields: Any) -> str:
    answer = await client.post("/contacts/upsert", headers=_headers(token),
                               json={"locationId": LOCATION, "phone": PHONE, **fields})
    assert answer.status_code == 200, answer.text
    contact_id: str = answer.json()["contact"]["id"]
    return contact_id


async def _update(client: httpx.AsyncClient, token: str, contact_id: str, body: Any,
                  version: str = CONTACTS) -> httpx.Response:
    return await client.put(f"/contacts/{contact_id}", headers=_headers(token, version),
                            json=body)


async def _stored(client: httpx.AsyncClient) -> dict[str, Any]:
    [contact] = (await client.get("/_sandbox/contacts")).json()
    stored: dict[str, Any] = contact
    return stored


async def test_stop_sets_the_sms_dnd_and_answers_as_the_spec_documents(
        ghl_sim: Any, client: httpx.AsyncClient) -> None:
    at = ghl_sim.clock.freeze()
    token = await _token(client)
    contact_id = await _contact(client, token)
    ghl_sim.clock.advance(60)

    answer = await _update(client, token, contact_id, {"dndSettings": STOP})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    # UpdateContactsSuccessfulResponseDto: `succeded`, as the spec spells it.
    assert set(body) == {"succeded", "contact"}
    assert body["succeded"] is True
    contact = body["contact"]
    assert contact["id"] == contact_id
    assert contact["locationId"] == LOCATION
    assert contact["phone"] == PHONE
    assert contact["dndSettings"] == STOP
    assert contact["dateAdded"] == iso_time(at)
    assert contact["dateUpdated"] == iso_time(at + 60)
    assert await _stored(client) == contact


async def test_dnd_channels_not_given_are_kept_and_a_given_one_is_replaced(
        client: httpx.AsyncClient) -> None:
    token = await _token(client)
    contact_id = await _contact(client, token,
                                dndSettings={"Email": {"status": "inactive"}})

    await _update(client, token, contact_id, {"dndSettings": STOP})
    await _update(client, token, contact_id,
                  {"dndSettings": {"SMS": {"status": "permanent"}}})

    assert (await _stored(client))["dndSettings"] == {
        "Email": {"status": "inactive"}, "SMS": {"status": "permanent"}}


async def test_other_fields_replace_clear_and_normalise_as_given(
        client: httpx.AsyncClient) -> None:
    token = await _token(client)
    contact_id = await _contact(client, token, firstName="Maria", tags=["vip"])

    answer = await _update(client, token, contact_id, {
        "firstName": None, "lastName": "Santos", "tags": ["patient"], "dnd": True,
        "phone": "+63 918 123-4567", "email": "maria@example.com",
        "inboundDndSettings": {"all": {"status": "active", "message": "STOP"}},
        "customFields": [{"id": "cf1", "field_value": "yes"}]})

    assert answer.status_code == 200, answer.text
    stored = await _stored(client)
    assert stored["firstName"] is None
    assert stored["lastName"] == "Santos"
    assert stored["tags"] == ["patient"]
    assert stored["dnd"] is True
    assert stored["phone"] == "+639181234567"
    assert stored["email"] == "maria@example.com"
    assert stored["inboundDndSettings"] == {"all": {"status": "active", "message": "STOP"}}
    assert stored["customFields"] == [{"id": "cf1", "field_value": "yes"}]


@pytest.mark.parametrize(("body", "message"), [
    ({"gender": "female"}, "property gender should not exist"),
    ({"locationId": LOCATION}, "property locationId should not exist"),
    ({"dndSettings": {"SMS": {"status": "on"}}},
     "dndSettings.SMS.status must be one of the following values: active, inactive, "
     "permanent"),
    ({"dndSettings": {"SMS": {"message": "STOP"}}}, "dndSettings.SMS.status should not be empty"),
    ({"dndSettings": {"sms": {"status": "active"}}}, "dndSettings.property sms should not exist"),
    ({"dndSettings": {"SMS": {"status": "active", "reason": "STOP"}}},
     "dndSettings.SMS.property reason should not exist"),
    ({"dndSettings": {"SMS": {"status": "active", "code": 7}}},
     "dndSettings.SMS.code must be a string"),
    ({"dndSettings": {"SMS": "active"}}, "dndSettings.SMS must be an object"),
    ({"inboundDndSettings": {"all": {"status": "permanent"}}},
     "inboundDndSettings.all.status must be one of the following values: active, inactive"),
    ({"dnd": "true"}, "dnd must be a boolean value"),
    ({"tags": "vip"}, "tags must be an array"),
    ({"phone": "09171234567"}, "phone must be a valid E.164 phone number"),
])
async def test_what_the_spec_refuses_is_422_and_changes_nothing(
        client: httpx.AsyncClient, body: dict[str, Any], message: str) -> None:
    token = await _token(client)
    contact_id = await _contact(client, token)
    before = await _stored(client)

    answer = await _update(client, token, contact_id, body)

    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "Unprocessable Entity"
    assert answer.json()["statusCode"] == 422
    assert message in answer.json()["message"]
    assert await _stored(client) == before


async def test_upsert_validates_dnd_settings_against_the_same_schema(
        client: httpx.AsyncClient) -> None:
    token = await _token(client)

    answer = await client.post("/contacts/upsert", headers=_headers(token), json={
        "locationId": LOCATION, "phone": PHONE, "dndSettings": {"SMS": {"status": "yes"}}})

    assert answer.status_code == 422
    assert (await client.get("/_sandbox/contacts")).json() == []


async def test_an_unknown_contact_is_400_as_the_spec_lists(client: httpx.AsyncClient) -> None:
    token = await _token(client)

    answer = await _update(client, token, "NoSuchContact0000000", {"dndSettings": STOP})

    assert answer.status_code == 400
    assert answer.json() == {"statusCode": 400, "error": "Bad Request",
                             "message": "Contact not found"}


async def test_another_locations_token_is_403(client: httpx.AsyncClient) -> None:
    contact_id = await _contact(client, await _token(client))
    other = await _token(client, locationId="loc_other")

    answer = await _update(client, other, contact_id, {"dndSettings": STOP})

    assert answer.status_code == 403
    assert answer.json()["message"] == "The token does not have access to this location."
    assert "dndSettings" not in await _stored(client)


async def test_token_scope_class_and_version_are_checked(client: httpx.AsyncClient) -> None:
    contact_id = await _contact(client, await _token(client))
    read_only = await _token(client, scope="contacts.readonly")
    agency = await _token(client, userType="Company")
    token = await _token(client)

    cases = [
        (await _update(client, "not-a-token", contact_id, {"dnd": True}),
         "Invalid token: access token is invalid"),
        (await _update(client, read_only, contact_id, {"dnd": True}),
         "The token is not authorized for this scope."),
        (await _update(client, agency, contact_id, {"dnd": True}),
         "This authClass type is not allowed to access this scope. "
         "Please reach out to the Platform team to get it added."),
        (await _update(client, token, contact_id, {"dnd": True}, version="2021-04-15"),
         "version header is invalid"),
    ]

    for answer, message in cases:
        assert answer.status_code == 401, message
        assert answer.json()["message"] == message
    assert "dnd" not in await _stored(client)


async def test_updates_count_against_the_rate_limit_and_are_recorded(
        ghl_sim: Any, client: httpx.AsyncClient) -> None:
    ghl_sim.knobs.rate_limit_max = 3
    ghl_sim.clock.freeze()
    token = await _token(client)
    contact_id = await _contact(client, token)

    answers = [await _update(client, token, contact_id, {"dndSettings": STOP})
               for _ in range(3)]
    calls = (await client.get("/_sandbox/calls", params={"method": "PUT"})).json()

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["X-RateLimit-Remaining"] == "0"
    assert [(c["path"], c["status"]) for c in calls] == [
        (f"/contacts/{contact_id}", 200), (f"/contacts/{contact_id}", 200),
        (f"/contacts/{contact_id}", 429)]
    assert calls[0]["body"] == {"dndSettings": STOP}
    assert calls[0]["response"]["contact"]["dndSettings"] == STOP


async def test_reset_forgets_the_update(client: httpx.AsyncClient) -> None:
    token = await _token(client)
    contact_id = await _contact(client, token)
    await _update(client, token, contact_id, {"dndSettings": STOP})

    await client.post("/_sandbox/reset")

    assert (await client.get("/_sandbox/contacts")).json() == []
