"""The tenant model: who may send, on whose Cast key, and how an installation stands.

A valid GHL signature proves only that GHL sent a webhook (every app shares GHL's key), so
what lets a location send is an installation of *this* app: its own, or one minted
through its agency's. Its SMS go out on its own Cast key when it has one; else on the
operator's default key only where `CAST_DEFAULT_KEY_FOR` allows its company (`*` for
every company, empty for none: secure by default); else it is "not set up" and nothing
is sent. docs/oauth.md ("Tenants") tells the whole model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from castghl.common.messages import CastKey, InstallStatus, LocationSettings
from castghl.oauth.installation import Installation

_GHL_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class DefaultKeyFor:
    """`CAST_DEFAULT_KEY_FOR`: the companies whose locations may use the default key."""

    everyone: bool = False
    companies: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, value: object) -> DefaultKeyFor:
        """`*`, `companyA,companyB`, or empty; the error names an entry by position only."""
        if isinstance(value, DefaultKeyFor):
            return value
        if not isinstance(value, str):
            # A ValueError, not a TypeError: pydantic reports only the former as invalid.
            raise ValueError("must be `*` or GHL company ids separated by commas")  # noqa: TRY004
        items = [item.strip() for item in value.split(",") if item.strip()]
        if items == ["*"]:
            return cls(everyone=True)
        for position, item in enumerate(items, 1):
            if item == "*":
                raise ValueError("`*` stands alone: it already means every company")
            if not _GHL_ID.fullmatch(item):
                raise ValueError(f"entry {position} is not a GHL company id")
        return cls(companies=frozenset(items))

    def allows(self, company_id: str | None) -> bool:
        return self.everyone or (company_id is not None and company_id in self.companies)

    def __str__(self) -> str:
        return "*" if self.everyone else ",".join(sorted(self.companies))


class State(StrEnum):
    """How the admin API shows an installation: the first of these that applies."""

    UNINSTALLED = "uninstalled"
    STOPPED = "stopped"  # the operator stopped its SMS
    NEEDS_REAUTH = "needs_reauth"
    NOT_SET_UP = "not_set_up"  # a location with no Cast key it may use
    ACTIVE = "active"


def cast_key(inst: Installation, default: DefaultKeyFor) -> CastKey:
    if inst.prefs.cast_api_key:
        return CastKey.OWN
    return CastKey.DEFAULT if default.allows(inst.company_id) else CastKey.NONE


def state_of(inst: Installation, default: DefaultKeyFor) -> State:
    if inst.status is InstallStatus.UNINSTALLED:
        return State.UNINSTALLED
    if inst.prefs.sending == "stopped":
        return State.STOPPED
    if inst.status is InstallStatus.NEEDS_REAUTH:
        return State.NEEDS_REAUTH
    if inst.kind == "location" and cast_key(inst, default) is CastKey.NONE:
        return State.NOT_SET_UP
    return State.ACTIVE


def location_settings(location_id: str, inst: Installation | None,
                      default: DefaultKeyFor) -> LocationSettings:
    """What the sender needs to send for a location, and nothing more: an uninstalled or
    unknown location gets no settings at all, and only a location's own key travels."""
    if inst is None:
        return LocationSettings(location_id=location_id)
    if not inst.installed:
        return LocationSettings(location_id=location_id, status=inst.status,
                                company_id=inst.company_id)
    prefs, key = inst.prefs, cast_key(inst, default)
    return LocationSettings(
        location_id=location_id, status=inst.status, company_id=inst.company_id,
        cast_key=key, cast_api_key=prefs.cast_api_key if key is CastKey.OWN else None,
        sender_id=prefs.sender_id, rate_limit_per_second=prefs.rate_limit_per_second,
        inbound_numbers=list(prefs.inbound_numbers), stopped=prefs.sending == "stopped")
