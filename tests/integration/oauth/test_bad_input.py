"""Bad input gets a clear 4xx and changes nothing (DESIGN.md invariant 7) — checked
against what MongoDB actually holds afterwards."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from castghl.oauth.install_state import StateSigner
from castghl.sandbox.ghl.knobs import DEFAULT_CLIENT_SECRET

from .conftest import AUTH, Running, Stack, browser, install

LOCATION = "loc_sandbox_1"


async def authorized_callback(service: Running) -> str:
    """The callback URL GHL's chooser sends the browser to (not yet followed)."""
    async with httpx.AsyncClient(timeout=15) as client:
        ours = await client.get(f"{service.url}/oauth/install")
        ghl = await client.get(ours.headers["location"])
    assert ghl.status_code == 302
    return str(ghl.headers["location"])


def with_state(callback: str, state: str | None) -> str:
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.pop("state")
    if state is not None:
        query["state"] = state
    return str(httpx.URL(f"{parts.scheme}://{parts.netloc}{parts.path}", params=query))


def old_state() -> str:
    """Correctly signed, but issued an hour ago: a stale install link."""
    return StateSigner(DEFAULT_CLIENT_SECRET, 900, clock=lambda: time.time() - 3600).issue()


@pytest.mark.parametrize(("state", "says"), [
    ("1764070000.bm9uY2U.L.forgedmacforgedmacforgedmac", "invalid or has expired"),
    (old_state(), "invalid or has expired"),
], ids=["forged-state", "expired-state"])
async def test_a_callback_with_a_bad_state_spends_nothing_and_stores_nothing(
        stack: Stack, service: Running, state: str, says: str) -> None:
    callback = with_state(await authorized_callback(service), state)
    async with browser() as client:
        answer = await client.get(callback)
    assert answer.status_code == 400
    assert says in answer.text
    assert stack.ghl.counters()["code_exchanges"] == 0
    assert stack.docs() == {}


async def test_a_callback_without_a_code_is_refused(stack: Stack, service: Running) -> None:
    async with browser() as client:
        answer = await client.get(f"{service.url}/oauth/callback")
    assert answer.status_code == 400
    assert "no authorization code" in answer.text
    assert stack.docs() == {}


async def test_a_replayed_callback_is_refused_and_the_installation_is_untouched(
        stack: Stack, service: Running) -> None:
    callback = await authorized_callback(service)
    async with browser() as client:
        assert (await client.get(callback)).status_code == 200
        installed = stack.docs()
        replay = await client.get(callback)
    assert replay.status_code == 400
    assert "expired or was already used" in replay.text
    assert stack.docs() == installed


GARBAGE: list[tuple[dict[str, str], Any, int]] = [
    ({}, {"sender_id": "X"}, 401),
    ({"Authorization": "Bearer not-the-admin-key-at-all"}, {"sender_id": "X"}, 401),
    (AUTH, b"{{{", 400),
    (AUTH, b'"a string"', 400),
    (AUTH, {"sender_id": "WAY-TOO-LONG-SENDER-ID"}, 422),
    (AUTH, {"cast_api_key": "AKIA-not-a-cast-key"}, 422),
    (AUTH, {"rate_limit_per_second": -1}, 422),
    (AUTH, {"inbound_numbers": ["+1 415 555 0100"]}, 422),
    (AUTH, {"sender_id": "OK", "token": "smuggled"}, 422),
]


async def test_bad_admin_requests_get_a_clear_4xx_and_change_nothing(
        stack: Stack, service: Running) -> None:
    assert (await install(service.url)).status_code == 200
    before = stack.docs()
    async with httpx.AsyncClient(base_url=service.url) as client:
        for headers, body, status in GARBAGE:
            answer = await client.put(
                f"/admin/installations/{LOCATION}", headers=headers,
                content=body if isinstance(body, bytes) else None,
                json=None if isinstance(body, bytes) else body)
            case = f"{headers.keys()} {body!r}"
            assert answer.status_code == status, f"{case}: {answer.text}"
            assert answer.headers["content-type"] == "application/json", case
            assert answer.json()["detail"], case
            assert stack.docs() == before, case
