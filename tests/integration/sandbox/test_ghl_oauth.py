"""The GHL simulator's OAuth: authorize, codes, rotating refresh tokens, agency installs."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

REDIRECT = "https://bridge.example/oauth/callback"
SCOPES = "conversations/message.write contacts.write"
AGENCY_SCOPES = f"{SCOPES} oauth.write oauth.readonly"


def _api_headers(token: str, version: str = "2021-07-28") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Version": version}


async def _authorize(client: httpx.AsyncClient, knobs: Any, scope: str = SCOPES,
                     path: str = "/v2/oauth/chooselocation") -> str:
    answer = await client.get(path, params={
        "response_type": "code", "client_id": knobs.client_id, "redirect_uri": REDIRECT,
        "scope": scope, "state": "xyz"})
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == ["xyz"]
    return query["code"][0]


async def _exchange(client: httpx.AsyncClient, knobs: Any, code: str,
                    user_type: str = "Location") -> httpx.Response:
    return await client.post("/oauth/token", data={
        "client_id": knobs.client_id, "client_secret": knobs.client_secret,
        "grant_type": "authorization_code", "code": code, "user_type": user_type,
        "redirect_uri": REDIRECT})


async def _refresh(client: httpx.AsyncClient, knobs: Any, refresh_token: str,
                   user_type: str = "Location") -> httpx.Response:
    return await client.post("/oauth/token", data={
        "client_id": knobs.client_id, "client_secret": knobs.client_secret,
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "user_type": user_type})


async def _upsert(client: httpx.AsyncClient, token: str, location_id: str = "loc_sandbox_1"
                  ) -> httpx.Response:
    return await client.post("/contacts/upsert", headers=_api_headers(token),
                             json={"locationId": location_id, "phone": "+639171234567"})


async def _oauth_view(client: httpx.AsyncClient) -> dict[str, Any]:
    view: dict[str, Any] = (await client.get("/_sandbox/oauth")).json()
    return view


async def test_authorize_redirects_with_code_and_the_code_buys_a_location_token(ghl_sim: Any
                                                                                ) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        code = await _authorize(client, ghl_sim.knobs)
        answer = await _exchange(client, ghl_sim.knobs, code)
        assert answer.status_code == 200
        grant = answer.json()
        assert grant["token_type"] == "Bearer"
        assert grant["expires_in"] == 86399
        assert grant["userType"] == "Location"
        assert grant["locationId"] == "loc_sandbox_1"
        assert grant["companyId"] == "comp_sandbox_1"
        assert grant["scope"] == SCOPES
        assert grant["userId"]
        assert grant["access_token"].startswith("eyJ")
        assert grant["access_token"] != grant["refresh_token"]
        assert (await _upsert(client, grant["access_token"])).status_code == 200
        # The older address without /v2 still works.
        legacy = await _authorize(client, ghl_sim.knobs, path="/oauth/chooselocation")
        assert (await _exchange(client, ghl_sim.knobs, legacy)).status_code == 200
        # For a person clicking through the demo: a page with an Approve link instead.
        ghl_sim.knobs.authorize_mode = "page"
        page = await client.get("/v2/oauth/chooselocation", params={
            "response_type": "code", "client_id": ghl_sim.knobs.client_id,
            "redirect_uri": REDIRECT, "scope": SCOPES})
        assert page.status_code == 200
        assert f'href="{REDIRECT}?code=' in page.text


async def test_authorize_refuses_bad_requests_with_a_400_page(ghl_sim: Any) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"client_id": "someone-else"}, "Unknown client_id"),
        ({"response_type": "token"}, "response_type must be code"),
        ({"redirect_uri": None}, "redirect_uri is required"),
        ({"scope": "locations.write"}, "Invalid scope"),
    ]
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        for change, reason in cases:
            params = {"response_type": "code", "client_id": ghl_sim.knobs.client_id,
                      "redirect_uri": REDIRECT, "scope": SCOPES, **change}
            answer = await client.get(
                "/v2/oauth/chooselocation",
                params={k: v for k, v in params.items() if v is not None})
            assert answer.status_code == 400, change
            assert answer.headers["content-type"].startswith("text/html")
            assert reason in answer.text


async def test_an_authorization_code_works_once_and_expires(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        code = await _authorize(client, ghl_sim.knobs)
        assert (await _exchange(client, ghl_sim.knobs, code)).status_code == 200
        again = await _exchange(client, ghl_sim.knobs, code)
        assert again.status_code == 400
        assert again.json() == {"error": "invalid_grant",
                                "error_description": "Invalid grant: authorization code is invalid"}

        ghl_sim.clock.freeze()
        code = await _authorize(client, ghl_sim.knobs)
        ghl_sim.clock.advance(ghl_sim.knobs.code_ttl)
        late = await _exchange(client, ghl_sim.knobs, code)
    assert late.status_code == 400
    assert late.json() == {"error": "invalid_grant",
                           "error_description": "Invalid grant: authorization code has expired"}


async def test_token_endpoint_refuses_bad_clients_json_and_misspelt_fields(ghl_sim: Any
                                                                            ) -> None:
    knobs = ghl_sim.knobs
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        code = await _authorize(client, knobs)
        wrong_secret = await client.post("/oauth/token", data={
            "client_id": knobs.client_id, "client_secret": "wrong",
            "grant_type": "authorization_code", "code": code})
        as_json = await client.post("/oauth/token", json={
            "client_id": knobs.client_id, "client_secret": knobs.client_secret,
            "grant_type": "authorization_code", "code": code})
        misspelt = await client.post("/oauth/token", data={
            "client_id": knobs.client_id, "client_secret": knobs.client_secret,
            "grant_type": "refresh_token", "refreshToken": "x"})
        # None of those spent the code.
        assert (await _exchange(client, knobs, code)).status_code == 200
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"
    assert misspelt.status_code == 422
    assert "property refreshToken should not exist" in misspelt.json()["message"]


async def test_refresh_rotates_and_a_spent_refresh_token_is_refused_and_counted(ghl_sim: Any
                                                                                ) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        first = (await _exchange(client, ghl_sim.knobs,
                                 await _authorize(client, ghl_sim.knobs))).json()
        second = await _refresh(client, ghl_sim.knobs, first["refresh_token"])
        assert second.status_code == 200
        assert second.json()["refresh_token"] != first["refresh_token"]
        assert second.json()["access_token"] != first["access_token"]
        reused = await _refresh(client, ghl_sim.knobs, first["refresh_token"])
        assert reused.status_code == 400
        assert reused.json() == {"error": "invalid_grant",
                                 "error_description": "Invalid grant: refresh token is invalid"}
        # The newest one is still good: reuse of an old token does not burn the chain.
        assert (await _refresh(client, ghl_sim.knobs,
                               second.json()["refresh_token"])).status_code == 200
        view = await _oauth_view(client)
    assert view["refreshes"] == 3
    assert view["refresh_successes"] == 2
    assert view["refresh_reuses"] == 1


async def test_concurrent_refreshes_of_one_token_let_exactly_one_through(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        grant = (await client.post("/_sandbox/tokens/issue")).json()
        answers = await asyncio.gather(*[
            _refresh(client, ghl_sim.knobs, grant["refresh_token"]) for _ in range(6)])
        view = await _oauth_view(client)
    assert sorted(a.status_code for a in answers) == [200, 400, 400, 400, 400, 400]
    assert view["refreshes"] == 6
    assert view["refresh_reuses"] == 5


async def test_old_access_token_lives_on_after_refresh_unless_the_knob_says_otherwise(
        ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        grant = (await client.post("/_sandbox/tokens/issue")).json()
        await _refresh(client, ghl_sim.knobs, grant["refresh_token"])
        assert (await _upsert(client, grant["access_token"])).status_code == 200

        ghl_sim.knobs.revoke_old_access_on_refresh = True
        grant = (await client.post("/_sandbox/tokens/issue")).json()
        await _refresh(client, ghl_sim.knobs, grant["refresh_token"])
        assert (await _upsert(client, grant["access_token"])).status_code == 401


async def test_access_token_ttl_knob_makes_tokens_expire(ghl_sim: Any) -> None:
    ghl_sim.knobs.access_token_ttl = 3600
    ghl_sim.clock.freeze()
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        grant = (await client.post("/_sandbox/tokens/issue")).json()
        assert grant["expires_in"] == 3600
        ghl_sim.clock.advance(3599)
        assert (await _upsert(client, grant["access_token"])).status_code == 200
        ghl_sim.clock.advance(1)
        late = await _upsert(client, grant["access_token"])
        view = await _oauth_view(client)
    assert late.status_code == 401
    assert late.json()["statusCode"] == 401
    assert view["tokens"]["loc_sandbox_1"]["expired"] is True


async def test_a_code_does_not_expire_while_the_clock_is_frozen(
        ghl_sim: Any) -> None:
    ghl_sim.knobs.code_ttl = 0.001  # would expire at once in real time on any machine
    ghl_sim.clock.freeze()
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        code = await _authorize(client, ghl_sim.knobs)
        answer = await _exchange(client, ghl_sim.knobs, code)
    assert answer.status_code == 200


async def test_tokens_carry_the_simulators_time(ghl_sim: Any) -> None:
    at = ghl_sim.clock.freeze()
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        await client.post("/_sandbox/clock", json={"advance": 86_400})
        grant = (await client.post("/_sandbox/tokens/issue")).json()
        view = await _oauth_view(client)
    claims = json.loads(base64.urlsafe_b64decode(grant["access_token"].split(".")[1] + "=="))
    assert claims["iat"] == int(at + 86_400)
    assert view["tokens"]["loc_sandbox_1"]["expires_at"] == at + 86_400 + grant["expires_in"]


async def test_expire_endpoint_forces_an_expired_token_mid_run(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        grant = (await client.post("/_sandbox/tokens/issue")).json()
        expired = await client.post("/_sandbox/tokens/expire",
                                    json={"locationId": "loc_sandbox_1"})
        assert expired.json() == {"expired": 1}
        assert (await _upsert(client, grant["access_token"])).status_code == 401
        fresh = (await _refresh(client, ghl_sim.knobs, grant["refresh_token"])).json()
        assert (await _upsert(client, fresh["access_token"])).status_code == 200
        view = await _oauth_view(client)
    assert view["tokens"]["loc_sandbox_1"]["access_token"] == fresh["access_token"]
    assert view["tokens"]["loc_sandbox_1"]["refresh_token"] == fresh["refresh_token"]


async def test_revoked_refresh_token_means_reauthorisation(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        grant = (await client.post("/_sandbox/tokens/issue")).json()
        revoked = await client.post("/_sandbox/tokens/revoke",
                                    json={"locationId": "loc_sandbox_1"})
        assert revoked.json() == {"revoked": 1}
        answer = await _refresh(client, ghl_sim.knobs, grant["refresh_token"])
        view = await _oauth_view(client)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert view["refresh_reuses"] == 0  # refused, but not a reuse by the bridge


async def test_inactive_location_refuses_refresh_without_spending_the_token(ghl_sim: Any
                                                                            ) -> None:
    ghl_sim.knobs.location_inactive = ["loc_sandbox_1"]
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        grant = (await client.post("/_sandbox/tokens/issue")).json()
        paused = await _refresh(client, ghl_sim.knobs, grant["refresh_token"])
        assert paused.status_code == 400
        assert paused.json()["message"] == "Location is not active"
        ghl_sim.knobs.location_inactive = []
        assert (await _refresh(client, ghl_sim.knobs,
                               grant["refresh_token"])).status_code == 200


async def test_asking_for_the_wrong_token_kind_is_refused(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        code = await _authorize(client, ghl_sim.knobs)
        answer = await _exchange(client, ghl_sim.knobs, code, user_type="Company")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


async def test_agency_install_mints_location_tokens_for_approved_locations_only(
        ghl_sim: Any) -> None:
    ghl_sim.knobs.install_user_type = "Company"
    ghl_sim.knobs.approved_locations = ["loc_a", "loc_b"]
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        code = await _authorize(client, ghl_sim.knobs, scope=AGENCY_SCOPES)
        company = (await _exchange(client, ghl_sim.knobs, code, user_type="Company")).json()
        assert company["userType"] == "Company"
        assert company["approvedLocations"] == ["loc_a", "loc_b"]
        assert company["isBulkInstallation"] is True
        assert "locationId" not in company

        async def mint(location_id: str, token: str = company["access_token"],
                       **headers: str) -> httpx.Response:
            return await client.post(
                "/oauth/locationToken", data={"companyId": "comp_sandbox_1",
                                              "locationId": location_id},
                headers={**_api_headers(token), **headers})

        minted = await mint("loc_b")
        assert minted.status_code == 200
        assert minted.json()["locationId"] == "loc_b"
        assert "refresh_token" not in minted.json()  # as the spec's response documents
        location_token = minted.json()["access_token"]
        assert (await _upsert(client, location_token, "loc_b")).status_code == 200
        assert (await _upsert(client, location_token, "loc_a")).status_code == 403
        # The company token is not a location token.
        assert (await _upsert(client, company["access_token"], "loc_b")).status_code == 401

        assert (await mint("loc_z")).status_code == 400
        assert (await mint("loc_a", token=location_token)).status_code == 401
        unversioned = await client.post(
            "/oauth/locationToken", data={"companyId": "comp_sandbox_1", "locationId": "loc_a"},
            headers={"Authorization": f"Bearer {company['access_token']}"})
        assert unversioned.status_code == 401
        assert unversioned.json()["message"] == "version header was not found."

        listed = await client.get(
            "/oauth/installedLocations",
            params={"companyId": "comp_sandbox_1", "appId": ghl_sim.knobs.app_id},
            headers=_api_headers(company["access_token"]))
        assert listed.status_code == 200
        assert [loc["_id"] for loc in listed.json()["locations"]] == ["loc_a", "loc_b"]
        assert listed.json()["count"] == 2
        view = await _oauth_view(client)
    assert view["location_tokens"] == 1
    assert set(view["tokens"]) == {"loc_b"}
    assert set(view["company_tokens"]) == {"comp_sandbox_1"}


async def test_agency_token_without_oauth_scope_cannot_mint(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        company = (await client.post("/_sandbox/tokens/issue", json={
            "userType": "Company", "scope": SCOPES})).json()
        answer = await client.post(
            "/oauth/locationToken",
            data={"companyId": "comp_sandbox_1", "locationId": "loc_sandbox_1"},
            headers=_api_headers(company["access_token"]))
    assert answer.status_code == 401
    assert answer.json()["message"] == "The token is not authorized for this scope."
