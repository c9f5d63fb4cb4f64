"""The token service: hand out valid tokens, refreshing each installation single-flight.

GHL refresh tokens are single-use (reference/ghl.md §5): two refreshes of one installation
at once spend the same token twice and break it for good. So a refresh happens only under
a lease in MongoDB, taken with an atomic compare on `version` and a free lease; the holder
calls GHL and compare-and-sets the new tokens (version + 1) *before* handing the access
token to anyone. Everyone else — other replicas, polling MongoDB — returns whatever the
new version holds. Inside one process concurrent callers share one flight per
installation, so a burst of requests makes one lease attempt, not one each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prometheus_client import Counter

from castghl.common.errors import (
    BridgeError,
    LocationInactive,
    NeedsReauth,
    NotInstalled,
    UpstreamUnavailable,
)
from castghl.common.ghl.errors import GhlUnauthorized
from castghl.common.ghl.oauth import InvalidGrant, TokenGrant, UserType
from castghl.common.logging import log_context
from castghl.common.messages import InstallStatus
from castghl.common.singleflight import SingleFlight
from castghl.oauth.installation import (
    Installation,
    Kind,
    company_key,
    location_key,
)

log = logging.getLogger(__name__)

REFRESHES = Counter("castghl_oauth_refreshes_total", "Token renewals attempted with GHL",
                    ["kind", "result"])
NEEDS_REAUTH = Counter("castghl_oauth_needs_reauth_total",
                       "Installations whose refresh token GHL refused (reinstall needed)")

Needs = Callable[[Installation], bool]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_at: datetime


class TokenIssuer(Protocol):
    """GHL's token endpoints (castghl.common.ghl.oauth.GhlOAuth)."""

    async def refresh(self, refresh_token: str, user_type: UserType) -> TokenGrant: ...

    async def location_token(self, company_token: str, company_id: str,
                             location_id: str) -> TokenGrant: ...


class TokenStore(Protocol):
    """What the token service needs of the installations repository."""

    async def get(self, key: str) -> Installation | None: ...

    async def get_many(self, keys: list[str]) -> dict[str, Installation]: ...

    async def save_grant(self, grant: TokenGrant, *, kind: Kind, location_id: str | None,
                         company_id: str | None, minted: bool, now: datetime,
                         event_at: datetime | None = None) -> Installation | None: ...

    async def take_lease(self, key: str, version: int, owner: str, until: datetime,
                         now: datetime) -> bool: ...

    async def store_refreshed(self, key: str, version: int, owner: str, grant: TokenGrant,
                              now: datetime) -> bool: ...

    async def mark_needs_reauth(self, key: str, version: int, owner: str,
                                now: datetime) -> bool: ...

    async def release_lease(self, key: str, owner: str) -> None: ...



@dataclass(frozen=True)
class RefreshPolicy:
    lease_seconds: float = 45.0
    # Bounded wait for another replica's refresh: its lease, plus a little for its write.
    wait_seconds: float = 50.0
    poll_seconds: float = 0.05
    # The whole GHL call, not httpx's per-read timeout: the lease must outlive it.
    call_timeout: float = 20.0


def usable(inst: Installation | None, what: str) -> Installation:
    if inst is None or not inst.installed:
        raise NotInstalled(f"{what} is not installed")
    if inst.status is InstallStatus.NEEDS_REAUTH:
        raise NeedsReauth(f"GHL refused the refresh token of {what}: reinstall the app")
    return inst


def issued(inst: Installation, now: datetime) -> IssuedToken:
    if inst.access_token is None or inst.expires_at is None or inst.expires_at <= now:
        raise UpstreamUnavailable(f"no valid token stored for {inst.name}")
    return IssuedToken(inst.access_token, inst.expires_at)


class TokenService:
    def __init__(self, store: TokenStore, issuer: TokenIssuer, owner: str,
                 policy: RefreshPolicy | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.issuer = issuer
        self.owner = owner  # this process, as written into the leases it takes
        self.policy = policy or RefreshPolicy()
        self.clock = clock
        self._flights: SingleFlight[str, IssuedToken] = SingleFlight()

    # --- asking for tokens --------------------------------------------------------------------

    async def get(self, location_id: str, min_valid_seconds: float) -> IssuedToken:
        """A token of the location valid at least `min_valid_seconds` (if GHL's tokens
        live that long), refreshing it when needed."""
        return await self._token(location_key(location_id), location_id,
                                 lambda i: not i.valid_for(min_valid_seconds, self.clock()))

    async def get_many(self, asks: Sequence[tuple[str, float]]
                       ) -> dict[str, IssuedToken | BridgeError]:
        """`get` for many locations at once (location id, min valid seconds): one read of
        the store for all, then a renewal — single-flight, all at the same time — for
        those that need one. Each answer is a token or the error family's reason."""
        found = await self.store.get_many([location_key(location_id) for location_id, _ in asks])

        async def one(location_id: str, min_valid: float) -> IssuedToken | BridgeError:
            key = location_key(location_id)
            try:
                return await self._token_of(
                    found.get(key), key, location_id,
                    lambda i: not i.valid_for(min_valid, self.clock()))
            except BridgeError as error:
                return error

        answers = await asyncio.gather(*(one(location_id, min_valid)
                                         for location_id, min_valid in asks))
        return {location_id: answer for (location_id, _), answer
                in zip(asks, answers, strict=True)}

    async def company_token(self, company_id: str, min_valid_seconds: float) -> IssuedToken:
        return await self._token(company_key(company_id), f"company {company_id}",
                                 lambda i: not i.valid_for(min_valid_seconds, self.clock()))

    async def refresh_if_stale(self, location_id: str, stale_token: str) -> IssuedToken:
        """Refresh only if the stored token is still `stale_token` (GHL just refused it);
        otherwise someone already replaced it: return that."""
        return await self._replace(location_key(location_id), location_id, stale_token)

    async def _replace(self, key: str, what: str, stale_token: str) -> IssuedToken:
        return await self._token(
            key, what,
            lambda i: i.access_token == stale_token or not i.valid_for(0, self.clock()))

    async def _token(self, key: str, what: str, needs: Needs) -> IssuedToken:
        return await self._token_of(await self.store.get(key), key, what, needs)

    async def _token_of(self, stored: Installation | None, key: str, what: str,
                        needs: Needs) -> IssuedToken:
        inst = usable(stored, what)
        if not needs(inst):
            return issued(inst, self.clock())
        return await self._flights.run(key, lambda: self._renew(inst, needs))

    # --- the single flight --------------------------------------------------------------------

    async def _renew(self, seen: Installation, needs: Needs) -> IssuedToken:
        """Refresh under the lease, or wait for whoever holds it; bounded in time."""
        deadline = time.monotonic() + self.policy.wait_seconds
        inst: Installation | None = seen
        while True:
            inst = usable(inst, seen.name)
            now = self.clock()
            # Any change since we decided to refresh (a refresh, a reinstall) answers us:
            # asking GHL again would refresh twice for one need.
            if inst.version != seen.version or not needs(inst):
                return issued(inst, now)
            if inst.lease_free(now) and await self.store.take_lease(
                    inst.key, inst.version, self.owner,
                    now + timedelta(seconds=self.policy.lease_seconds), now):
                return await self._refresh_under_lease(inst)
            if time.monotonic() >= deadline:
                raise UpstreamUnavailable(
                    f"timed out waiting for another refresh of {seen.name}")
            await asyncio.sleep(self.policy.poll_seconds)
            inst = await self.store.get(seen.key)

    async def _refresh_under_lease(self, inst: Installation) -> IssuedToken:
        with log_context(locationId=inst.location_id):
            try:
                async with asyncio.timeout(self.policy.call_timeout):
                    grant = await self._new_grant(inst)
            except InvalidGrant:
                REFRESHES.labels(inst.kind, "invalid_grant").inc()
                await self._give_up(inst)
                raise NeedsReauth(f"GHL refused the refresh token of {inst.name}: "
                                  "reinstall the app") from None
            except BaseException as exc:
                REFRESHES.labels(inst.kind, "failed").inc()
                await self._release(inst)
                failure = self._failure(exc, inst)
                if failure is exc:
                    raise
                raise failure from exc
            now = self.clock()
            if not await self._store(inst, grant, now):
                # Our lease was voided (reinstall, uninstall, or it ran out): what is stored
                # now wins, and this grant is never handed out unstored.
                REFRESHES.labels(inst.kind, "lost").inc()
                log.error("refreshed token not stored: the lease was voided meanwhile",
                          extra={"companyId": inst.company_id})
                return issued(usable(await self.store.get(inst.key), inst.name), now)
            REFRESHES.labels(inst.kind, "ok").inc()
            log.info("token refreshed", extra={"companyId": inst.company_id,
                                               "kind": inst.kind})
            return IssuedToken(grant.access_token, grant.expires_at(now))

    async def _store(self, inst: Installation, grant: TokenGrant, now: datetime) -> bool:
        """Compare-and-set the new tokens, retrying a failing MongoDB while the lease lasts:
        GHL has already spent the old refresh token, so this write is the only copy."""
        delay = 0.1
        deadline = time.monotonic() + self.policy.lease_seconds - self.policy.call_timeout
        while True:
            try:
                return await self.store.store_refreshed(inst.key, inst.version, self.owner,
                                                        grant, now)
            except Exception:
                if time.monotonic() + delay > deadline:
                    log.exception("refreshed token could not be stored: reinstall may be needed")
                    raise
                log.warning("storing a refreshed token failed; retrying", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _release(self, inst: Installation) -> None:
        try:
            await self.store.release_lease(inst.key, self.owner)
        except Exception:  # the lease then simply runs out
            log.warning("could not release a refresh lease", exc_info=True)

    async def _new_grant(self, inst: Installation) -> TokenGrant:
        if inst.refresh_token is not None:
            return await self.issuer.refresh(inst.refresh_token, inst.user_type)
        if inst.minted and inst.company_id is not None and inst.location_id is not None:
            return await self._mint(inst.company_id, inst.location_id)
        raise NeedsReauth(f"no refresh token stored for {inst.name}")

    async def _give_up(self, inst: Installation) -> None:
        if await self.store.mark_needs_reauth(inst.key, inst.version, self.owner,
                                              self.clock()):
            # Once per installation: only the lease holder's compare-and-set gets here.
            NEEDS_REAUTH.inc()
            log.warning("GHL refused the refresh token: the installation needs a reinstall",
                        extra={"companyId": inst.company_id, "kind": inst.kind})

    @staticmethod
    def _failure(exc: BaseException, inst: Installation) -> BaseException:
        """What a failed renewal means to whoever asked for the token."""
        if isinstance(exc, NotInstalled | NeedsReauth | LocationInactive | UpstreamUnavailable
                      | asyncio.CancelledError):
            return exc
        if isinstance(exc, BridgeError | TimeoutError):
            code = exc.code if isinstance(exc, BridgeError) else "timeout"
            log.warning("token refresh failed", extra={"error_code": code})
            return UpstreamUnavailable(f"GHL token refresh of {inst.name} failed ({code})")
        return exc

    # --- agency installs ----------------------------------------------------------------------

    async def mint_location(self, company_id: str, location_id: str,
                            event_at: datetime | None = None) -> Installation | None:
        """Mint and store a location token from the company's token (agency installs).

        A location installed on its own keeps its own tokens. With `event_at` (the GHL
        event asking for it), nothing is stored if the location changed after it, and
        None is returned. Raises the error family: `NotInstalled` / `NeedsReauth` when the
        company has no usable token, the GHL client's errors when GHL refuses or is away.
        """
        own = await self.store.get(location_key(location_id))
        if own is not None and own.status is InstallStatus.ACTIVE and not own.minted:
            return own
        grant = await self._mint(company_id, location_id)
        return await self.store.save_grant(grant, kind="location", location_id=location_id,
                                           company_id=company_id, minted=True,
                                           now=self.clock(), event_at=event_at)

    async def _mint(self, company_id: str, location_id: str) -> TokenGrant:
        """A location token from the company's; if GHL refuses the company token before
        its time (revoked, expired early), that one is renewed once and used again."""
        company = await self.company_token(company_id, self.policy.call_timeout)
        try:
            return await self.issuer.location_token(company.access_token, company_id,
                                                    location_id)
        except GhlUnauthorized:
            log.info("GHL refused the agency token early; renewing it",
                     extra={"companyId": company_id})
            company = await self._replace(company_key(company_id), f"company {company_id}",
                                          company.access_token)
            return await self.issuer.location_token(company.access_token, company_id,
                                                    location_id)

    # --- keeping idle refresh tokens alive ----------------------------------------------------

    async def refresh_if_idle(self, key: str, cutoff: datetime) -> bool:
        """Refresh an installation last refreshed before `cutoff` (single-flight, like any
        refresh); false when there was nothing to do."""
        inst = await self.store.get(key)
        if inst is None or inst.status is not InstallStatus.ACTIVE or not inst.refresh_token:
            return False  # minted tokens are renewed by minting, not by a refresh token

        def idle(i: Installation) -> bool:
            return i.refreshed_at is None or i.refreshed_at < cutoff

        if not idle(inst):
            return False
        await self._flights.run(key, lambda: self._renew(inst, idle))
        return True
