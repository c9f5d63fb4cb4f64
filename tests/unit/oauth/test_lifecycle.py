"""INSTALL / UNINSTALL events: mint under a company token, tombstone on uninstall."""

from __future__ import annotations

import pytest

from castghl.common.errors import AccountError
from castghl.common.ghl.webhooks import AppInstall, AppUninstall
from castghl.common.worker import Done
from castghl.oauth.installation import LocationPrefs, Status, company_key, location_key
from castghl.oauth.lifecycle import Lifecycle, LifecycleEvent
from castghl.oauth.refresh import TokenService

from .fakes import NOW, Clock, FakeGhl, FakeStore, installation

CAST_KEY = "cast_" + "9" * 64


def lifecycle(store: FakeStore, ghl: FakeGhl) -> Lifecycle:
    return Lifecycle(store, TokenService(store, ghl, "p1", clock=Clock()), Clock())


def event(**fields: str) -> LifecycleEvent:
    return LifecycleEvent.model_validate(fields)


async def test_install_under_a_stored_company_token_mints_the_location() -> None:
    store, ghl = FakeStore(), FakeGhl()
    store.put(installation(kind="company", access="company-access"))
    outcome = await lifecycle(store, ghl).process(
        event(type="INSTALL", companyId="co1", locationId="loc7"), 1)
    assert outcome == Done()
    minted = store.docs[location_key("loc7")]
    assert minted.minted
    assert minted.status is Status.ACTIVE
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
    store.put(installation(kind="company", status=Status.NEEDS_REAUTH))
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
    assert tomb.status is Status.UNINSTALLED
    assert tomb.uninstalled_at == NOW
    assert (tomb.access_token, tomb.refresh_token, tomb.prefs.cast_api_key) == (None,) * 3
    assert tomb.prefs.sender_id == "CASTPH"


async def test_uninstall_of_a_company_removes_it_and_the_locations_minted_from_it() -> None:
    store, ghl = FakeStore(), FakeGhl()
    store.put(installation(kind="company"))
    store.put(installation("minted", minted=True, refresh=None))
    own = store.put(installation("own"))  # installed on its own: stays
    await lifecycle(store, ghl).process(event(type="UNINSTALL", companyId="co1"), 1)
    assert store.docs[company_key("co1")].status is Status.UNINSTALLED
    assert store.docs[location_key("minted")].status is Status.UNINSTALLED
    assert store.docs[own.key] == own


def test_the_queue_message_reads_what_the_gateway_publishes() -> None:
    install = AppInstall(type="INSTALL", company_id="co1", location_id="loc1")
    parsed = LifecycleEvent.model_validate_json(install.model_dump_json())
    assert parsed.root == install
    uninstall = AppUninstall(type="UNINSTALL", location_id="loc1")
    assert LifecycleEvent.model_validate_json(uninstall.model_dump_json()).root == uninstall
