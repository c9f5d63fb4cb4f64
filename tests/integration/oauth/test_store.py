"""The installations repository on a real Mongo wire server: the sweep's paging and the
lifecycle's ordering rules, which the service's unit tests take from its fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from castghl.common.crypto import TokenCipher, generate_key
from castghl.common.ghl.oauth import TokenGrant
from castghl.common.messages import InstallStatus
from castghl.oauth.admin import audit_entry
from castghl.oauth.installation import location_key
from castghl.oauth.store import AUDIT_COLLECTION, COLLECTION, MongoAuditLog, MongoInstallations

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def grant(name: str, *, refresh: bool = True) -> TokenGrant:
    return TokenGrant(access_token=f"access-{name}",
                      refresh_token=f"refresh-{name}" if refresh else None)


@pytest.fixture
async def store(mongo_uri: str) -> AsyncIterator[MongoInstallations]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    installations = MongoInstallations(client.get_default_database()[COLLECTION],
                                       TokenCipher.from_setting(generate_key()))
    await installations.ensure_indexes()
    yield installations
    await client.close()


async def test_the_sweep_reads_every_refreshable_installation_oldest_first_in_pages(
        store: MongoInstallations) -> None:
    for n in range(30):  # minted agency sub-accounts: no refresh token, never swept
        await store.save_grant(grant(f"m{n}", refresh=False), kind="location",
                               location_id=f"minted{n:02d}", company_id="co1", minted=True,
                               now=NOW - timedelta(days=300))
    for n in range(45):
        await store.save_grant(grant(f"d{n}"), kind="location", location_id=f"direct{n:02d}",
                               company_id="co2", minted=False,
                               now=NOW - timedelta(days=40 + n % 5, seconds=n))
    await store.save_grant(grant("fresh"), kind="location", location_id="fresh",
                           company_id="co2", minted=False, now=NOW)

    seen: list[tuple[int, str]] = []
    after = None
    while page := await store.idle_keys(NOW - timedelta(days=30), 20, after):
        seen += page
        after = page[-1]

    assert sorted(key for _, key in seen) == sorted(location_key(f"direct{n:02d}")
                                                    for n in range(45))
    assert seen == sorted(seen)  # oldest refresh first, no page repeats another


async def test_an_uninstall_older_than_the_last_change_is_stale(
        store: MongoInstallations) -> None:
    await store.save_grant(grant("a"), kind="location", location_id="loc1", company_id="co1",
                           minted=False, now=NOW)
    key = location_key("loc1")
    assert await store.uninstall(key, NOW - timedelta(minutes=1), NOW) == "stale"
    assert (await store.get(key)).status is InstallStatus.ACTIVE  # type: ignore[union-attr]
    assert await store.uninstall(key, NOW + timedelta(minutes=1), NOW) == "uninstalled"
    assert await store.uninstall(location_key("nowhere"), NOW, NOW) == "unknown"
    # A mint answering an INSTALL older than that uninstall stores nothing.
    late = await store.save_grant(grant("late", refresh=False), kind="location",
                                  location_id="loc1", company_id="co1", minted=True, now=NOW,
                                  event_at=NOW)
    assert late is None
    assert (await store.get(key)).status is InstallStatus.UNINSTALLED  # type: ignore[union-attr]


async def test_an_agency_location_is_recorded_before_its_token_and_own_installs_stay(
        store: MongoInstallations) -> None:
    await store.save_grant(grant("own"), kind="location", location_id="own", company_id="co1",
                           minted=False, now=NOW - timedelta(days=1))
    for location in ("own", "pending"):
        await store.register_agency_location("co1", location, NOW)
    own, pending = await store.get(location_key("own")), await store.get(location_key("pending"))
    assert own is not None
    assert pending is not None
    assert (own.minted, own.refresh_token) == (False, "refresh-own")
    assert (pending.status, pending.minted, pending.access_token) == (
        InstallStatus.ACTIVE, True, None)
    assert await store.uninstall_company("co1", NOW + timedelta(seconds=1), NOW) == 1
    assert (await store.get(location_key("own"))).status is InstallStatus.ACTIVE  # type: ignore[union-attr]


async def test_the_audit_log_reads_newest_first_per_location(mongo_uri: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    audit = MongoAuditLog(client.get_default_database()[AUDIT_COLLECTION])
    await audit.ensure_indexes()
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    try:
        for minutes, location in ((0, "loc1"), (1, "loc2"), (2, "loc1")):
            await audit.record(audit_entry(location, {"sender_id": f"S{minutes}"},
                                           start + timedelta(minutes=minutes)))
        newest = await audit.recent("loc1", 10)
        assert [(e["changes"]["sender_id"], e["at"]) for e in newest] == [
            ("S2", (start + timedelta(minutes=2)).isoformat()),
            ("S0", start.isoformat())]
        assert [e["location_id"] for e in await audit.recent(None, 2)] == ["loc1", "loc2"]
        assert all("_id" not in e for e in newest)
    finally:
        await client.close()
