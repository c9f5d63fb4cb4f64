"""The token service: single-flight refresh, compare-and-set, and every failure answer."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from castghl.common.errors import (
    LocationInactive,
    NeedsReauth,
    NotInstalled,
    RetryableError,
    UpstreamUnavailable,
)
from castghl.common.messages import InstallStatus
from castghl.oauth.installation import company_key, location_key
from castghl.oauth.refresh import NEEDS_REAUTH, RefreshPolicy, TokenService
from castghl.oauth.sweep import Sweep

from .fakes import NOW, Clock, FakeGhl, FakeStore, eventually, installation

# Short polls; waits and timeouts long enough that only the tests of those bounds reach them.
FAST = RefreshPolicy(lease_seconds=60, wait_seconds=30, poll_seconds=0.001, call_timeout=20)


def service(store: FakeStore, ghl: FakeGhl, clock: Clock, owner: str = "p1",
            policy: RefreshPolicy = FAST) -> TokenService:
    return TokenService(store, ghl, owner, policy, clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def ghl() -> FakeGhl:
    return FakeGhl()


async def test_a_fresh_token_is_handed_out_without_asking_ghl(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(expires_in=3600))
    token = await service(store, ghl, clock).get("loc1", 300)
    assert token.access_token == "access-0"
    assert ghl.refreshes == []


async def test_a_token_expiring_too_soon_is_refreshed_and_stored_before_it_is_returned(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(expires_in=100))
    token = await service(store, ghl, clock).get("loc1", 300)
    assert token.access_token == "access-1"
    assert token.expires_at == NOW + timedelta(seconds=86399)
    assert ghl.refreshes == [("refresh-0", "Location")]
    stored = store.docs[location_key("loc1")]
    assert (stored.access_token, stored.refresh_token, stored.version) == (
        "access-1", "refresh-1", 2)
    assert stored.lease_owner == ""
    assert store.events == ["stored access-1"]


async def test_concurrent_callers_in_one_process_share_one_lease_attempt_and_one_refresh(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(expires_in=0))
    ghl.gate = asyncio.Event()
    tokens = service(store, ghl, clock)
    calls = [asyncio.create_task(tokens.get("loc1", 300)) for _ in range(100)]
    await eventually(lambda: ghl.refreshes, "the refresh to reach GHL")
    ghl.gate.set()
    results = await asyncio.gather(*calls)
    assert {r.access_token for r in results} == {"access-1"}
    assert store.lease_attempts == 1
    assert len(ghl.refreshes) == 1


async def test_replicas_sharing_a_store_refresh_once_and_waiters_get_the_new_token(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(expires_in=0))
    ghl.gate = asyncio.Event()
    replicas = [service(store, ghl, clock, owner=f"p{n}") for n in range(4)]
    calls = [asyncio.create_task(replica.get("loc1", 300))
             for replica in replicas for _ in range(25)]
    await eventually(lambda: len(store.refused_leases) == 3,
                     "every other replica to find the lease taken and start polling")
    assert len(ghl.refreshes) == 1
    ghl.gate.set()
    results = await asyncio.gather(*calls)
    assert {r.access_token for r in results} == {"access-1"}
    assert len(ghl.refreshes) == 1
    assert ghl.reuses == 0


async def test_waiters_accept_the_new_token_even_when_ghl_issues_short_lived_ones(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    # Tokens shorter than min_valid must not turn every waiter into another refresh.
    store.put(installation(expires_in=0))
    ghl.expires_in = 60
    ghl.gate = asyncio.Event()
    replicas = [service(store, ghl, clock, owner=f"p{n}") for n in range(3)]
    calls = [asyncio.create_task(r.get("loc1", 300)) for r in replicas]
    await eventually(lambda: len(store.refused_leases) == 2,
                     "the other replicas to find the lease taken")
    ghl.gate.set()
    assert {t.access_token for t in await asyncio.gather(*calls)} == {"access-1"}
    assert len(ghl.refreshes) == 1


async def test_refresh_of_a_stale_token_someone_already_replaced_asks_ghl_nothing(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(access="access-new", expires_in=3600))
    token = await service(store, ghl, clock).refresh_if_stale("loc1", "access-old")
    assert token.access_token == "access-new"
    assert ghl.refreshes == []


async def test_refresh_of_the_stored_token_refreshes_even_if_it_looks_valid(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(expires_in=3600))
    tokens = service(store, ghl, clock)
    first = await tokens.refresh_if_stale("loc1", "access-0")
    again = await tokens.refresh_if_stale("loc1", "access-0")
    assert first.access_token == again.access_token == "access-1"
    assert len(ghl.refreshes) == 1


async def test_invalid_grant_marks_needs_reauth_once_and_never_calls_ghl_again(
        store: FakeStore, ghl: FakeGhl, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    store.put(installation(refresh="refresh-revoked", expires_in=0))
    tokens = service(store, ghl, clock)
    before = NEEDS_REAUTH._value.get()
    with caplog.at_level(logging.WARNING, logger="castghl.oauth.refresh"):
        for _ in range(3):
            with pytest.raises(NeedsReauth):
                await tokens.get("loc1", 300)
    assert len(ghl.refreshes) == 1
    assert store.docs[location_key("loc1")].status is InstallStatus.NEEDS_REAUTH
    assert NEEDS_REAUTH._value.get() == before + 1
    warnings = [r for r in caplog.records if "needs a reinstall" in r.getMessage()]
    assert len(warnings) == 1


async def test_an_inactive_location_answers_location_inactive_and_changes_nothing(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    before = store.put(installation(expires_in=0))
    ghl.fail_with = LocationInactive("GHL says the location is not active")
    with pytest.raises(LocationInactive):
        await service(store, ghl, clock).get("loc1", 300)
    assert store.docs[before.key] == before  # lease released, tokens and version kept


@pytest.mark.parametrize("error", [
    RetryableError("cannot reach GHL: ConnectError", code="ghl_unreachable"),
    RetryableError("GHL answered 502", code="ghl_server_error"),
])
async def test_ghl_unavailable_answers_upstream_unavailable_and_releases_the_lease(
        store: FakeStore, ghl: FakeGhl, clock: Clock, error: RetryableError) -> None:
    before = store.put(installation(expires_in=0))
    ghl.fail_with = error
    tokens = service(store, ghl, clock)
    with pytest.raises(UpstreamUnavailable):
        await tokens.get("loc1", 300)
    assert store.docs[before.key] == before
    ghl.fail_with = None
    assert (await tokens.get("loc1", 300)).access_token == "access-1"


async def test_a_hanging_ghl_call_is_cut_off_within_the_lease(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    before = store.put(installation(expires_in=0))
    ghl.gate = asyncio.Event()  # never set: GHL never answers
    policy = replace(FAST, call_timeout=0.05)
    with pytest.raises(UpstreamUnavailable):
        await service(store, ghl, clock, policy=policy).get("loc1", 300)
    assert store.docs[before.key] == before


async def test_waiting_for_another_replicas_lease_is_bounded(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(replace(installation(expires_in=0), lease_until=NOW + timedelta(seconds=30),
                      lease_owner="other"))
    policy = replace(FAST, wait_seconds=0.05)
    with pytest.raises(UpstreamUnavailable):
        await service(store, ghl, clock, policy=policy).get("loc1", 300)
    assert ghl.refreshes == []


async def test_the_lease_of_a_crashed_replica_is_taken_over_once_it_expires(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(replace(installation(expires_in=0), lease_until=NOW - timedelta(seconds=1),
                      lease_owner="crashed"))
    assert (await service(store, ghl, clock).get("loc1", 300)).access_token == "access-1"


async def test_a_voided_lease_never_hands_out_the_unstored_token(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(expires_in=0))
    ghl.gate = asyncio.Event()
    call = asyncio.create_task(service(store, ghl, clock).get("loc1", 300))
    await eventually(lambda: ghl.refreshes, "the refresh to reach GHL")
    # A reinstall lands while GHL is answering: it wins, and the caller gets its token.
    inst = store.docs[location_key("loc1")]
    store.docs[inst.key] = replace(inst, version=inst.version + 1, access_token="reinstalled",
                                   lease_owner="", expires_at=NOW + timedelta(hours=1))
    ghl.gate.set()
    assert (await call).access_token == "reinstalled"
    assert store.docs[inst.key].access_token == "reinstalled"


async def test_a_company_installation_refreshes_as_company(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(kind="company", expires_in=0))
    token = await service(store, ghl, clock).company_token("co1", 60)
    assert token.access_token == "access-1"
    assert ghl.refreshes == [("refresh-0", "Company")]


async def test_a_minted_location_token_is_renewed_by_minting_again(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(kind="company", expires_in=3600, access="company-access"))
    store.put(installation("loc2", refresh=None, minted=True, expires_in=0))
    token = await service(store, ghl, clock).get("loc2", 300)
    assert token.access_token.startswith("minted-loc2-")
    assert ghl.mints == [("company-access", "loc2")]
    assert ghl.refreshes == []


@pytest.mark.parametrize("status", [None, InstallStatus.UNINSTALLED])
async def test_a_location_not_installed_answers_not_installed(
        store: FakeStore, ghl: FakeGhl, clock: Clock, status: InstallStatus | None) -> None:
    if status is not None:
        store.put(installation(status=status))
    with pytest.raises(NotInstalled):
        await service(store, ghl, clock).get("loc1", 300)


async def test_mint_location_stores_a_minted_installation(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(kind="company", expires_in=3600, access="company-access"))
    inst = await service(store, ghl, clock).mint_location("co1", "loc9")
    assert inst is not None
    assert inst.minted
    assert store.docs[location_key("loc9")].company_id == "co1"
    assert store.docs[company_key("co1")].access_token == "company-access"


async def test_an_agency_token_ghl_refuses_early_is_renewed_once_to_mint_again(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(kind="company", expires_in=3600, access="company-revoked"))
    store.put(installation("loc9", minted=True, refresh=None, expires_in=0))
    ghl.refused_bearers.add("company-revoked")
    token = await service(store, ghl, clock).get("loc9", 300)
    assert token.access_token.startswith("minted-loc9")
    assert store.docs[company_key("co1")].access_token == "access-1"  # renewed once
    assert [bearer for bearer, _ in ghl.mints] == ["company-revoked", "access-1"]


async def test_the_sweep_refreshes_only_installations_idle_past_the_threshold(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation("idle", refreshed_at=NOW - timedelta(days=40)))
    ghl.valid_refresh.add("refresh-busy")
    store.put(installation("busy", refresh="refresh-busy", refreshed_at=NOW - timedelta(days=1)))
    store.put(installation("gone", status=InstallStatus.UNINSTALLED,
                           refreshed_at=NOW - timedelta(days=90)))
    count = await Sweep(store, service(store, ghl, clock), timedelta(days=30),
                        clock=clock).once()
    assert count == 1
    assert ghl.refreshes == [("refresh-0", "Location")]
    assert store.docs[location_key("idle")].refreshed_at == NOW


async def test_the_sweep_pages_past_idle_minted_tokens_to_reach_every_direct_install(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    # 250 idle agency sub-accounts (minted: no refresh token) used to fill the first page.
    for n in range(250):
        store.put(installation(f"minted{n:03d}", minted=True, refresh=None,
                               refreshed_at=NOW - timedelta(days=200)))
    for n in range(450):
        ghl.valid_refresh.add(f"refresh-direct{n}")
        store.put(installation(f"direct{n:03d}", refresh=f"refresh-direct{n}",
                               refreshed_at=NOW - timedelta(days=40 + n % 7)))
    count = await Sweep(store, service(store, ghl, clock), timedelta(days=30), limit=200,
                        clock=clock).once()
    assert count == 450
    assert ghl.reuses == 0
    # Oldest refresh first.
    assert ghl.refreshes[0][0] in {f"refresh-direct{n}" for n in range(6, 450, 7)}


async def test_refresh_of_a_replaced_token_that_has_expired_since_refreshes_it(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(access="access-newer", expires_in=-1))
    token = await service(store, ghl, clock).refresh_if_stale("loc1", "access-older")
    assert token.access_token == "access-1"
    assert len(ghl.refreshes) == 1


async def test_a_failing_store_write_after_ghl_answered_is_retried_not_lost(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(expires_in=0))
    real = store.store_refreshed
    failures = [ConnectionError("mongo blip"), ConnectionError("mongo blip")]

    async def flaky(*args: Any, **kwargs: Any) -> bool:
        if failures:
            raise failures.pop()
        return await real(*args, **kwargs)

    store.store_refreshed = flaky  # type: ignore[method-assign]
    token = await service(store, ghl, clock).get("loc1", 300)
    assert token.access_token == "access-1"
    assert store.docs[location_key("loc1")].refresh_token == "refresh-1"


async def test_replicas_sweeping_at_once_refresh_an_idle_installation_once(
        store: FakeStore, ghl: FakeGhl, clock: Clock) -> None:
    store.put(installation(refreshed_at=NOW - timedelta(days=40)))
    ghl.gate = asyncio.Event()
    sweeps = [Sweep(store, service(store, ghl, clock, owner=f"p{n}"), timedelta(days=30),
                    clock=clock) for n in range(3)]
    running = [asyncio.create_task(sweep.once()) for sweep in sweeps]
    await eventually(lambda: len(store.refused_leases) == 2,
                     "the other sweeps to find the lease taken")
    ghl.gate.set()
    await asyncio.gather(*running)
    assert len(ghl.refreshes) == 1
    assert store.docs[location_key("loc1")].refreshed_at == NOW
