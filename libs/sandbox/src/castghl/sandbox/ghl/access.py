"""The checks every GHL API call passes, in GHL's order: token, rate limit, token class,
scope, then the `Version` header.

Rate limiting comes right after authentication because it is keyed by the token's
resource; from then on even refused calls carry the X-RateLimit-* headers.
"""

from __future__ import annotations

from fastapi import Request

from castghl.sandbox.ghl.errors import (
    MISSING_SCOPE,
    VERSION_INVALID,
    VERSION_MISSING,
    WRONG_AUTH_CLASS,
    ApiError,
    nest_body,
    unauthorized,
)
from castghl.sandbox.ghl.knobs import GhlKnobs, UserType
from castghl.sandbox.ghl.ratelimit import STATE_KEY, RateLimiter
from castghl.sandbox.ghl.tokens import AccessToken, TokenStore

CONVERSATIONS_VERSION = "2021-04-15"
CONTACTS_VERSION = "2021-07-28"  # also the OAuth helper endpoints
# Versions GHL publishes; with `strict_version` off any of them passes, as on the live API
# where a published-but-different version is accepted.
PUBLISHED_VERSIONS = frozenset({"2021-04-15", "2021-07-28"})


class Gate:
    def __init__(self, knobs: GhlKnobs, tokens: TokenStore, limiter: RateLimiter) -> None:
        self.knobs = knobs
        self.tokens = tokens
        self.limiter = limiter

    def check(self, request: Request, *, user_type: UserType, version: str, scope: str
              ) -> AccessToken:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        found = self.tokens.lookup(token.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise unauthorized()

        verdict = self.limiter.hit(found.grant.resource, self.knobs)
        setattr(request.state, STATE_KEY, verdict.headers)
        if not verdict.allowed:
            raise ApiError(429, nest_body(429, "Too Many Requests"))

        if found.grant.user_type != user_type:
            raise unauthorized(WRONG_AUTH_CLASS)
        if self.knobs.enforce_scopes and scope not in found.grant.scope.split():
            raise unauthorized(MISSING_SCOPE)

        sent = request.headers.get("version")
        if sent is None:
            raise unauthorized(VERSION_MISSING)
        allowed = {version} if self.knobs.strict_version else PUBLISHED_VERSIONS
        if sent not in allowed:
            raise unauthorized(VERSION_INVALID)
        return found
