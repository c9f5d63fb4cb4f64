"""Cast credits, per account: polled, shown as a gauge, warned about once per crossing;
and each account's opt-out list copied with them (optouts.py).

Every Cast key in use is a prepaid account — the operator's default key, and each
location's own key — and when one runs dry every location on it fails at once. Each
sender replica runs a `CreditWatch`. Every CAST_BALANCE_CHECK_SECONDS one replica checks
each account: it claims the check in Mongo (`cast_accounts`, compare-and-set on the time
of the last one), asks Cast for the balance (and, the first time, the account's name),
and records it. Every replica shows what is recorded, so whichever one Prometheus
scrapes reports every account: `castghl_cast_credits{account}`, labelled with the
account's name and a short fingerprint of its key, never the key itself.

The replica that records a balance below CAST_LOW_CREDITS, where the one before was not,
logs one WARNING: once per crossing, whichever replica checks. An answer carrying
`sandbox: true` (a `cast_test_` key: Cast sends nothing) is recorded, logged as a
warning, and shown by the admin API for the locations on that key.

A check is two GET requests every few minutes per account, outside the Cast lane: they
fit in the headroom the lane keeps under Cast's burst (docs/architecture.md, "Rate
limits").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Gauge

from castghl.common.cast.accounts import fingerprint
from castghl.common.cast.models import CastBalance, CastProfile
from castghl.common.errors import BridgeError

log = logging.getLogger(__name__)

CREDITS = Gauge("castghl_cast_credits", "Credits (SMS parts) left on each Cast account",
                ["account"])
# How long a replica holds a claimed check before another may take it over.
CHECK_LEASE_SECONDS = 60.0


def label(name: str | None, print_: str) -> str:
    return f"{name} ({print_[:6]})" if name else f"key {print_}"


@dataclass(frozen=True)
class Account:
    """What is recorded of one Cast account."""

    fingerprint: str
    label: str
    credits: float | None
    sandbox: bool
    balance_ts: float | None = None  # when the balance was read


class CastAccounts(Protocol):
    async def balance(self, *, api_key: str) -> CastBalance | None: ...
    async def profile(self, *, api_key: str) -> CastProfile | None: ...


class KeysInUse(Protocol):
    async def cast_keys(self) -> list[str]:
        """Every location's own Cast key (the default key is added by the watch)."""
        ...


class AccountStore(Protocol):
    async def claim_check(self, fingerprint: str, every: float, now: float) -> bool: ...

    async def record(self, fingerprint: str, *, label: str, credits: float, sandbox: bool,
                     now: float) -> float | None:
        """Record a balance; return the one recorded before (None: the first)."""
        ...

    async def accounts_list(self) -> list[Account]: ...


# More work done per account with each check: (api key, fingerprint, now) → anything.
AccountCheck = Callable[[str, str, float], Awaitable[object]]


@dataclass(frozen=True)
class CreditPolicy:
    default_api_key: str
    every_seconds: float
    low_credits: float


class CreditWatch:
    def __init__(self, *, cast: CastAccounts, keys: KeysInUse, store: AccountStore,
                 policy: CreditPolicy, also: Sequence[AccountCheck] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.also = also
        self.cast = cast
        self.keys = keys
        self.store = store
        self.policy = policy
        self.clock = clock
        self._names: dict[str, str | None] = {}
        self._sandbox_warned: set[str] = set()

    async def run(self) -> None:
        """Check every `every_seconds`, for as long as the service runs."""
        while True:
            try:
                await self.round()
            except Exception:
                log.exception("credit check failed; trying again at the next round")
            await asyncio.sleep(min(self.policy.every_seconds, 60.0))

    async def round(self) -> None:
        keys = {self.policy.default_api_key, *await self.keys.cast_keys()}
        # Names of accounts no longer in use go: the names kept are as many as the keys.
        in_use = {fingerprint(api_key) for api_key in keys}
        self._names = {print_: name for print_, name in self._names.items() if print_ in in_use}
        for api_key in sorted(keys):
            await self._check(api_key)
        self.show(await self.store.accounts_list())

    def show(self, accounts: Iterable[Account]) -> None:
        for account in accounts:
            if account.credits is not None:
                CREDITS.labels(account.label).set(account.credits)

    async def _check(self, api_key: str) -> None:
        print_ = fingerprint(api_key)
        now = self.clock()
        if not await self.store.claim_check(print_, self.policy.every_seconds, now):
            return  # checked lately, here or by another replica
        try:
            balance = await self.cast.balance(api_key=api_key)
            if print_ not in self._names:
                profile = await self.cast.profile(api_key=api_key)
                self._names[print_] = profile.name if profile else None
            for check in self.also:
                await check(api_key, print_, now)
        except BridgeError as error:
            log.warning("Cast balance not read", extra={"account": print_,
                                                        "error_code": error.code})
            return
        if balance is None:
            return  # an older Cast API without balances
        name = label(self._names.get(print_), print_)
        before = await self.store.record(print_, label=name, credits=balance.credits,
                                         sandbox=balance.sandbox, now=now)
        low = self.policy.low_credits
        if balance.credits < low and (before is None or before >= low):
            log.warning("Cast credits are running low: top up the account", extra={
                "account": name, "credits": balance.credits, "threshold": low})
        if balance.sandbox and print_ not in self._sandbox_warned:
            self._sandbox_warned.add(print_)
            log.warning("a Cast sandbox key is in use: its SMS are not sent",
                        extra={"account": name})
