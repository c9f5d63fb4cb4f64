"""The operator's admin API: list installations, read and set per-location settings.

Bearer `ADMIN_API_KEY`, compared in constant time. Answers never carry a token and show
a Cast API key only masked. A bad request is refused whole with a 4xx naming the
problem (never echoing values): nothing is written unless everything is valid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal, Protocol

from fastapi import APIRouter, Depends, Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from castghl.common.answers import bearer
from castghl.common.cast.channels import channel_of
from castghl.common.cast.models import CastSenderIds
from castghl.common.errors import (
    AccountError,
    Conflict,
    InvalidRequest,
    NotFound,
    PermanentError,
)
from castghl.common.phone import InvalidPhoneNumber, PhMobile
from castghl.common.usage import MANILA, period, totals
from castghl.common.validation import fields, whole_body
from castghl.oauth.changes import Notices
from castghl.oauth.installation import Installation, location_key
from castghl.oauth.refresh import utcnow
from castghl.oauth.tenancy import DefaultKeyFor, cast_key, state_of

MAX_INBOUND_NUMBERS: Final = 100
# Cast's sandbox keys: mock answers, nothing sent (reference/cast.md, "Basics").
SANDBOX_KEY_PREFIX: Final = "cast_test_"
_SHOWN_INPUT: Final = 24

# Cast allows 20 characters (its newer doc; the older one said 11).
SenderId = Annotated[str, StringConstraints(min_length=1, max_length=20,
                                            pattern=r"^[A-Za-z0-9][A-Za-z0-9 .&-]*$")]
# Cast keys are `cast_<64 hex>` (sandbox: `cast_test_…`); anything else is a paste error.
CastKey = Annotated[str, StringConstraints(pattern=r"^cast_[A-Za-z0-9_-]{8,256}$")]


class SettingsStore(Protocol):
    async def all(self, limit: int = 1000) -> list[Installation]: ...

    async def get(self, key: str) -> Installation | None: ...

    async def update_prefs(self, key: str, changes: dict[str, Any],
                           now: datetime) -> Installation | None: ...

    async def owners_of(self, numbers: list[str], except_key: str) -> dict[str, str]: ...


class SenderIdSource(Protocol):
    async def sender_ids(self, *, api_key: str) -> CastSenderIds | None: ...


@dataclass(frozen=True)
class SenderIdCheck:
    """Asks the location's Cast account whether it has a sender ID, before it is set: a
    typo would otherwise fail every message."""

    cast: SenderIdSource
    default_api_key: str

    def key_for(self, inst: Installation, changes: dict[str, Any],
                default_key_for: DefaultKeyFor) -> str | None:
        """The Cast key the location sends with once `changes` apply (None: no key)."""
        own = changes.get("cast_api_key", inst.prefs.cast_api_key)
        if own:
            return str(own)
        return self.default_api_key if default_key_for.allows(inst.company_id) else None

    async def check(self, api_key: str, sender_id: str | None) -> None:
        """The key works (Cast answers with it), and has `sender_id` when one is given."""
        try:
            listed = await self.cast.sender_ids(api_key=api_key)
        except AccountError as exc:
            raise PermanentError(f"Cast refused the location's Cast key ({exc.code})",
                                 code="cast_key_refused") from None
        if sender_id is None:
            return
        try:
            found = channel_of(listed, sender_id)
        except PermanentError as exc:
            raise PermanentError(exc.detail, code="invalid_settings") from None
        if found is None:
            have = ", ".join(sorted(s.sender_id for s in listed.sender_ids)) if listed else ""
            raise PermanentError(f"sender_id: {sender_id!r} is not a sender ID of this "
                                 f"location's Cast account (it has: {have[:300]})",
                                 code="invalid_settings")


def is_sandbox_key(api_key: str | None) -> bool:
    return api_key is not None and api_key.startswith(SANDBOX_KEY_PREFIX)


class AuditLog(Protocol):
    """Who changed which location's settings, when, and to what (never a secret)."""

    async def record(self, entry: dict[str, Any]) -> None: ...

    async def recent(self, location_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Newest first, with `at` as an ISO time."""
        ...


# Settings whose values never reach the audit log: it says only that they were set.
SECRET_SETTINGS: Final = frozenset({"cast_api_key"})
# The admin API has one credential, so one actor; the console will name its users.
ADMIN_API_ACTOR: Final = "admin-api"


CONSOLE_ACTOR: Final = "console"  # one credential, so one actor (docs/oauth.md)


def audit_entry(location_id: str, changes: dict[str, Any], now: datetime,
                actor: str = ADMIN_API_ACTOR) -> dict[str, Any]:
    shown = {name: ("set" if value else "cleared") if name in SECRET_SETTINGS else value
             for name, value in sorted(changes.items())}
    return {"at": now, "actor": actor, "location_id": location_id, "action": "settings",
            "changes": shown}


class UsageReader(Protocol):
    async def days(self, location_id: str, first: str, last: str) -> list[dict[str, Any]]:
        """Usage rows (`castghl.common.usage.day_row`) from day `first` to `last`."""
        ...


class SettingsUpdate(BaseModel):
    """`PUT /admin/installations/{locationId}`: only the fields given change; `null`
    returns a field to the default (and removes a stored Cast key)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sender_id: SenderId | None = None
    cast_api_key: CastKey | None = None
    rate_limit_per_second: float | None = Field(None, gt=0, le=1000)
    inbound_numbers: list[str] | None = Field(None, max_length=MAX_INBOUND_NUMBERS)
    # "stopped": every SMS of the location fails at once, told so in GHL; null allows.
    sending: Literal["allowed", "stopped"] | None = None

    @field_validator("inbound_numbers")
    @classmethod
    def _normalise(cls, numbers: list[str] | None) -> list[str] | None:
        if numbers is None:
            return None
        normal: list[str] = []
        for position, raw in enumerate(numbers):
            try:
                number = PhMobile.parse(raw).e164
            except InvalidPhoneNumber as exc:
                raise ValueError(f"entry {position} ({raw[:_SHOWN_INPUT]!r}) is not a "
                                 f"Philippine mobile number ({exc.reason})") from None
            if number not in normal:
                normal.append(number)
        return normal


def mask(cast_api_key: str | None) -> str | None:
    if not cast_api_key:
        return None
    return f"cast_…{cast_api_key[-4:]}" if len(cast_api_key) >= 16 else "cast_…"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def view(inst: Installation, default_key_for: DefaultKeyFor, keys: SenderIdCheck
         ) -> dict[str, Any]:
    """An installation as the admin API shows it: no secrets.

    `state` is what the operator acts on (active, needs_reauth, not_set_up, uninstalled);
    `cast_key` says which Cast account its SMS go out on (own, default or none);
    `token_source` where its GHL token comes from (its own install, or its agency's);
    `cast_sandbox` that its key is a Cast sandbox key (`cast_test_…`): Cast answers but
    sends nothing (reference/cast.md, "Basics")."""
    prefs = inst.prefs
    return {
        "location_id": inst.location_id, "company_id": inst.company_id, "kind": inst.kind,
        "state": state_of(inst, default_key_for).value, "status": inst.status.value,
        "cast_key": cast_key(inst, default_key_for).value if inst.kind == "location" else None,
        "token_source": "agency" if inst.minted else "install", "scopes": inst.scopes,
        "cast_sandbox": is_sandbox_key(keys.key_for(inst, {}, default_key_for)),
        "token_expires_at": _iso(inst.expires_at), "refreshed_at": _iso(inst.refreshed_at),
        "installed_at": _iso(inst.installed_at), "updated_at": _iso(inst.updated_at),
        "uninstalled_at": _iso(inst.uninstalled_at), "changed_at": _iso(inst.changed_at),
        "settings": {"sender_id": prefs.sender_id, "cast_api_key": mask(prefs.cast_api_key),
                     "rate_limit_per_second": prefs.rate_limit_per_second,
                     "inbound_numbers": list(prefs.inbound_numbers),
                     "sending": prefs.sending},
    }


def _refusal(exc: ValidationError) -> PermanentError:
    """400 for a body that is not a JSON object; 422 naming each bad setting otherwise."""
    whole = whole_body(exc)
    if whole:
        return InvalidRequest(whole)
    return PermanentError(fields(exc, unknown="unknown setting"), code="invalid_settings")


@dataclass
class SettingsEditor:
    """The one way a location's settings change, from the admin API or the console:
    checked (a sender ID against the location's Cast account, inbound numbers against
    other locations), stored, audited, and announced to the senders."""

    store: SettingsStore
    sender_ids: SenderIdCheck
    notices: Notices
    audit: AuditLog
    default_key_for: DefaultKeyFor
    clock: Callable[[], datetime] = utcnow

    async def installed(self, location_id: str) -> Installation:
        inst = await self.store.get(location_key(location_id))
        if inst is None:
            raise NotFound("no installation for this location")
        return inst

    async def apply(self, location_id: str, update: SettingsUpdate, *,
                    actor: str = ADMIN_API_ACTOR) -> Installation:
        inst = await self.installed(location_id)
        if not inst.installed:
            raise Conflict("this location is uninstalled; reinstall the app first")
        changes = update.model_dump(include=update.model_fields_set)
        api_key = self.sender_ids.key_for(inst, changes, self.default_key_for)
        # A new key must work, and carry the sender ID the location keeps using.
        new_key = changes.get("cast_api_key") is not None
        sender_id = changes.get("sender_id", inst.prefs.sender_id if new_key else None)
        if api_key is not None and (sender_id is not None or new_key):
            await self.sender_ids.check(api_key, sender_id)
        if "sending" in changes:
            changes["sending"] = changes["sending"] or "allowed"
        if "inbound_numbers" in changes:
            changes["inbound_numbers"] = changes["inbound_numbers"] or []
            owners = await self.store.owners_of(changes["inbound_numbers"], inst.key)
            if owners:
                taken = ", ".join(f"{number} (location {owner})"
                                  for number, owner in sorted(owners.items()))
                raise Conflict(f"inbound numbers already in use: {taken}")
        now = self.clock()
        updated = await self.store.update_prefs(inst.key, changes, now)
        if updated is None:
            raise Conflict("this location was uninstalled meanwhile")
        await self.audit.record(audit_entry(location_id, changes, now, actor))
        await self.notices.location(location_id)  # the next message uses the new settings
        return updated


def admin_router(store: SettingsStore, admin_api_key: str, default_key_for: DefaultKeyFor,
                 notices: Notices, *, sender_ids: SenderIdCheck, usage: UsageReader,
                 audit: AuditLog, clock: Callable[[], datetime] = utcnow) -> APIRouter:
    router = APIRouter(prefix="/admin", include_in_schema=False,
                       dependencies=[Depends(bearer(admin_api_key, "ADMIN_API_KEY"))])
    editor = SettingsEditor(store, sender_ids, notices, audit, default_key_for, clock)
    installed = editor.installed

    @router.get("/installations")
    async def list_installations(limit: int = 1000) -> dict[str, Any]:
        found = await store.all(max(1, min(limit, 5000)))
        return {"installations": [view(inst, default_key_for, sender_ids) for inst in found]}

    @router.get("/installations/{location_id}")
    async def get_installation(location_id: str) -> dict[str, Any]:
        return view(await installed(location_id), default_key_for, sender_ids)

    @router.get("/installations/{location_id}/usage")
    async def get_usage(location_id: str, since: str | None = None,
                        until: str | None = None) -> dict[str, Any]:
        """Per Philippine day: SMS parts sent, messages delivered and failed — what the
        location is billed by. Default: the last 31 days; at most USAGE_RETENTION."""
        await installed(location_id)
        try:
            first, last = period(since, until, clock().astimezone(MANILA).date(), days=31)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        rows = await usage.days(location_id, first.isoformat(), last.isoformat())
        return {"location_id": location_id, "since": first.isoformat(),
                "until": last.isoformat(), "timezone": "Asia/Manila",
                "totals": totals(rows), "days": rows}

    @router.put("/installations/{location_id}")
    async def put_installation(location_id: str, request: Request) -> dict[str, Any]:
        try:
            update = SettingsUpdate.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _refusal(exc) from None
        updated = await editor.apply(location_id, update)
        return view(updated, default_key_for, sender_ids)

    @router.get("/audit")
    async def get_audit(location_id: str | None = None, limit: int = 100) -> dict[str, Any]:
        """Settings changes, newest first: who, when, which location, what (no secret)."""
        return {"entries": await audit.recent(location_id, max(1, min(limit, 1000)))}

    return router
