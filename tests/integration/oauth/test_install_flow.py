"""A person installs the app in a browser; the sender then asks for the token over RPC."""

from __future__ import annotations

import json
import time

from castghl.common.oauth_client import OAuthClient

from .conftest import Running, Stack, install

LOCATION = "loc_sandbox_1"


def substrings(secret: str, size: int = 8) -> set[str]:
    return {secret[i:i + size] for i in range(len(secret) - size + 1)}


async def test_browser_install_stores_encrypted_tokens_and_the_rpc_hands_out_a_working_one(
        stack: Stack, service: Running, oauth: OAuthClient) -> None:
    page = await install(service.url)

    assert page.status_code == 200, page.text
    hops = [str(r.url) for r in page.history]
    assert hops[0].startswith(f"{service.url}/oauth/install")
    assert hops[1].startswith(f"{stack.ghl.url}/v2/oauth/chooselocation")
    assert LOCATION in page.text
    assert "SMS Provider" in page.text
    issued = stack.ghl.counters()["tokens"][LOCATION]
    secrets = (issued["access_token"], issued["refresh_token"])
    for secret in secrets:
        assert secret[:20] not in page.text

    doc = stack.docs()[f"location:{LOCATION}"]
    stored = json.dumps(doc, default=str)
    for secret in secrets:
        assert not any(part in stored for part in substrings(secret))
    assert (doc["kind"], doc["status"], doc["version"], doc["user_type"]) == (
        "location", "active", 1, "Location")
    assert (doc["lease_until_ms"], doc["lease_owner"]) == (0, "")
    assert doc["expires_at_ms"] > time.time() * 1000 + 86_000_000
    assert "contacts.write" in doc["scopes"]

    token = await oauth.token(LOCATION)
    assert token == issued["access_token"]
    assert stack.ghl.token_works(token, LOCATION)


async def test_an_agency_install_stores_one_installation_per_approved_location(
        stack: Stack, service: Running, oauth: OAuthClient) -> None:
    approved = ["loc_a", "loc_b", "loc_c"]
    stack.ghl.knobs.install_user_type = "Company"
    stack.ghl.knobs.approved_locations = approved

    page = await install(service.url, agency=True)

    assert page.status_code == 200, page.text
    assert all(location in page.text for location in approved)
    docs = stack.docs()
    assert set(docs) == {"company:comp_sandbox_1", *(f"location:{loc}" for loc in approved)}
    assert docs["company:comp_sandbox_1"]["user_type"] == "Company"
    for location in approved:
        assert docs[f"location:{location}"]["token_source"] == "company"
        token = await oauth.token(location)
        assert stack.ghl.token_works(token, location)
    assert stack.ghl.counters()["location_tokens"] == len(approved)
