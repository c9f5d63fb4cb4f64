"""In-memory fakes of the OAuth service's own ports: the installations repository and
GHL's token endpoints. Same semantics as the real adapters (compare-and-set on version,
lease filter, single-use refresh tokens), none of their I/O."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx

from castghl.common.errors import BridgeError
from castghl.common.ghl.errors import GhlUnauthorized
from castghl.common.ghl.oauth import InvalidGrant, TokenGrant, UserType
from castghl.common.messages import InstallStatus
from castghl.oauth.installation import (
    EPOCH,
    Installation,
    Kind,
    LocationPrefs,
    company_key,
    location_key,
)
from castghl.oauth.sender_api import SenderApi

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


# Only a safety net against a hang, generous so that a slow machine never trips it.
EVENTUALLY_SECONDS = 30.0


async def eventually(condition: Callable[[], object], what: str) -> None:
    """Let other tasks run until `condition()` holds."""
    deadline = time.monotonic() + EVENTUALLY_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)  # a poll interval: the loop ends when the condition holds


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def installation(location_id: str = "loc1", *, kind: Kind = "location",
                 company_id: str | None = "co1", access: str = "access-0",
                 refresh: str | None = "refresh-0", expires_in: float = 86_000,
                 status: InstallStatus = InstallStatus.ACTIVE, minted: bool = False,
                 refreshed_at: datetime = NOW, prefs: LocationPrefs | None = None,
                 now: datetime = NOW) -> Installation:
    key = company_key(company_id or "") if kind == "company" else location_key(location_id)
    return Installation(
        key=key, kind=kind, location_id=location_id if kind == "location" else None,
        company_id=company_id, status=status, version=1, access_token=access,
        refresh_token=refresh, expires_at=now + timedelta(seconds=expires_in),
        scopes="contacts.write", user_type="Company" if kind == "company" else "Location",
        minted=minted, lease_until=EPOCH, lease_owner="", refreshed_at=refreshed_at,
        installed_at=now, updated_at=now, uninstalled_at=None,
        prefs=prefs or LocationPrefs())


@dataclass
class FakeStore:
    """The installations repository, in memory (every port the service defines)."""

    docs: dict[str, Installation] = field(default_factory=dict)
    lease_attempts: int = 0
    refused_leases: set[str] = field(default_factory=set)  # owners refused a lease
    reads: int = 0  # calls to read the store, as round trips to a database would be
    events: list[str] = field(default_factory=list)

    def put(self, inst: Installation) -> Installation:
        self.docs[inst.key] = inst
        return inst

    async def get(self, key: str) -> Installation | None:
        await asyncio.sleep(0)  # a real store yields to other tasks here
        self.reads += 1
        return self.docs.get(key)

    async def get_many(self, keys: list[str]) -> dict[str, Installation]:
        await asyncio.sleep(0)
        self.reads += 1
        return {key: self.docs[key] for key in keys if key in self.docs}

    async def all(self, limit: int = 1000) -> list[Installation]:
        return [self.docs[k] for k in sorted(self.docs)][:limit]

    def _bump(self, key: str, **changes: Any) -> Installation:
        inst = self.docs[key]
        self.docs[key] = replace(inst, version=inst.version + 1, **changes)
        return self.docs[key]

    async def save_grant(self, grant: TokenGrant, *, kind: Kind, location_id: str | None,
                         company_id: str | None, minted: bool, now: datetime,
                         event_at: datetime | None = None) -> Installation | None:
        key = company_key(company_id or "") if kind == "company" else location_key(
            location_id or "")
        old = self.docs.get(key)
        if event_at is not None and old is not None and old.changed_at is not None \
                and not old.changed_at < event_at:
            return None
        self.docs[key] = Installation(
            key=key, kind=kind, location_id=location_id, company_id=company_id,
            status=InstallStatus.ACTIVE, version=(old.version if old else 0) + 1,
            access_token=grant.access_token, refresh_token=grant.refresh_token or None,
            expires_at=grant.expires_at(now), scopes=grant.scope, user_type=grant.user_type,
            minted=minted, lease_until=EPOCH, lease_owner="", refreshed_at=now,
            installed_at=now, updated_at=now, uninstalled_at=None,
            changed_at=event_at or now, prefs=old.prefs if old else LocationPrefs())
        self.events.append(f"saved {key}")
        return self.docs[key]

    async def register_agency_location(self, company_id: str, location_id: str,
                                       now: datetime) -> None:
        key = location_key(location_id)
        old = self.docs.get(key)
        if old is not None and (old.installed or (old.changed_at or EPOCH) >= now):
            return
        self.docs[key] = Installation(
            key=key, kind="location", location_id=location_id, company_id=company_id,
            status=InstallStatus.ACTIVE, version=(old.version if old else 0) + 1,
            access_token=None, refresh_token=None, expires_at=None, scopes="",
            user_type="Location", minted=True, lease_until=EPOCH, lease_owner="",
            refreshed_at=now, installed_at=now, updated_at=now, uninstalled_at=None,
            changed_at=now, prefs=old.prefs if old else LocationPrefs())

    async def take_lease(self, key: str, version: int, owner: str, until: datetime,
                         now: datetime) -> bool:
        self.lease_attempts += 1
        inst = self.docs.get(key)
        if inst is None or inst.version != version or not inst.lease_until < now:
            self.refused_leases.add(owner)
            return False
        self.docs[key] = replace(inst, lease_until=until, lease_owner=owner)
        return True

    async def store_refreshed(self, key: str, version: int, owner: str, grant: TokenGrant,
                              now: datetime) -> bool:
        inst = self.docs.get(key)
        if inst is None or inst.version != version or inst.lease_owner != owner:
            return False
        self._bump(key, access_token=grant.access_token, refresh_token=grant.refresh_token or None,
                   expires_at=grant.expires_at(now), scopes=grant.scope, lease_until=EPOCH,
                   lease_owner="", refreshed_at=now, updated_at=now)
        self.events.append(f"stored {grant.access_token}")
        return True

    async def mark_needs_reauth(self, key: str, version: int, owner: str,
                                now: datetime) -> bool:
        inst = self.docs.get(key)
        if inst is None or inst.version != version or inst.lease_owner != owner:
            return False
        self._bump(key, status=InstallStatus.NEEDS_REAUTH, lease_until=EPOCH, lease_owner="")
        return True

    async def release_lease(self, key: str, owner: str) -> None:
        inst = self.docs.get(key)
        if inst is not None and inst.lease_owner == owner:
            self.docs[key] = replace(inst, lease_until=EPOCH, lease_owner="")

    async def idle_keys(self, refreshed_before: datetime, limit: int,
                        after: tuple[int, str] | None = None) -> list[tuple[int, str]]:
        idle = sorted((round(i.refreshed_at.timestamp() * 1000), k)
                      for k, i in self.docs.items()
                      if i.status is InstallStatus.ACTIVE and not i.minted
                      and i.refreshed_at is not None and i.refreshed_at < refreshed_before)
        return [entry for entry in idle if after is None or entry > after][:limit]

    def _stale(self, key: str, event_at: datetime) -> bool:
        changed = self.docs[key].changed_at
        return changed is not None and changed > event_at

    async def uninstall(self, key: str, event_at: datetime,
                        now: datetime) -> Literal["uninstalled", "stale", "unknown"]:
        if key not in self.docs:
            return "unknown"
        if self._stale(key, event_at):
            return "stale"
        self._tombstone(key, event_at, now)
        return "uninstalled"

    def _tombstone(self, key: str, event_at: datetime, now: datetime) -> None:
        inst = self.docs[key]
        self._bump(key, status=InstallStatus.UNINSTALLED, access_token=None, refresh_token=None,
                   expires_at=None, uninstalled_at=now, lease_until=EPOCH, lease_owner="",
                   changed_at=event_at, prefs=replace(inst.prefs, cast_api_key=None))

    async def uninstall_company(self, company_id: str, event_at: datetime,
                                now: datetime) -> int:
        hit = [k for k, i in self.docs.items() if i.company_id == company_id
               and (i.kind == "company" or i.minted) and not self._stale(k, event_at)]
        for key in hit:
            self._tombstone(key, event_at, now)
        return len(hit)

    async def update_prefs(self, key: str, changes: Mapping[str, Any],
                           now: datetime) -> Installation | None:
        inst = self.docs.get(key)
        if inst is None or inst.kind != "location" or not inst.installed:
            return None
        values: dict[str, Any] = {k: tuple(v) if k == "inbound_numbers" else v
                                  for k, v in changes.items()}
        prefs = replace(inst.prefs, **values)
        self.docs[key] = replace(inst, prefs=prefs, updated_at=now)
        return self.docs[key]

    async def owners_of(self, numbers: list[str], except_key: str) -> dict[str, str]:
        return {n: str(i.location_id) for k, i in self.docs.items()
                if k != except_key and i.installed for n in i.prefs.inbound_numbers
                if n in numbers}

    async def route(self, number: str) -> str | None:
        for inst in self.docs.values():
            if inst.installed and number in inst.prefs.inbound_numbers:
                return inst.location_id
        return None


@dataclass
class FakeGhl:
    """GHL's token endpoints: single-use refresh tokens, counted calls, injected faults."""

    valid_refresh: set[str] = field(default_factory=lambda: {"refresh-0"})
    refreshes: list[tuple[str, UserType]] = field(default_factory=list)
    mints: list[tuple[str, str]] = field(default_factory=list)
    reuses: int = 0
    fail_with: BridgeError | None = None
    gate: asyncio.Event | None = None  # when set, refreshes wait for it (a slow GHL)
    expires_in: int = 86399
    on_call: list[str] = field(default_factory=list)
    refused_bearers: set[str] = field(default_factory=set)  # company tokens GHL refuses
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def refresh(self, refresh_token: str, user_type: UserType) -> TokenGrant:
        self.refreshes.append((refresh_token, user_type))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if refresh_token not in self.valid_refresh:
            self.reuses += 1
            raise InvalidGrant("GHL refused the grant (400)")
        self.valid_refresh.discard(refresh_token)
        n = next(self._serial)
        self.valid_refresh.add(f"refresh-{n}")
        self.on_call.append(f"issued access-{n}")
        return TokenGrant(access_token=f"access-{n}", refresh_token=f"refresh-{n}",
                          expires_in=self.expires_in, scope="contacts.write",
                          user_type=user_type)

    async def location_token(self, company_token: str, company_id: str,
                              location_id: str) -> TokenGrant:
        self.mints.append((company_token, location_id))
        if self.fail_with is not None:
            raise self.fail_with
        if company_token in self.refused_bearers:
            raise GhlUnauthorized("GHL refused the agency token")
        n = next(self._serial)
        return TokenGrant.model_validate({
            "access_token": f"minted-{location_id}-{n}", "refresh_token": "",
            "expires_in": self.expires_in, "scope": "contacts.write",
            "locationId": location_id})


@dataclass
class FakeEventLog:
    seen_ids: set[str] = field(default_factory=set)

    async def seen(self, webhook_id: str) -> bool:
        return webhook_id in self.seen_ids

    async def remember(self, webhook_id: str, now: datetime) -> None:
        self.seen_ids.add(webhook_id)


@dataclass
class FakeNotices:
    """Change notices, as the senders would hear them."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    async def location(self, location_id: str) -> None:
        self.sent.append(("location", location_id))

    async def company(self, company_id: str) -> None:
        self.sent.append(("company", company_id))


class FakeSenderOps:
    """The sender's operator API (`/ops`) over `httpx.MockTransport`, answering from what a
    test put here; `down` makes every call fail as a refused connection."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.usage: list[dict[str, Any]] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.parked: dict[str, list[dict[str, Any]]] = {}
        self.accounts: list[dict[str, Any]] = []
        self.down = False
        self.replayed: list[str] = []

    def api(self) -> SenderApi:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self.handle))
        return SenderApi(http, "http://sender:3004", self.key)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return httpx.Response(401, json={"code": "unauthorized", "detail": "no key"})
        path, query = request.url.path, request.url.params
        answer: dict[str, Any] | None = None
        if path == "/ops/usage":
            answer = {"days": [
                r for r in self.usage if query["since"] <= r["day"] <= query["until"]
                and query.get("location_id", r["location_id"]) == r["location_id"]]}
        elif path == "/ops/messages":
            answer = {"messages": [m for m in self.messages.values()
                                   if (m["to"] or "").endswith(query["phone"])]}
        elif path.startswith("/ops/messages/"):
            answer = self.messages.get(path.rsplit("/", 1)[1])
        elif path == "/ops/parked":
            answer = {"queues": [_survey(name, self.parked.get(name, []))
                                 for name in ("outbound", "status", "inbound")]}
        elif path.startswith("/ops/parked/") and request.method == "POST":
            name = path.split("/")[3]
            self.replayed.append(name)
            answer = {"queue": name, "moved": sum(r["count"] for r in self.parked.pop(name, [])),
                      "left": 0}
        elif path == "/ops/accounts":
            answer = {"low_credits": 500, "accounts": self.accounts}
        elif path == "/ops/health":
            answer = {"queues": [{"queue": "sms.outbound", "messages": 3, "consumers": 1}],
                      "last_send_at": "2026-11-25T01:02:03+00:00",
                      "last_status_written_at": None,
                      "replica": {"rabbitmq": True, "consumers": True, "mongo": True}}
        if answer is None:
            return httpx.Response(404, json={"code": "not_found",
                                             "detail": "no message with this messageId"})
        return httpx.Response(200, json=answer)


def _survey(name: str, reasons: list[dict[str, Any]]) -> dict[str, Any]:
    count = sum(r["count"] for r in reasons)
    return {"name": name, "queue": f"{name}.parked", "count": count, "read": count,
            "reasons": reasons}
