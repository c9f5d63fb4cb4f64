"""The OAuth service's internal API, for the sender: tokens, location settings and inbound
routes, over HTTP with as many requests in flight as the callers need.

Only a caller presenting `SENDER_API_KEY` (`Authorization: Bearer`, compared in constant
time) gets an answer: the answers carry GHL access tokens and a location's decrypted Cast
key. A failure is an error of the family, mapped to HTTP once (`castghl.common.answers`),
so the caller gets the same class back and its worker decides retry or park as if the
error had happened in its own process. docs/architecture.md ("Look-ups") says why this
is HTTP and not a broker RPC.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ValidationError

from castghl.common.errors import BridgeError, InvalidRequest, ServiceUnavailable, Unauthorized
from castghl.common.logging import log_context
from castghl.common.messages import LocationSettings, RouteReply, TokenReply, TokenRequest
from castghl.common.phone import InvalidPhoneNumber, PhMobile
from castghl.common.validation import describe
from castghl.oauth.installation import Installation, location_key
from castghl.oauth.refresh import TokenService
from castghl.oauth.tenancy import DefaultKeyFor, location_settings

log = logging.getLogger(__name__)

# Asking for more validity than a GHL token ever has would refresh on every request.
MAX_MIN_VALID_SECONDS: Final = 6 * 3600
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Directory(Protocol):
    """What the settings and routing look-ups read from the installations repository."""

    async def get(self, key: str) -> Installation | None: ...

    async def route(self, number: str) -> str | None: ...


def _caller(sender_api_key: str) -> Callable[[Request], None]:
    expected = sender_api_key.encode()

    def check(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 expected):
            raise Unauthorized("missing or wrong SENDER_API_KEY (Authorization: Bearer)")

    return check


async def _answered(work: Awaitable[T]) -> T:
    """The family as it is; anything else (MongoDB away) as this service being unavailable."""
    try:
        return await work
    except BridgeError:
        raise
    except Exception as exc:
        log.exception("internal look-up failed")
        raise ServiceUnavailable("OAuth service problem: token store unavailable") from exc


def _read(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc)) from None


async def answer_token(tokens: TokenService, request: TokenRequest,
                       min_valid_floor: int) -> TokenReply:
    if request.stale_token:
        token = await tokens.refresh_if_stale(request.location_id, request.stale_token)
    else:
        wanted = max(min_valid_floor, request.min_valid_seconds)
        token = await tokens.get(request.location_id, min(wanted, MAX_MIN_VALID_SECONDS))
    return TokenReply(access_token=token.access_token, expires_at=token.expires_at)


async def answer_route(directory: Directory, number: str) -> RouteReply:
    try:
        known = PhMobile.parse(number)
    except InvalidPhoneNumber:
        return RouteReply(location_id=None)
    return RouteReply(location_id=await directory.route(known.e164))


def internal_router(tokens: TokenService, directory: Directory, *, sender_api_key: str,
                    default_key_for: DefaultKeyFor, min_valid_floor: int) -> APIRouter:
    router = APIRouter(prefix="/internal", include_in_schema=False,
                       dependencies=[Depends(_caller(sender_api_key))])

    @router.post("/tokens")
    async def token(request: Request) -> TokenReply:
        asked = _read(TokenRequest, await request.body())
        with log_context(locationId=asked.location_id):
            return await _answered(answer_token(tokens, asked, min_valid_floor))

    @router.get("/locations/{location_id}")
    async def location(location_id: str) -> LocationSettings:
        with log_context(locationId=location_id):
            inst = await _answered(directory.get(location_key(location_id)))
        return location_settings(location_id, inst, default_key_for)

    @router.get("/routes/{number}")
    async def route(number: str) -> RouteReply:
        return await _answered(answer_route(directory, number))

    return router
