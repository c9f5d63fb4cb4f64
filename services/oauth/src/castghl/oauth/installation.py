"""An installation of the app — on one location, or on a company (agency install).

This is what the store hands out, secrets already decrypted: the service code never sees
ciphertext, and the store never lets plaintext reach MongoDB. Secret fields are left out
of `repr` so an accidental log of an installation cannot leak them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from castghl.common.ghl.oauth import UserType
from castghl.common.messages import InstallStatus

Kind = Literal["location", "company"]
# A free lease is "expired at the epoch": the field is always present, so every replica's
# lease filter is a plain `$lt` comparison (stack.md: no `$exists`/`$ne` tricks needed).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def location_key(location_id: str) -> str:
    return f"location:{location_id}"


def company_key(company_id: str) -> str:
    return f"company:{company_id}"


Sending = Literal["allowed", "stopped"]


@dataclass(frozen=True)
class LocationPrefs:
    """Per-location settings an operator sets through the admin API."""

    sender_id: str | None = None
    cast_api_key: str | None = field(default=None, repr=False)
    rate_limit_per_second: float | None = None
    inbound_numbers: tuple[str, ...] = ()
    # "stopped": the operator stopped the location's SMS. A string, not a boolean: the
    # MongoDB-wire emulator stores a `$set` boolean as 1 (docs/architecture.md, "Mongo").
    sending: Sending = "allowed"


@dataclass(frozen=True)
class Installation:
    key: str
    kind: Kind
    location_id: str | None
    company_id: str | None
    status: InstallStatus
    version: int
    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None
    scopes: str
    user_type: UserType
    # A location token minted from its company's token: GHL gives it no refresh token,
    # so it is renewed by minting again.
    minted: bool
    lease_until: datetime
    lease_owner: str
    refreshed_at: datetime | None
    installed_at: datetime | None
    updated_at: datetime | None
    uninstalled_at: datetime | None
    # The time of the last change GHL told us about (an install, an uninstall): an app
    # event older than this is stale and ignored. None: no change recorded yet.
    changed_at: datetime | None = None
    prefs: LocationPrefs = LocationPrefs()

    @property
    def installed(self) -> bool:
        return self.status is not InstallStatus.UNINSTALLED

    @property
    def name(self) -> str:
        """The GHL id this installation is for (for logs and pages)."""
        return self.location_id or self.company_id or self.key

    def valid_for(self, seconds: float, now: datetime) -> bool:
        return (self.access_token is not None and self.expires_at is not None
                and self.expires_at - now >= timedelta(seconds=seconds))

    def lease_free(self, now: datetime) -> bool:
        return self.lease_until < now
