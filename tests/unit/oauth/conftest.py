"""The `console` fixture: the console's routes over ASGI, on in-memory installations and a
faked sender operator API (`app.state.sender`), with helpers to sign in."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from castghl.common.messages import InstallStatus
from castghl.common.topology import Topology
from castghl.oauth.admin import SettingsEditor
from castghl.oauth.console.ops_routes import OwnParts
from castghl.oauth.console.routes import console_router
from castghl.oauth.console.session import Sessions, Throttle
from castghl.oauth.installation import LocationPrefs
from castghl.oauth.tenancy import DefaultKeyFor
from castghl.sandbox.server import free_port

from .fakes import Clock, FakeNotices, FakeSenderOps, FakeStore, installation
from .test_admin import CAST_KEY, DEFAULT_CAST_KEY, FakeAccounts, FakeAudit, checks

KEY = "console-admin-key-0123456789"


@pytest.fixture
async def console() -> AsyncIterator[httpx.AsyncClient]:
    store = FakeStore()
    store.put(installation("loc1", prefs=LocationPrefs(cast_api_key=CAST_KEY,
                                                       sender_id="CASTPH")))
    store.put(installation("loc2"))
    store.put(installation("gone", status=InstallStatus.UNINSTALLED, access="", refresh=None))
    # The clock says 2026-11-25 (Manila): the 18th is outside the last 7 days, the 20th in.
    sender = FakeSenderOps(KEY)
    sender.usage = [
        {"location_id": "loc1", "day": "2026-11-18", "parts_sent": 100, "delivered": 100,
         "failed": 0},
        {"location_id": "loc1", "day": "2026-11-20", "parts_sent": 7, "delivered": 5,
         "failed": 1}]
    app = FastAPI()
    # loc1's own Cast account lists CASTPH and CASTSIM; no other sender ID is accepted.
    sender_ids = checks(FakeAccounts({CAST_KEY: [("CASTPH", "sms"), ("CASTSIM", "sim")]}))
    everyone = DefaultKeyFor(everyone=True)
    audit = FakeAudit()
    editor = SettingsEditor(store, sender_ids, FakeNotices(), audit, everyone, Clock())
    own = OwnParts(broker_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/",
                   lifecycle=Topology().lifecycle, checks={"mongo": _ready},
                   gateway_url=f"http://127.0.0.1:{free_port()}", http=httpx.AsyncClient())
    app.include_router(console_router(store, sender.api(), Sessions(KEY), throttle=Throttle(),
                                      editor=editor, audit=audit, own=own,
                                      default_key_for=everyone, default_api_key=DEFAULT_CAST_KEY,
                                      sender_ids=sender_ids, clock=Clock()))
    app.state.sender, app.state.audit = sender, audit
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="https://console.test") as client:
        yield client
    await own.http.aclose()


async def _ready() -> bool:
    return True


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, password: str = KEY) -> httpx.Response:
    form = await client.get("/console/sign-in")
    return await client.post("/console/sign-in",
                             data={"csrf": csrf_of(form.text), "password": password})
