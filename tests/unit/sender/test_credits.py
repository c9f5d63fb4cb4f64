"""Credits per Cast account: one check per account and period across replicas, a gauge
named without the key, one warning per crossing below the threshold."""

from __future__ import annotations

import logging

import pytest

from castghl.common.cast.models import CastBalance, CastProfile
from castghl.common.errors import RetryableError
from castghl.sender.credits import CREDITS, CreditPolicy, CreditWatch, fingerprint

from .fakes import MemoryAccounts

DEFAULT = "cast_default_" + "d" * 20
OWN = "cast_own_" + "e" * 24


class FakeCast:
    def __init__(self) -> None:
        self.credits = {DEFAULT: 10_000.0, OWN: 900.0}
        self.names = {DEFAULT: "Agency main", OWN: None}
        self.sandbox: set[str] = set()
        self.asked: list[str] = []
        self.down = False

    async def balance(self, *, api_key: str) -> CastBalance | None:
        self.asked.append(api_key)
        if self.down:
            raise RetryableError("no answer", code="cast_unreachable")
        return CastBalance(credits=self.credits[api_key], sandbox=api_key in self.sandbox)

    async def profile(self, *, api_key: str) -> CastProfile | None:
        return CastProfile(name=self.names[api_key])


class Keys:
    def __init__(self) -> None:
        self.in_use = [OWN]

    async def cast_keys(self) -> list[str]:
        return self.in_use


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def watch(cast: FakeCast, store: MemoryAccounts, clock: Clock,
          keys: Keys | None = None) -> CreditWatch:
    return CreditWatch(cast=cast, keys=keys or Keys(), store=store, clock=clock,
                       policy=CreditPolicy(default_api_key=DEFAULT, every_seconds=300,
                                           low_credits=500))


def gauge(label: str) -> float:
    return CREDITS.labels(label)._value.get()


async def test_every_account_in_use_gets_a_gauge_named_without_its_key() -> None:
    cast, store, clock = FakeCast(), MemoryAccounts(), Clock()
    await watch(cast, store, clock).round()
    assert sorted(cast.asked) == sorted([DEFAULT, OWN])
    labels = sorted(str(d["label"]) for d in store.docs.values())
    assert labels == sorted([f"Agency main ({fingerprint(DEFAULT)[:6]})",
                             f"key {fingerprint(OWN)}"])
    assert gauge(f"Agency main ({fingerprint(DEFAULT)[:6]})") == 10_000
    assert all(DEFAULT not in label and OWN not in label for label in labels)


async def test_names_are_kept_only_for_accounts_in_use() -> None:
    cast, store, clock, keys = FakeCast(), MemoryAccounts(), Clock(), Keys()
    watcher = watch(cast, store, clock, keys)
    await watcher.round()
    assert set(watcher._names) == {fingerprint(DEFAULT), fingerprint(OWN)}
    keys.in_use = []  # the location with its own key was uninstalled
    await watcher.round()
    assert set(watcher._names) == {fingerprint(DEFAULT)}


async def test_replicas_check_each_account_once_per_period() -> None:
    cast, store, clock = FakeCast(), MemoryAccounts(), Clock()
    replicas = [watch(cast, store, clock) for _ in range(3)]
    for replica in replicas:
        await replica.round()
    assert len(cast.asked) == 2
    clock.now += 301
    for replica in replicas:
        await replica.round()
    assert len(cast.asked) == 4


async def test_one_warning_each_time_the_balance_crosses_below_the_threshold(
        caplog: pytest.LogCaptureFixture) -> None:
    cast, store, clock = FakeCast(), MemoryAccounts(), Clock()
    replica = watch(cast, store, clock)

    def warnings() -> int:
        return sum("running low" in r.getMessage() for r in caplog.records)

    with caplog.at_level(logging.WARNING):
        for credits, expected in [(900, 0), (499, 1), (300, 1), (0, 1), (800, 1), (20, 2)]:
            cast.credits[OWN] = credits
            await replica.round()
            clock.now += 301
            assert warnings() == expected, credits
    assert gauge(f"key {fingerprint(OWN)}") == 20


async def test_a_first_balance_already_low_warns_once(caplog: pytest.LogCaptureFixture
                                                      ) -> None:
    cast, store, clock = FakeCast(), MemoryAccounts(), Clock()
    cast.credits[OWN] = 12
    with caplog.at_level(logging.WARNING):
        await watch(cast, store, clock).round()
    assert sum("running low" in r.getMessage() for r in caplog.records) == 1


async def test_a_sandbox_key_is_recorded_and_warned_about_once(
        caplog: pytest.LogCaptureFixture) -> None:
    cast, store, clock = FakeCast(), MemoryAccounts(), Clock()
    cast.sandbox.add(DEFAULT)
    replica = watch(cast, store, clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            await replica.round()
            clock.now += 301
    assert store.docs[fingerprint(DEFAULT)]["sandbox"] is True
    assert sum("sandbox key" in r.getMessage() for r in caplog.records) == 1


async def test_cast_out_of_reach_is_logged_and_checked_again_next_period() -> None:
    cast, store, clock = FakeCast(), MemoryAccounts(), Clock()
    replica = watch(cast, store, clock)
    cast.down = True
    await replica.round()  # no exception
    cast.down = False
    clock.now += 301
    await replica.round()
    assert all(d["credits"] is not None for d in store.docs.values())
