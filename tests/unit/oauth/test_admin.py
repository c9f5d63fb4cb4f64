"""The admin API: bearer auth, no secrets out, strict input, nothing changed on bad input."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from castghl.common import answers
from castghl.common.cast.models import CastSenderId, CastSenderIds
from castghl.common.errors import AccountError
from castghl.common.messages import InstallStatus
from castghl.oauth.admin import SenderIdCheck, admin_router
from castghl.oauth.installation import LocationPrefs, location_key
from castghl.oauth.tenancy import DefaultKeyFor, location_settings

from .fakes import Clock, FakeNotices, FakeStore, installation

KEY = "admin-key-0123456789abcdef"
DEFAULT_CAST_KEY = "cast_default_" + "0" * 20


class FakeAccounts:
    """Sender IDs per Cast key, as Cast lists them; a key it does not know is refused.
    None: an account whose API has no such list."""

    def __init__(self, listed: dict[str, list[tuple[str, str]] | None] | None = None) -> None:
        self.listed = listed or {}
        self.asked: list[str] = []

    async def sender_ids(self, *, api_key: str) -> CastSenderIds | None:
        self.asked.append(api_key)
        if api_key not in self.listed:
            return None
        entries = self.listed[api_key]
        if entries is None:
            raise AccountError("401", code="cast_invalid_api_key")
        return CastSenderIds(sender_ids=[CastSenderId(sender_id=s, channel=c)
                                         for s, c in entries])


class FakeAudit:
    """The audit log as a list, newest last; `recent` answers as MongoAuditLog does."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def record(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)

    async def recent(self, location_id: str | None, limit: int) -> list[dict[str, Any]]:
        found = [e for e in reversed(self.entries)
                 if location_id is None or e["location_id"] == location_id]
        return [{**e, "at": e["at"].isoformat()} for e in found[:limit]]


class FakeUsage:
    """Rows per location, as the sender's `usage` collection holds them."""

    def __init__(self, rows: dict[str, list[dict[str, object]]] | None = None) -> None:
        self.rows = rows or {}
        self.asked: list[tuple[str, str, str]] = []

    async def days(self, location_id: str, first: str, last: str) -> list[dict[str, object]]:
        self.asked.append((location_id, first, last))
        return [row for row in self.rows.get(location_id, [])
                if first <= str(row["day"]) <= last]


def checks(accounts: FakeAccounts | None = None) -> SenderIdCheck:
    return SenderIdCheck(accounts or FakeAccounts(), DEFAULT_CAST_KEY)
AUTH = {"Authorization": f"Bearer {KEY}"}
CAST_KEY = "cast_" + "0123456789abcdef" * 4


@pytest.fixture
def store() -> FakeStore:
    store = FakeStore()
    store.put(installation("loc1", prefs=LocationPrefs(cast_api_key=CAST_KEY)))
    store.put(installation("loc2", prefs=LocationPrefs(inbound_numbers=("+639181112222",))))
    store.put(installation("gone", status=InstallStatus.UNINSTALLED, access="", refresh=None))
    return store


@pytest.fixture
def audit() -> FakeAudit:
    return FakeAudit()


@pytest.fixture
async def client(store: FakeStore, audit: FakeAudit) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    answers.install(app)
    app.include_router(admin_router(store, KEY, DefaultKeyFor(everyone=True), FakeNotices(),
                                    sender_ids=checks(), usage=FakeUsage(), audit=audit,
                                    clock=Clock()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://admin") as client:
        yield client


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": KEY},
    {"Authorization": f"Basic {KEY}"}, {"Authorization": f"Bearer {KEY}x"},
], ids=["missing", "wrong", "no-scheme", "basic", "longer"])
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/admin/installations"), ("GET", "/admin/installations/loc1"),
    ("PUT", "/admin/installations/loc1"), ("GET", "/admin/audit"),
])
async def test_without_the_admin_key_nothing_is_shown_or_changed(
        client: httpx.AsyncClient, store: FakeStore, headers: dict[str, str], method: str,
        path: str) -> None:
    before = copy.deepcopy(store.docs)
    answer = await client.request(method, path, headers=headers, json={"sender_id": "X"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "ADMIN_API_KEY" in answer.json()["detail"]
    assert store.docs == before


async def test_the_list_shows_installations_without_secrets(client: httpx.AsyncClient) -> None:
    answer = await client.get("/admin/installations", headers=AUTH)
    assert answer.status_code == 200
    found = {i["location_id"]: i for i in answer.json()["installations"]}
    assert set(found) == {"loc1", "loc2", "gone"}
    assert found["loc1"]["settings"]["cast_api_key"] == "cast_…cdef"
    assert found["gone"]["status"] == "uninstalled"
    assert (found["loc1"]["state"], found["loc1"]["cast_key"],
            found["loc1"]["token_source"]) == ("active", "own", "install")
    assert found["gone"]["state"] == "uninstalled"
    for secret in (CAST_KEY, "access-0", "refresh-0"):
        assert secret not in answer.text


async def test_each_installation_shows_its_state_key_and_token_source(
        store: FakeStore) -> None:
    store.put(installation("minted", minted=True, refresh=None))
    store.put(installation("reauth", status=InstallStatus.NEEDS_REAUTH))
    app = FastAPI()
    # Only co9's locations may use the operator's default key: co1's have to bring one.
    app.include_router(admin_router(store, KEY, DefaultKeyFor(companies=frozenset({"co9"})),
                                    FakeNotices(), sender_ids=checks(), usage=FakeUsage(),
                                    audit=FakeAudit(), clock=Clock()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://admin") as client:
        listed = (await client.get("/admin/installations", headers=AUTH)).json()
    found = {i["location_id"]: (i["state"], i["cast_key"], i["token_source"])
             for i in listed["installations"]}
    assert found == {
        "loc1": ("active", "own", "install"),
        "loc2": ("not_set_up", "none", "install"),
        "minted": ("not_set_up", "none", "agency"),
        "reauth": ("needs_reauth", "none", "install"),
        "gone": ("uninstalled", "none", "install"),
    }


async def test_put_sets_settings_and_normalises_inbound_numbers(
        client: httpx.AsyncClient, store: FakeStore) -> None:
    new_key = "cast_" + "f" * 64
    answer = await client.put("/admin/installations/loc1", headers=AUTH, json={
        "sender_id": "CASTPH", "cast_api_key": new_key, "rate_limit_per_second": 5,
        "inbound_numbers": ["+63 917 123 4567", "0917-123-4567", "09991234567"]})
    assert answer.status_code == 200, answer.text
    assert new_key not in answer.text
    prefs = store.docs[location_key("loc1")].prefs
    assert prefs == LocationPrefs(sender_id="CASTPH", cast_api_key=new_key,
                                  rate_limit_per_second=5,
                                  inbound_numbers=("+639171234567", "+639991234567"))
    again = await client.get("/admin/installations/loc1", headers=AUTH)
    assert again.json()["settings"]["cast_api_key"] == "cast_…ffff"


async def test_put_only_changes_the_fields_given_and_null_removes_the_cast_key(
        client: httpx.AsyncClient, store: FakeStore) -> None:
    await client.put("/admin/installations/loc1", headers=AUTH, json={"sender_id": "A"})
    assert store.docs[location_key("loc1")].prefs.cast_api_key == CAST_KEY
    answer = await client.put("/admin/installations/loc1", headers=AUTH,
                              json={"cast_api_key": None})
    assert answer.status_code == 200
    assert store.docs[location_key("loc1")].prefs == LocationPrefs(sender_id="A")


async def test_a_stopped_location_shows_as_stopped_and_is_told_to_the_sender(
        client: httpx.AsyncClient, store: FakeStore) -> None:
    answer = await client.put("/admin/installations/loc1", headers=AUTH,
                              json={"sending": "stopped"})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["state"], answer.json()["settings"]["sending"]) == ("stopped",
                                                                            "stopped")
    inst = store.docs[location_key("loc1")]
    assert location_settings("loc1", inst, DefaultKeyFor(everyone=True)).stopped
    allowed = await client.put("/admin/installations/loc1", headers=AUTH,
                               json={"sending": None})
    assert (allowed.json()["state"], allowed.json()["settings"]["sending"]) == ("active",
                                                                              "allowed")
    assert not location_settings("loc1", store.docs[location_key("loc1")],
                                 DefaultKeyFor(everyone=True)).stopped


BAD: list[tuple[Any, int, str]] = [
    ({"sending": "paused"}, 422, "sending"),
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    ({"sender_id": "TWENTYONE-CHARACTERS1"}, 422, "sender_id"),
    ({"sender_id": ""}, 422, "sender_id"),
    ({"cast_api_key": "sk_live_123456789"}, 422, "cast_api_key"),
    ({"cast_api_key": "cast_"}, 422, "cast_api_key"),
    ({"rate_limit_per_second": 0}, 422, "rate_limit_per_second"),
    ({"rate_limit_per_second": 1001}, 422, "rate_limit_per_second"),
    ({"rate_limit_per_second": "5"}, 422, "rate_limit_per_second"),
    ({"inbound_numbers": ["09171234567", "0282345678"]}, 422, "entry 1"),
    ({"inbound_numbers": "09171234567"}, 422, "inbound_numbers"),
    ({"inbound_numbers": ["09181112222"]}, 409, "loc2"),
    ({"sender_id": "OK", "colour": "red"}, 422, "colour: unknown setting"),
]


@pytest.mark.parametrize(("body", "status", "says"), BAD)
async def test_bad_settings_are_refused_whole_and_change_nothing(
        client: httpx.AsyncClient, store: FakeStore, body: Any, status: int, says: str) -> None:
    before = copy.deepcopy(store.docs)
    content = body if isinstance(body, bytes) else None
    answer = await client.put("/admin/installations/loc1", headers=AUTH, content=content,
                              json=None if content is not None else body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]
    assert "sk_live" not in answer.text
    assert store.docs == before


@pytest.mark.parametrize(("location", "status"), [("unknown", 404), ("gone", 409)])
async def test_unknown_or_uninstalled_locations_cannot_be_configured(
        client: httpx.AsyncClient, store: FakeStore, location: str, status: int) -> None:
    before = copy.deepcopy(store.docs)
    answer = await client.put(f"/admin/installations/{location}", headers=AUTH,
                              json={"sender_id": "X"})
    assert answer.status_code == status
    assert store.docs == before
    if location == "unknown":
        assert (await client.get("/admin/installations/unknown",
                                 headers=AUTH)).status_code == 404


# --- sender IDs are checked with the location's Cast account ---------------------------------

async def admin_with(store: FakeStore, accounts: FakeAccounts,
                     default_key_for: DefaultKeyFor | None = None,
                     usage: FakeUsage | None = None) -> httpx.AsyncClient:
    app = FastAPI()
    answers.install(app)
    app.include_router(admin_router(store, KEY, default_key_for or DefaultKeyFor(everyone=True),
                                    FakeNotices(), sender_ids=checks(accounts),
                                    usage=usage or FakeUsage(), audit=FakeAudit(),
                                    clock=Clock()))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin")


async def test_a_sender_id_the_account_lacks_is_refused_and_nothing_changes(
        store: FakeStore) -> None:
    accounts = FakeAccounts({CAST_KEY: [("CASTPH", "sms"), ("CAST REPLY", "sim")]})
    before = copy.deepcopy(store.docs)
    async with await admin_with(store, accounts) as client:
        answer = await client.put("/admin/installations/loc1", headers=AUTH,
                                  json={"sender_id": "CASTPHH"})
    assert answer.status_code == 422
    assert "'CASTPHH' is not a sender ID of this location's Cast account" in answer.text
    assert "it has: CAST REPLY, CASTPH" in answer.text
    assert store.docs == before
    assert accounts.asked == [CAST_KEY]  # the location's own key


async def test_a_new_cast_key_must_work_and_carry_the_sender_id_kept(
        store: FakeStore) -> None:
    refused_key, other_key = "cast_" + "1" * 64, "cast_" + "2" * 64
    accounts = FakeAccounts({CAST_KEY: [("CASTPH", "sms")], refused_key: None,
                             other_key: [("OTHERID", "sms")]})
    async with await admin_with(store, accounts) as client:
        await client.put("/admin/installations/loc1", headers=AUTH, json={"sender_id": "CASTPH"})
        before = copy.deepcopy(store.docs)
        refused = await client.put("/admin/installations/loc1", headers=AUTH,
                                   json={"cast_api_key": refused_key})
        lacking = await client.put("/admin/installations/loc1", headers=AUTH,
                                   json={"cast_api_key": other_key})
        both = await client.put("/admin/installations/loc1", headers=AUTH,
                                json={"cast_api_key": other_key, "sender_id": "OTHERID"})
    assert (refused.status_code, refused.json()["code"]) == (422, "cast_key_refused")
    assert (lacking.status_code, lacking.json()["code"]) == (422, "invalid_settings")
    assert "'CASTPH' is not a sender ID" in lacking.json()["detail"]
    assert both.status_code == 200, both.text
    assert before[location_key("loc1")].prefs.cast_api_key == CAST_KEY
    assert store.docs[location_key("loc1")].prefs.cast_api_key == other_key


async def test_a_sender_id_the_account_has_is_set_with_20_characters_allowed(
        store: FakeStore) -> None:
    twenty = "CAST SMS PHILIPPINES"
    accounts = FakeAccounts({DEFAULT_CAST_KEY: [(twenty, "sim")]})
    async with await admin_with(store, accounts) as client:
        answer = await client.put("/admin/installations/loc2", headers=AUTH,
                                  json={"sender_id": twenty})
    assert answer.status_code == 200, answer.text
    assert store.docs[location_key("loc2")].prefs.sender_id == twenty
    assert accounts.asked == [DEFAULT_CAST_KEY]  # loc2 sends on the default key


async def test_the_key_set_in_the_same_request_is_the_one_asked(store: FakeStore) -> None:
    new_key = "cast_" + "f" * 64
    accounts = FakeAccounts({new_key: [("NEWID", "sms")], CAST_KEY: []})
    async with await admin_with(store, accounts) as client:
        answer = await client.put("/admin/installations/loc1", headers=AUTH,
                                  json={"sender_id": "NEWID", "cast_api_key": new_key})
    assert answer.status_code == 200, answer.text
    assert accounts.asked == [new_key]


async def test_a_key_cast_refuses_is_named_and_nothing_changes(store: FakeStore) -> None:
    accounts = FakeAccounts({CAST_KEY: None})
    async with await admin_with(store, accounts) as client:
        answer = await client.put("/admin/installations/loc1", headers=AUTH,
                                  json={"sender_id": "CASTPH"})
    assert answer.status_code == 422
    assert "Cast refused the location's Cast key" in answer.text


async def test_without_a_key_or_a_list_the_sender_id_is_taken_as_given(
        store: FakeStore) -> None:
    # loc2 may not use the default key here, and loc1's account lists no sender IDs.
    accounts = FakeAccounts({CAST_KEY: []})
    async with await admin_with(store, accounts, DefaultKeyFor()) as client:
        for location in ("loc1", "loc2"):
            answer = await client.put(f"/admin/installations/{location}", headers=AUTH,
                                      json={"sender_id": "ANYTHING"})
            assert answer.status_code == 200, answer.text
    assert accounts.asked == [CAST_KEY]


async def test_a_location_on_a_cast_sandbox_key_is_flagged(store: FakeStore) -> None:
    store.put(installation("trial", prefs=LocationPrefs(cast_api_key="cast_test_" + "9" * 64)))
    async with await admin_with(store, FakeAccounts()) as client:
        listed = (await client.get("/admin/installations", headers=AUTH)).json()
    flagged = {i["location_id"]: i["cast_sandbox"] for i in listed["installations"]}
    assert flagged == {"loc1": False, "loc2": False, "gone": False, "trial": True}


# --- usage, per Philippine day ------------------------------------------------------------------

def row(day: str, parts: int, delivered: int, failed: int) -> dict[str, object]:
    return {"day": day, "parts_sent": parts, "delivered": delivered, "failed": failed}


async def test_usage_shows_each_day_and_the_totals_to_bill_by(store: FakeStore) -> None:
    usage = FakeUsage({"loc1": [row("2026-10-01", 9, 9, 0), row("2026-11-02", 5, 3, 1),
                                row("2026-11-03", 2, 1, 1)],
                       "loc2": [row("2026-11-02", 100, 100, 0)]})
    async with await admin_with(store, FakeAccounts(), usage=usage) as client:
        answer = await client.get("/admin/installations/loc1/usage", headers=AUTH,
                                  params={"since": "2026-11-01", "until": "2026-11-30"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["days"] == [row("2026-11-02", 5, 3, 1), row("2026-11-03", 2, 1, 1)]
    assert body["totals"] == {"parts_sent": 7, "delivered": 4, "failed": 2}
    assert body["timezone"] == "Asia/Manila"


async def test_usage_defaults_to_the_last_31_days_and_refuses_bad_days(
        store: FakeStore) -> None:
    usage = FakeUsage()
    async with await admin_with(store, FakeAccounts(), usage=usage) as client:
        assert (await client.get("/admin/installations/loc1/usage",
                                 headers=AUTH)).status_code == 200
        [(_, first, last)] = usage.asked
        assert (date.fromisoformat(last) - date.fromisoformat(first)).days == 30
        for params in ({"since": "1 Nov"}, {"since": "2026-11-30", "until": "2026-11-01"}):
            answer = await client.get("/admin/installations/loc1/usage", headers=AUTH,
                                      params=params)
            assert answer.status_code == 400
        assert (await client.get("/admin/installations/nobody/usage",
                                 headers=AUTH)).status_code == 404
        assert (await client.get("/admin/installations/loc1/usage")).status_code == 401


async def test_a_change_is_audited_with_its_values_but_never_a_key(
        client: httpx.AsyncClient, audit: FakeAudit) -> None:
    new_key = "cast_" + "fedcba9876543210" * 4
    answer = await client.put("/admin/installations/loc2", headers=AUTH,
                              json={"rate_limit_per_second": 5, "cast_api_key": new_key})
    assert answer.status_code == 200
    await client.put("/admin/installations/loc1", headers=AUTH, json={"cast_api_key": None})
    trail = (await client.get("/admin/audit", headers=AUTH)).json()["entries"]
    assert [(e["location_id"], e["changes"], e["actor"]) for e in trail] == [
        ("loc1", {"cast_api_key": "cleared"}, "admin-api"),
        ("loc2", {"cast_api_key": "set", "rate_limit_per_second": 5}, "admin-api")]
    assert new_key not in str(trail)
    assert CAST_KEY not in str(trail)
    only = (await client.get("/admin/audit?location_id=loc2", headers=AUTH)).json()["entries"]
    assert [e["location_id"] for e in only] == ["loc2"]


async def test_a_refused_change_leaves_no_audit_entry(client: httpx.AsyncClient,
                                                      audit: FakeAudit) -> None:
    answer = await client.put("/admin/installations/gone", headers=AUTH,
                              json={"sender_id": "CASTPH"})
    assert answer.status_code == 409
    assert audit.entries == []
