"""Authorization codes, access tokens and single-use rotating refresh tokens.

The store counts every refresh attempt and every reuse of a rotated refresh token, so
tests can assert "exactly one refresh reached GHL" and "no refresh token was reused" —
the two ways a multi-replica bridge breaks an installation (ghl.md §5).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from castghl.sandbox.ghl.errors import api_error, oauth_error
from castghl.sandbox.ghl.knobs import UserType

INVALID_REFRESH = "Invalid grant: refresh token is invalid"


@dataclass(frozen=True)
class Grant:
    """Whom tokens speak for: one installation of the app."""

    user_type: UserType
    company_id: str
    location_id: str | None
    user_id: str
    scope: str
    approved_locations: tuple[str, ...] = ()
    plan_id: str | None = None

    @property
    def resource(self) -> str:
        """The rate-limit and installation key: a location or a company."""
        return self.location_id if self.location_id is not None else self.company_id


@dataclass
class AccessToken:
    token: str
    grant: Grant
    expires_at: float
    revoked: bool = False

    def live(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


@dataclass
class RefreshToken:
    token: str
    grant: Grant
    state: Literal["valid", "rotated", "revoked"] = "valid"


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    grant: Grant
    expires_at: float
    used: bool = False


@dataclass
class Issued:
    access: AccessToken
    refresh: RefreshToken | None
    expires_in: int


@dataclass
class Counters:
    code_exchanges: int = 0
    refreshes: int = 0
    refresh_successes: int = 0
    refresh_reuses: int = 0
    refresh_rejections: int = 0
    location_tokens: int = 0

    def as_json(self) -> dict[str, int]:
        return dict(self.__dict__)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenStore:
    # The simulator's clock: every expiry, and each token's iat, is read from it.
    clock: Callable[[], float]
    # Signs the JWT-shaped tokens; per instance, so one simulator's tokens mean nothing to
    # another. Validity is still decided by lookup, never by the signature alone.
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _lock: threading.RLock = field(default_factory=threading.RLock)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    access: dict[str, AccessToken] = field(default_factory=dict)
    refresh: dict[str, RefreshToken] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)

    def reset(self) -> None:
        with self._lock:
            self.codes.clear()
            self.access.clear()
            self.refresh.clear()
            self.counters = Counters()

    def _mint(self, kind: str, grant: Grant, expires_at: float) -> str:
        # JWT-shaped like GHL's tokens (bearerFormat JWT); the jti makes it unguessable.
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {"authClass": grant.user_type, "authClassId": grant.resource,
                  "companyId": grant.company_id, "kind": kind, "iat": int(self.clock()),
                  "exp": int(expires_at), "jti": secrets.token_urlsafe(16)}
        signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode())
                                 for part in (header, claims))
        signature = hmac.new(self._secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(signature)}"

    # --- authorization codes --------------------------------------------------------------

    def new_code(self, client_id: str, redirect_uri: str, grant: Grant, ttl: float) -> str:
        code = secrets.token_hex(20)
        with self._lock:
            self.codes[code] = AuthCode(code, client_id, redirect_uri, grant,
                                        self.clock() + ttl)
        return code

    def redeem(self, code: str, client_id: str, redirect_uri: str | None) -> Grant:
        with self._lock:
            self.counters.code_exchanges += 1
            found = self.codes.get(code)
            if found is None or found.used or found.client_id != client_id:
                raise oauth_error(400, "invalid_grant",
                                  "Invalid grant: authorization code is invalid")
            # Spent even when it fails below: a code is good for one attempt.
            found.used = True
            if self.clock() >= found.expires_at:
                raise oauth_error(400, "invalid_grant",
                                  "Invalid grant: authorization code has expired")
            if redirect_uri is not None and redirect_uri != found.redirect_uri:
                raise oauth_error(400, "invalid_request",
                                  "Invalid request: `redirect_uri` is invalid")
            return found.grant

    # --- issuing and refreshing -----------------------------------------------------------

    def issue(self, grant: Grant, ttl: int, with_refresh: bool = True) -> Issued:
        now = self.clock()
        expires_at = now + ttl
        access = AccessToken(self._mint("access", grant, expires_at), grant, expires_at)
        refresh = (RefreshToken(self._mint("refresh", grant, now + 365 * 86400),
                                grant) if with_refresh else None)
        with self._lock:
            self.access[access.token] = access
            if refresh is not None:
                self.refresh[refresh.token] = refresh
        return Issued(access, refresh, ttl)

    def rotate(self, token: str, ttl: int, inactive: list[str], revoke_old_access: bool
               ) -> Issued:
        """Spend `token` and issue a new pair; all checks and the spend are one step."""
        with self._lock:
            self.counters.refreshes += 1
            found = self.refresh.get(token)
            if found is None or found.state != "valid":
                self.counters.refresh_rejections += 1
                if found is not None and found.state == "rotated":
                    self.counters.refresh_reuses += 1
                raise oauth_error(400, "invalid_grant", INVALID_REFRESH)
            if found.grant.location_id in inactive:
                # A paused location: the refresh token is NOT spent and works again later.
                self.counters.refresh_rejections += 1
                raise api_error(400, "Location is not active")
            found.state = "rotated"
            if revoke_old_access:
                for access in self.access.values():
                    if access.grant.resource == found.grant.resource:
                        access.revoked = True
            self.counters.refresh_successes += 1
            return self.issue(found.grant, ttl)

    def count_location_token(self) -> None:
        with self._lock:
            self.counters.location_tokens += 1

    def grant_of_refresh(self, token: str) -> Grant | None:
        with self._lock:
            found = self.refresh.get(token)
        return found.grant if found is not None else None

    # --- checking, expiring, revoking -----------------------------------------------------

    def lookup(self, token: str) -> AccessToken | None:
        with self._lock:
            found = self.access.get(token)
        return found if found is not None and found.live(self.clock()) else None

    def _matches(self, grant: Grant, location_id: str | None, company_id: str | None
                 ) -> bool:
        if location_id is None and company_id is None:
            return True
        if location_id is not None:
            return grant.location_id == location_id
        # A company means everything under it: its own token and its locations' tokens.
        return grant.company_id == company_id

    def expire(self, location_id: str | None, company_id: str | None) -> int:
        now = self.clock()
        with self._lock:
            hit = [a for a in self.access.values()
                   if a.live(now) and self._matches(a.grant, location_id, company_id)]
            for access in hit:
                access.expires_at = now - 1
        return len(hit)

    def revoke(self, location_id: str | None, company_id: str | None, access: bool) -> int:
        with self._lock:
            hit = [r for r in self.refresh.values()
                   if r.state == "valid" and self._matches(r.grant, location_id, company_id)]
            for refresh in hit:
                refresh.state = "revoked"
            if access:
                for token in self.access.values():
                    if self._matches(token.grant, location_id, company_id):
                        token.revoked = True
        return len(hit)

    def snapshot(self) -> dict[str, Any]:
        """Counters plus, per installation, the newest access and refresh token."""
        now = self.clock()
        locations: dict[str, dict[str, Any]] = {}
        companies: dict[str, dict[str, Any]] = {}
        with self._lock:
            for access in self.access.values():
                grant = access.grant
                into = locations if grant.location_id is not None else companies
                into.setdefault(grant.resource, {}).update({
                    "access_token": access.token, "expires_at": access.expires_at,
                    "expired": not access.live(now), "scope": grant.scope,
                    "userType": grant.user_type, "companyId": grant.company_id})
            for refresh in self.refresh.values():
                grant = refresh.grant
                into = locations if grant.location_id is not None else companies
                entry = into.setdefault(grant.resource, {})
                if refresh.state == "valid" or "refresh_token" not in entry:
                    entry.update({"refresh_token": refresh.token,
                                  "refresh_state": refresh.state})
            return {**self.counters.as_json(), "tokens": locations,
                    "company_tokens": companies}
