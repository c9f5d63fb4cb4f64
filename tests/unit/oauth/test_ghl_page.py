"""The location settings page inside GHL over HTTP: only GHL's encrypted context says who
asks and for which location; admins change the sender ID and Cast key (checked, audited),
others only read; nothing identifies a location but the decrypted context."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from castghl.common import answers
from castghl.common.cryptojs import encrypt
from castghl.common.messages import InstallStatus
from castghl.oauth.admin import SettingsEditor
from castghl.oauth.ghl_page.routes import ghl_page_router
from castghl.oauth.installation import LocationPrefs, location_key
from castghl.oauth.tenancy import DefaultKeyFor

from .fakes import Clock, FakeNotices, FakeSenderOps, FakeStore, installation
from .test_admin import CAST_KEY, FakeAccounts, FakeAudit, checks

SSO_KEY = "app-shared-secret-0123"
GHL = "https://app.gohighlevel.com https://*.leadconnectorhq.com"


def context(location: str | None = "loc1", role: str = "admin", *,
            secret: str = SSO_KEY, **more: Any) -> str:
    data = {"userId": "u7", "companyId": "co1", "role": role, "type": "location",
            "activeLocation": location, "userName": "Ana", **more}
    return encrypt(json.dumps(data).encode(), secret)


class Page:
    def __init__(self, client: httpx.AsyncClient, store: FakeStore, audit: FakeAudit) -> None:
        self.client, self.store, self.audit = client, store, audit

    async def state(self, key: str) -> httpx.Response:
        return await self.client.post("/ghl/settings/state", json={"key": key})

    async def save(self, key: str, **fields: Any) -> httpx.Response:
        return await self.client.post("/ghl/settings/save", json={"key": key, **fields})


def app_with(store: FakeStore, audit: FakeAudit, sso_key: str | None = SSO_KEY) -> FastAPI:
    everyone = DefaultKeyFor(everyone=True)
    # loc1's own Cast account lists CASTPH and CASTSIM only.
    sender_ids = checks(FakeAccounts({CAST_KEY: [("CASTPH", "sms"), ("CASTSIM", "sim")]}))
    editor = SettingsEditor(store, sender_ids, FakeNotices(), audit, everyone, Clock())
    sender = FakeSenderOps("admin-key-0123456789")
    sender.usage = [{"location_id": "loc1", "day": "2026-11-24", "parts_sent": 3,
                     "delivered": 2, "failed": 1},
                    {"location_id": "loc2", "day": "2026-11-24", "parts_sent": 50,
                     "delivered": 50, "failed": 0}]
    app = FastAPI()
    answers.install(app)
    app.include_router(ghl_page_router(editor, sender.api(), sso_key=sso_key,
                                       frame_ancestors=GHL, default_key_for=everyone,
                                       sender_ids=sender_ids, clock=Clock()))
    return app


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    store, audit = FakeStore(), FakeAudit()
    store.put(installation("loc1", prefs=LocationPrefs(cast_api_key=CAST_KEY,
                                                       sender_id="CASTPH")))
    store.put(installation("loc2", prefs=LocationPrefs(sender_id="OTHER")))
    store.put(installation("gone", status=InstallStatus.UNINSTALLED, access="", refresh=None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_with(store, audit)),
                                 base_url="https://oauth.test") as client:
        yield Page(client, store, audit)


async def test_the_page_may_be_framed_by_ghl_only_and_runs_only_its_own_script(
        page: Page) -> None:
    answer = await page.client.get("/ghl/settings")
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert f"frame-ancestors {GHL}" in policy
    assert "script-src 'self'" in policy
    assert "set-cookie" not in answer.headers
    assert '<script src="/ghl/settings.js">' in answer.text
    script = await page.client.get("/ghl/settings.js")
    assert "REQUEST_USER_DATA" in script.text
    assert script.headers["content-type"].startswith("text/javascript")


async def test_an_admin_sees_the_state_of_the_location_open_in_ghl(page: Page) -> None:
    answer = await page.state(context("loc1"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "location_id": "loc1", "state": "active", "state_name": "Active",
        "sender_id": "CASTPH", "cast_account": "this location's own Cast account",
        "last_7_days": {"parts_sent": 3, "delivered": 2, "failed": 1}, "can_edit": True}
    assert CAST_KEY not in answer.text


async def test_an_admin_sets_a_sender_id_the_account_has_and_it_is_audited(
        page: Page) -> None:
    answer = await page.save(context("loc1"), sender_id="CASTSIM")
    assert answer.status_code == 200, answer.text
    assert answer.json()["sender_id"] == "CASTSIM"
    [entry] = page.audit.entries
    assert (entry["actor"], entry["location_id"], entry["changes"]) == (
        "ghl-user:u7", "loc1", {"sender_id": "CASTSIM"})


async def test_a_sender_id_the_account_lacks_is_refused_with_the_reason(page: Page) -> None:
    answer = await page.save(context("loc1"), sender_id="TYPO")
    assert answer.status_code == 422
    assert "not a sender ID of this location" in answer.json()["detail"]
    assert page.store.docs[location_key("loc1")].prefs.sender_id == "CASTPH"


async def test_a_new_cast_key_is_stored_and_never_shown(page: Page) -> None:
    new_key = "cast_" + "e" * 64
    answer = await page.save(context("loc2"), sender_id="OTHER", cast_api_key=new_key)
    assert answer.status_code == 200, answer.text
    assert new_key not in answer.text
    assert page.store.docs[location_key("loc2")].prefs.cast_api_key == new_key
    assert page.audit.entries[-1]["changes"] == {"cast_api_key": "set"}


async def test_a_user_who_is_not_an_admin_only_reads(page: Page) -> None:
    state = await page.state(context("loc1", role="user"))
    assert state.json()["can_edit"] is False
    refused = await page.save(context("loc1", role="user"), sender_id="CASTSIM")
    assert refused.status_code == 403
    assert page.store.docs[location_key("loc1")].prefs.sender_id == "CASTPH"
    assert page.audit.entries == []


async def test_only_the_decrypted_context_names_the_location(page: Page) -> None:
    # Another location's user sees that location; a body naming another one is refused.
    other = await page.state(context("loc2"))
    assert other.json()["location_id"] == "loc2"
    assert other.json()["last_7_days"]["parts_sent"] == 50
    smuggled = await page.client.post("/ghl/settings/state",
                                      json={"key": context("loc2"), "location_id": "loc1"})
    assert smuggled.status_code == 400


@pytest.mark.parametrize(("key", "status"), [
    (context("loc1", secret="another-apps-secret"), 401),  # not encrypted for this app
    ("U2FsdGVkX1" + "A" * 40, 401),
    (context(None), 403),  # an agency view, no location open
    (context("gone"), 404),  # uninstalled
    (context("nowhere"), 404),
])
async def test_what_does_not_decrypt_or_has_no_installed_location_is_refused(
        page: Page, key: str, status: int) -> None:
    answer = await page.state(key)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"code", "detail"}


async def test_without_ghl_sso_key_the_page_is_off() -> None:
    store, audit = FakeStore(), FakeAudit()
    app = app_with(store, audit, sso_key=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="https://oauth.test") as client:
        assert (await client.get("/ghl/settings")).status_code == 503
        answer = await client.post("/ghl/settings/state", json={"key": context("loc1")})
        assert answer.status_code == 404
