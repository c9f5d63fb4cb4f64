"""INSTALL / UNINSTALL events: mint under a company token, tombstone on uninstall."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from castghl.common.errors import AccountError
from castghl.common.ghl.webhooks import AppInstall, AppUninstall
from castghl.common.messages import InstallStatus
from castghl.common.worker import Done
from castghl.oauth.installation import LocationPrefs, company_key, location_key
from castghl.oauth.lifecycle import IGNORED, Lifecycle, LifecycleEvent
from castghl.oauth.refresh import TokenService

from .fakes import NOW, Clock, FakeEventLog, FakeGhl, FakeNotices, FakeStore, installation

CAST_KEY = "cast_" + "9" * 64


APP_ID = "app-cast-sms"


def lifecycle(store: FakeStore, ghl: FakeGhl, events: FakeEventLog | None = None,
              notices: FakeNotices | None = None) -> Lifecycle:
    return Lifecycle(store, TokenService(store, ghl, "p1", clock=Clock()),
                     events or FakeEventLog(), notices or FakeNotices(), app_id=APP_ID,
                     clock=Clock())


def event(**fields: str) -> LifecycleEvent:
    return LifecycleEvent.model_validate({"appId": APP_ID, **fields})


def at(seconds: float) -> str:
    """An event timestamp `seconds` after the fakes' NOW, as GHL writes it."""
    return (NOW + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def test_install_under_a_stored_company_token_mints_the_location() -> None:
    store, ghl = FakeStore(), FakeGhl()
    store.put(installation(kind="company", access="company-access"))
    outcome = await lifecycle(store, ghl).process(
        event(type="INSTALL", companyId="co1", locationId="loc7"), 1)
    assert outcome == Done()
    minted = store.docs[location_key("loc7")]
    assert minted.minted
    assert minted.status is InstallStatus.ACTIVE
    assert ghl.mints == [("company-access", "loc7")]


@pytest.mark.parametrize("fields", [
    {"type": "INSTALL", "companyId": "co1", "locationId": "loc7"},  # no company token
    {"type": "INSTALL", "companyId": "co1"},  # agency-level: the callback stores it
    {"type": "INSTALL", "locationId": "loc7"},
], ids=["no-company-token", "agency-level", "no-company"])
async def test_install_with_nothing_to_mint_from_is_acknowledged(fields: dict[str, str]) -> None:
    store, ghl = FakeStore(), FakeGhl()
    assert await lifecycle(store, ghl).process(event(**fields), 1) == Done()
    assert store.docs == {}
    assert ghl.mints == []


async def test_install_of_a_location_already_stored_mints_nothing() -> None:
    store, ghl = FakeStore(), FakeGhl()
    store.put(installation(kind="company"))
    before = store.put(installation("loc7"))
    await lifecycle(store, ghl).process(event(type="INSTALL", companyId="co1",
                                              locationId="loc7"), 1)
    assert store.docs[before.key] == before
    assert ghl.mints == []


async def test_install_under_a_company_needing_reauth_fails_as_an_account_problem() -> None:
    store, ghl = FakeStore(), FakeGhl()
    store.put(installation(kind="company", status=InstallStatus.NEEDS_REAUTH))
    with pytest.raises(AccountError) as failed:
        await lifecycle(store, ghl).process(event(type="INSTALL", companyId="co1",
                                                  locationId="loc7"), 1)
    assert failed.value.code == "needs_reauth"


async def test_uninstall_of_a_location_deletes_its_secrets_and_keeps_a_tombstone() -> None:
    store, ghl = FakeStore(), FakeGhl()
    store.put(installation(prefs=LocationPrefs(sender_id="CASTPH", cast_api_key=CAST_KEY)))
    for _ in range(2):  # delivered twice: same result
        await lifecycle(store, ghl).process(event(type="UNINSTALL", locationId="loc1"), 1)
    tomb = store.docs[location_key("loc1")]
    assert tomb.status is InstallStatus.UNINSTALLED
    assert tomb.uninstalled_at == NOW
    assert (tomb.access_token, tomb.refresh_token, tomb.prefs.cast_api_key) == (None,) * 3
    assert tomb.prefs.sender_id == "CASTPH"


async def test_uninstall_of_a_company_removes_it_and_the_locations_minted_from_it() -> None:
    store, ghl = FakeStore(), FakeGhl()
    store.put(installation(kind="company"))
    store.put(installation("minted", minted=True, refresh=None))
    own = store.put(installation("own"))  # installed on its own: stays
    await lifecycle(store, ghl).process(event(type="UNINSTALL", companyId="co1"), 1)
    assert store.docs[company_key("co1")].status is InstallStatus.UNINSTALLED
    assert store.docs[location_key("minted")].status is InstallStatus.UNINSTALLED
    assert store.docs[own.key] == own


def test_the_queue_message_reads_what_the_gateway_publishes() -> None:
    install = AppInstall(type="INSTALL", company_id="co1", location_id="loc1")
    parsed = LifecycleEvent.model_validate_json(install.model_dump_json())
    assert parsed.root == install
    uninstall = AppUninstall(type="UNINSTALL", location_id="loc1")
    assert LifecycleEvent.model_validate_json(uninstall.model_dump_json()).root == uninstall


async def test_another_apps_uninstall_changes_nothing_and_is_counted() -> None:
    store, ghl = FakeStore(), FakeGhl()
    company = store.put(installation(kind="company"))
    location = store.put(installation("loc1"))
    before = IGNORED.labels("other_app")._value.get()
    for fields in ({"locationId": "loc1"}, {"companyId": "co1"}):
        outcome = await lifecycle(store, ghl).process(
            event(type="UNINSTALL", appId="someone-elses-app", **fields), 1)
        assert outcome == Done()
    assert store.docs[company.key] == company
    assert store.docs[location.key] == location
    assert IGNORED.labels("other_app")._value.get() == before + 2


async def test_an_event_without_an_app_id_is_not_ours() -> None:
    store, ghl = FakeStore(), FakeGhl()
    location = store.put(installation("loc1"))
    await lifecycle(store, ghl).process(
        LifecycleEvent.model_validate({"type": "UNINSTALL", "locationId": "loc1"}), 1)
    assert store.docs[location.key] == location


async def test_a_repeated_webhook_id_is_handled_once() -> None:
    store, ghl, events = FakeStore(), FakeGhl(), FakeEventLog()
    store.put(installation(kind="company", access="company-access"))
    first = event(type="INSTALL", companyId="co1", locationId="loc7", webhookId="wh-1",
                  timestamp=at(10))
    await lifecycle(store, ghl, events).process(first, 1)
    # An uninstall in between, then GHL's retry of the INSTALL: it must not mint again.
    await lifecycle(store, ghl, events).process(
        event(type="UNINSTALL", locationId="loc7", webhookId="wh-2", timestamp=at(20)), 1)
    await lifecycle(store, ghl, events).process(first, 1)
    assert len(ghl.mints) == 1
    assert store.docs[location_key("loc7")].status is InstallStatus.UNINSTALLED


async def test_a_late_install_after_an_uninstall_mints_nothing() -> None:
    store, ghl = FakeStore(), FakeGhl()
    store.put(installation(kind="company", access="company-access"))
    store.put(installation("loc7", minted=True, refresh=None))
    await lifecycle(store, ghl).process(
        event(type="UNINSTALL", locationId="loc7", timestamp=at(20)), 1)
    await lifecycle(store, ghl).process(
        event(type="INSTALL", companyId="co1", locationId="loc7", timestamp=at(10)), 1)
    assert ghl.mints == []
    assert store.docs[location_key("loc7")].status is InstallStatus.UNINSTALLED


async def test_an_uninstall_older_than_a_reinstall_is_ignored() -> None:
    store, ghl = FakeStore(), FakeGhl()
    reinstalled = store.put(replace(installation("loc1"), changed_at=NOW + timedelta(seconds=30)))
    before = IGNORED.labels("stale")._value.get()
    await lifecycle(store, ghl).process(
        event(type="UNINSTALL", locationId="loc1", timestamp=at(10)), 1)
    assert store.docs[reinstalled.key] == reinstalled
    assert IGNORED.labels("stale")._value.get() == before + 1


async def test_changes_are_announced_to_the_senders() -> None:
    store, ghl, notices = FakeStore(), FakeGhl(), FakeNotices()
    store.put(installation(kind="company", access="company-access"))
    store.put(installation("loc1"))
    run = lifecycle(store, ghl, notices=notices)
    await run.process(event(type="INSTALL", companyId="co1", locationId="loc7"), 1)
    await run.process(event(type="UNINSTALL", locationId="loc1"), 1)
    await run.process(event(type="UNINSTALL", companyId="co1"), 1)
    assert notices.sent == [("location", "loc7"), ("location", "loc1"), ("company", "co1")]
