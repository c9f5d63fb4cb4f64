"""MongoDB `installations`: one document per location and per company, secrets encrypted.

Every token and Cast API key is sealed with `TokenCipher` before it leaves this module and
opened when a document is read, so plaintext never reaches MongoDB and ciphertext never
reaches the service code. Concurrency control is a `version` counter (bumped by every
change to the tokens or the status) and a refresh lease (`lease_until_ms`, `lease_owner`)
that is always present — free means "expired at the epoch".

Times are stored as integer epoch milliseconds (`*_ms`), not BSON dates: a number compares
the same on MongoDB and on the MongoDB-wire emulator, which stores a `$set` date as a
string (reference/stack.md's rule: write for MongoDB in forms both agree on).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from castghl.common.crypto import TokenCipher
from castghl.common.ghl.oauth import TokenGrant
from castghl.common.messages import InstallStatus
from castghl.common.phone import InvalidPhoneNumber, PhMobile
from castghl.oauth.installation import (
    EPOCH,
    Installation,
    Kind,
    LocationPrefs,
    company_key,
    location_key,
)

Document = dict[str, Any]
# Where a sweep page ended: (refreshed_at_ms, _id) of its last installation.
IdleCursor = tuple[int, str]
Uninstalled = Literal["uninstalled", "stale", "unknown"]
COLLECTION: Final = "installations"
EVENTS_COLLECTION: Final = "app_events"
AUDIT_COLLECTION: Final = "admin_audit"
AUDIT_MEMORY: Final = timedelta(days=400)  # a year of changes, and a little
# Longer than any webhook GHL may still retry (WEBHOOK_MAX_AGE_SECONDS, 72 h by default):
# a retry that arrives late still finds its first delivery here.
EVENT_MEMORY: Final = timedelta(days=7)
# Statuses whose settings still apply: a location awaiting reinstall keeps its numbers.
_INSTALLED: Final = [InstallStatus.ACTIVE.value, InstallStatus.NEEDS_REAUTH.value]
_FREE_LEASE: Final = {"lease_until_ms": 0, "lease_owner": ""}
# Where a location's tokens came from. A string, not a boolean: the emulator stores a `$set`
# boolean as 1, which a `true` filter would not match on MongoDB.
_INSTALL: Final = "install"
_MINTED: Final = "company"


def ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def dig(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _e164(number: str) -> str:
    try:
        return PhMobile.parse(number).e164
    except InvalidPhoneNumber:
        return number  # not ours to drop: the admin API shows it, and it routes nothing


class MongoInstallations:
    def __init__(self, collection: AsyncCollection[Document], cipher: TokenCipher) -> None:
        self.collection = collection
        self.cipher = cipher

    async def ensure_indexes(self) -> None:
        """Idempotent: MongoDB accepts re-creating an index with identical options."""
        await self.collection.create_index([("prefs.inbound_numbers", ASCENDING)],
                                           name="inbound_numbers")
        await self.collection.create_index([("company_id", ASCENDING)], name="company")
        # The sweep's order (the emulator refuses `_id` inside a compound index).
        await self.collection.create_index(
            [("status", ASCENDING), ("token_source", ASCENDING),
             ("refreshed_at_ms", ASCENDING)], name="refresh_sweep")
        # Installations stored before lifecycle times were kept: "changed at the epoch",
        # so any GHL event is newer (a filter on a missing field would match nothing).
        await self.collection.update_many({"lifecycle_ms": {"$exists": False}},
                                          {"$set": {"lifecycle_ms": 0}})
        await self._inbound_numbers_in_e164()

    async def _inbound_numbers_in_e164(self) -> None:
        """Inbound numbers were once stored in the national form: rewrite them as E.164,
        the one form numbers take everywhere (few documents have any; each is checked)."""
        cursor = self.collection.find({"kind": "location"}, projection={"prefs": True})
        async for doc in cursor:
            numbers = list(dig(doc, "prefs.inbound_numbers") or ())
            e164 = [_e164(n) for n in numbers]
            if e164 != numbers:
                await self.collection.update_one({"_id": doc["_id"]},
                                                  {"$set": {"prefs.inbound_numbers": e164}})

    # --- sealing ------------------------------------------------------------------------------

    def _seal(self, plain: str | None) -> str | None:
        return self.cipher.encrypt(plain) if plain else None

    def _open(self, sealed: Any) -> str | None:
        return self.cipher.decrypt(sealed) if isinstance(sealed, str) and sealed else None

    def _installation(self, doc: Document) -> Installation:
        prefs: Mapping[str, Any] = doc.get("prefs") or {}
        return Installation(
            key=doc["_id"], kind=doc["kind"], location_id=doc.get("location_id"),
            company_id=doc.get("company_id"), status=InstallStatus(doc["status"]),
            version=int(doc["version"]),
            access_token=self._open(doc.get("access_token_enc")),
            refresh_token=self._open(doc.get("refresh_token_enc")),
            expires_at=_time(doc.get("expires_at_ms")), scopes=doc.get("scopes") or "",
            user_type=doc.get("user_type") or "Location",
            minted=doc.get("token_source") == _MINTED,
            lease_until=_time(doc.get("lease_until_ms")) or EPOCH,
            lease_owner=doc.get("lease_owner") or "",
            refreshed_at=_time(doc.get("refreshed_at_ms")),
            installed_at=_time(doc.get("installed_at_ms")),
            updated_at=_time(doc.get("updated_at_ms")),
            uninstalled_at=_time(doc.get("uninstalled_at_ms")),
            changed_at=_time(doc.get("lifecycle_ms") or None),
            prefs=LocationPrefs(
                sender_id=prefs.get("sender_id"),
                cast_api_key=self._open(prefs.get("cast_api_key_enc")),
                rate_limit_per_second=prefs.get("rate_limit_per_second"),
                inbound_numbers=tuple(prefs.get("inbound_numbers") or ()),
                sending="stopped" if prefs.get("sending") == "stopped" else "allowed",
            ),
        )

    def _tokens(self, grant: TokenGrant, now: datetime) -> Document:
        return {
            "access_token_enc": self._seal(grant.access_token),
            "refresh_token_enc": self._seal(grant.refresh_token),
            "expires_at_ms": ms(grant.expires_at(now)), "scopes": grant.scope,
            "refreshed_at_ms": ms(now), "updated_at_ms": ms(now), **_FREE_LEASE,
        }

    # --- reading ------------------------------------------------------------------------------

    async def get(self, key: str) -> Installation | None:
        doc = await self.collection.find_one({"_id": key})
        return self._installation(doc) if doc is not None else None

    async def get_many(self, keys: list[str]) -> dict[str, Installation]:
        """The installations of `keys` that exist, in one read."""
        cursor = self.collection.find({"_id": {"$in": keys}})
        return {doc["_id"]: self._installation(doc) async for doc in cursor}

    async def all(self, limit: int = 1000) -> list[Installation]:
        cursor = self.collection.find({}).sort("_id", ASCENDING).limit(limit)
        return [self._installation(doc) async for doc in cursor]

    async def route(self, number: str) -> str | None:
        # `$in` rather than array equality: the emulator misses some nested-array matches.
        doc = await self.collection.find_one(
            {"prefs.inbound_numbers": {"$in": [number]}, "kind": "location",
             "status": {"$in": _INSTALLED}},
            projection={"location_id": True})
        return doc.get("location_id") if doc is not None else None

    async def cast_keys(self) -> list[str]:
        """The distinct Cast keys installed locations brought, decrypted."""
        cursor = self.collection.find(
            {"kind": "location", "status": {"$in": _INSTALLED}}, projection={"prefs": True})
        keys = {self._open(dig(doc, "prefs.cast_api_key_enc")) async for doc in cursor}
        return sorted(key for key in keys if key)

    async def owners_of(self, numbers: list[str], except_key: str) -> dict[str, str]:
        """number → location id, for numbers another installed location already owns."""
        owners: dict[str, str] = {}
        cursor = self.collection.find(
            {"prefs.inbound_numbers": {"$in": numbers}, "kind": "location",
             "status": {"$in": _INSTALLED}},
            projection={"location_id": True, "prefs": True})
        async for doc in cursor:
            if doc["_id"] == except_key:
                continue
            for number in set(dig(doc, "prefs.inbound_numbers") or ()) & set(numbers):
                owners[number] = str(doc.get("location_id"))
        return owners

    async def idle_keys(self, refreshed_before: datetime, limit: int,
                        after: IdleCursor | None = None) -> list[IdleCursor]:
        """Refreshable installations (their own refresh token, active) last refreshed
        before the cutoff, oldest first; `after` continues from the previous page, so a
        sweep reaches every one however many there are and whatever fails on the way.
        Minted location tokens have no refresh token: they are minted again instead."""
        query: Document = {"status": InstallStatus.ACTIVE.value, "token_source": _INSTALL,
                           "refreshed_at_ms": {"$lt": ms(refreshed_before)}}
        if after is not None:
            at, key = after
            query["$or"] = [{"refreshed_at_ms": {"$gt": at}},
                            {"refreshed_at_ms": at, "_id": {"$gt": key}}]
        cursor = self.collection.find(query, projection={"refreshed_at_ms": True}).sort(
            [("refreshed_at_ms", ASCENDING), ("_id", ASCENDING)]).limit(limit)
        return [(int(doc["refreshed_at_ms"]), str(doc["_id"])) async for doc in cursor]

    # --- installing and uninstalling ----------------------------------------------------------

    async def save_grant(self, grant: TokenGrant, *, kind: Kind, location_id: str | None,
                         company_id: str | None, minted: bool, now: datetime,
                         event_at: datetime | None = None) -> Installation | None:
        """Store fresh tokens from an install or a mint; a lease in progress is voided
        (version + 1), so a concurrent refresher's compare-and-set fails harmlessly.

        `event_at` is the time of the GHL event this answers: tokens from an event older
        than the installation's last change are not stored (None is returned)."""
        key = (company_key(company_id or "") if kind == "company"
               else location_key(location_id or ""))
        await self._create(key, kind, location_id, company_id, now)
        changed = event_at or now
        query: Document = {"_id": key}
        if event_at is not None:
            query["lifecycle_ms"] = {"$lt": ms(event_at)}
        doc = await self.collection.find_one_and_update(
            query,
            {"$set": {"kind": kind, "location_id": location_id, "company_id": company_id,
                      "status": InstallStatus.ACTIVE.value, "user_type": grant.user_type,
                      "token_source": _MINTED if minted else _INSTALL,
                      "installed_at_ms": ms(now), "uninstalled_at_ms": None,
                      "lifecycle_ms": ms(changed), **self._tokens(grant, now)},
             "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER)
        return self._installation(doc) if doc is not None else None

    async def register_agency_location(self, company_id: str, location_id: str,
                                       now: datetime) -> None:
        """Record a location its agency installed the app on, before any token exists:
        it may send at once, and its token is minted from the agency's on first need.
        A location already installed (on its own or through the agency) is left alone."""
        key = location_key(location_id)
        await self._create(key, "location", location_id, company_id, now)
        await self.collection.update_one(
            {"_id": key, "status": InstallStatus.UNINSTALLED.value,
             "lifecycle_ms": {"$lt": ms(now)}},
            {"$set": {"status": InstallStatus.ACTIVE.value, "company_id": company_id,
                      "token_source": _MINTED, "installed_at_ms": ms(now),
                      "uninstalled_at_ms": None, "updated_at_ms": ms(now),
                      "lifecycle_ms": ms(now), **_FREE_LEASE},
             "$inc": {"version": 1}})

    async def _create(self, key: str, kind: Kind, location_id: str | None,
                      company_id: str | None, now: datetime) -> None:
        """Make sure the document exists with every field present (a no-op if it does).

        A separate upsert of `$setOnInsert` only: the emulator ignores `$setOnInsert` in
        `find_one_and_update`, and the fields must exist before anyone filters on them.
        """
        # A concurrent install creating it first (duplicate key) is just as good.
        with contextlib.suppress(DuplicateKeyError):
            await self.collection.update_one({"_id": key}, {"$setOnInsert": {
                "kind": kind, "location_id": location_id, "company_id": company_id,
                "status": InstallStatus.UNINSTALLED.value, "version": 0,
                "user_type": "Location", "token_source": _INSTALL, "access_token_enc": None,
                "refresh_token_enc": None, "expires_at_ms": None, "scopes": "",
                "refreshed_at_ms": ms(now), "installed_at_ms": ms(now),
                "updated_at_ms": ms(now), "uninstalled_at_ms": None,
                # Never changed by a GHL event yet: any event is newer.
                "lifecycle_ms": 0, **_FREE_LEASE,
                "prefs": {"sender_id": None, "cast_api_key_enc": None,
                          "rate_limit_per_second": None, "inbound_numbers": []},
            }}, upsert=True)

    def _tombstone(self, event_at: datetime, now: datetime) -> Document:
        return {"$set": {"status": InstallStatus.UNINSTALLED.value, "access_token_enc": None,
                         "refresh_token_enc": None, "expires_at_ms": None,
                         "prefs.cast_api_key_enc": None, "uninstalled_at_ms": ms(now),
                         "updated_at_ms": ms(now), "lifecycle_ms": ms(event_at),
                         **_FREE_LEASE},
                "$inc": {"version": 1}}

    async def uninstall(self, key: str, event_at: datetime, now: datetime) -> Uninstalled:
        """Delete the installation's secrets, keep the rest as a tombstone — unless it
        changed after `event_at` (a reinstall since): then the event is stale."""
        result = await self.collection.update_one(
            {"_id": key, "lifecycle_ms": {"$lte": ms(event_at)}},
            self._tombstone(event_at, now))
        if result.matched_count == 1:
            return "uninstalled"
        return "stale" if await self.collection.find_one({"_id": key}, {"_id": True}) \
            else "unknown"

    async def uninstall_company(self, company_id: str, event_at: datetime,
                                now: datetime) -> int:
        """The company's own installation and every location token minted from it, as far
        as they did not change after `event_at`."""
        # Two updates, not one with `$or`: the emulator applies an update whose filter has
        # an `$or` to documents matching the `$or` alone (docs/architecture.md, "Mongo").
        matched = 0
        for which in ({"kind": "company"}, {"kind": "location", "token_source": _MINTED}):
            result = await self.collection.update_many(
                {"company_id": company_id, "lifecycle_ms": {"$lte": ms(event_at)}, **which},
                self._tombstone(event_at, now))
            matched += result.matched_count
        return matched

    # --- the refresh protocol -----------------------------------------------------------------

    async def take_lease(self, key: str, version: int, owner: str, until: datetime,
                         now: datetime) -> bool:
        """Atomic: only one replica can move a free lease at a given version."""
        doc = await self.collection.find_one_and_update(
            {"_id": key, "version": version, "lease_until_ms": {"$lt": ms(now)}},
            {"$set": {"lease_until_ms": ms(until), "lease_owner": owner}},
            projection={"_id": True})
        return doc is not None

    async def store_refreshed(self, key: str, version: int, owner: str, grant: TokenGrant,
                              now: datetime) -> bool:
        """Compare-and-set the new tokens; false if our lease was voided meanwhile."""
        result = await self.collection.update_one(
            {"_id": key, "version": version, "lease_owner": owner},
            {"$set": self._tokens(grant, now), "$inc": {"version": 1}})
        return result.modified_count == 1

    async def mark_needs_reauth(self, key: str, version: int, owner: str,
                                now: datetime) -> bool:
        result = await self.collection.update_one(
            {"_id": key, "version": version, "lease_owner": owner},
            {"$set": {"status": InstallStatus.NEEDS_REAUTH.value, "updated_at_ms": ms(now),
                      **_FREE_LEASE},
             "$inc": {"version": 1}})
        return result.modified_count == 1

    async def release_lease(self, key: str, owner: str) -> None:
        await self.collection.update_one({"_id": key, "lease_owner": owner},
                                         {"$set": _FREE_LEASE})

    # --- settings -----------------------------------------------------------------------------

    async def update_prefs(self, key: str, changes: Mapping[str, Any],
                           now: datetime) -> Installation | None:
        """Apply the given settings (plain values; the Cast key is sealed here)."""
        update: Document = {"updated_at_ms": ms(now)}
        for name, value in changes.items():
            if name == "cast_api_key":
                update["prefs.cast_api_key_enc"] = self._seal(value)
            elif name == "inbound_numbers":
                update["prefs.inbound_numbers"] = list(value)
            else:
                update[f"prefs.{name}"] = value
        doc = await self.collection.find_one_and_update(
            {"_id": key, "kind": "location", "status": {"$in": _INSTALLED}},
            {"$set": update}, return_document=ReturnDocument.AFTER)
        return self._installation(doc) if doc is not None else None


class MongoEventLog:
    """`app_events`: the `webhookId` of every app event already handled, for a while."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def ensure_indexes(self) -> None:
        await self.collection.create_index("expires_at", expireAfterSeconds=0)

    async def seen(self, webhook_id: str) -> bool:
        return await self.collection.find_one({"_id": webhook_id}, {"_id": True}) is not None

    async def remember(self, webhook_id: str, now: datetime) -> None:
        # A BSON date, written on insert only: the TTL index needs one (stack.md quirk).
        with contextlib.suppress(DuplicateKeyError):
            await self.collection.update_one(
                {"_id": webhook_id}, {"$setOnInsert": {"expires_at": now + EVENT_MEMORY}},
                upsert=True)


class MongoAuditLog:
    """`admin_audit`: settings changes made through the admin API, kept AUDIT_MEMORY."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("location_id", ASCENDING), ("at", DESCENDING)])
        await self.collection.create_index("at", expireAfterSeconds=int(
            AUDIT_MEMORY.total_seconds()))

    async def record(self, entry: dict[str, Any]) -> None:
        await self.collection.insert_one(dict(entry))

    async def recent(self, location_id: str | None, limit: int) -> list[dict[str, Any]]:
        query = {} if location_id is None else {"location_id": location_id}
        cursor = self.collection.find(query, {"_id": False}).sort("at", DESCENDING).limit(limit)
        return [{**doc, "at": doc["at"].isoformat()} async for doc in cursor]
