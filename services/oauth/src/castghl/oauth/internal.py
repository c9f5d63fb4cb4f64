"""The OAuth service's internal API, for the sender: tokens, location settings and inbound
routes, over HTTP. Tokens and settings are asked for many locations per call (the
sender gathers what it needs at the same moment, `castghl.common.batching`): one call,
one read of the store, for a burst of hundreds.

Only a caller presenting `SENDER_API_KEY` (`Authorization: Bearer`, compared in constant
time) gets an answer: the answers carry GHL access tokens and a location's decrypted Cast
key. A failure is an error of the family, mapped to HTTP once (`castghl.common.answers`),
so the caller gets the same class back and its worker decides retry or park as if the
error had happened in its own process. docs/architecture.md ("Look-ups") says why this
is HTTP and not a broker RPC.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Final, Protocol, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ValidationError

from castghl.common.answers import bearer
from castghl.common.errors import BridgeError, InvalidRequest, ServiceUnavailable
from castghl.common.messages import (
    CastKeysReply,
    LocationsReply,
    LocationsRequest,
    RouteReply,
    TokenAnswer,
    TokenRequest,
    TokensReply,
    TokensRequest,
)
from castghl.common.phone import InvalidPhoneNumber, PhMobile
from castghl.common.validation import describe
from castghl.oauth.installation import Installation, location_key
from castghl.oauth.refresh import IssuedToken, TokenService
from castghl.oauth.tenancy import DefaultKeyFor, location_settings

log = logging.getLogger(__name__)

# Asking for more validity than a GHL token ever has would refresh on every request.
MAX_MIN_VALID_SECONDS: Final = 6 * 3600
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Directory(Protocol):
    """What the settings and routing look-ups read from the installations repository."""

    async def get_many(self, keys: list[str]) -> dict[str, Installation]: ...

    async def route(self, number: str) -> str | None: ...

    async def cast_keys(self) -> list[str]: ...


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


async def answer_tokens(tokens: TokenService, asked: TokensRequest,
                        min_valid_floor: int) -> TokensReply:
    """Each location's token, or the family's code saying why there is none."""
    wanted = [(r.location_id, min(max(min_valid_floor, r.min_valid_seconds),
                                  MAX_MIN_VALID_SECONDS))
              for r in asked.requests if not r.stale_token]
    found: dict[str, IssuedToken | BridgeError] = dict(await tokens.get_many(wanted))

    async def refreshed(request: TokenRequest) -> IssuedToken | BridgeError:
        assert request.stale_token is not None
        try:
            return await tokens.refresh_if_stale(request.location_id, request.stale_token)
        except BridgeError as error:
            return error

    stale = [r for r in asked.requests if r.stale_token]
    for request, answer in zip(stale, await asyncio.gather(*map(refreshed, stale)),
                               strict=True):
        found[request.location_id] = answer
    return TokensReply(tokens=[_token_answer(r.location_id, found[r.location_id])
                               for r in asked.requests])


def _token_answer(location_id: str, answer: IssuedToken | BridgeError) -> TokenAnswer:
    if isinstance(answer, BridgeError):
        return TokenAnswer(location_id=location_id, code=answer.code, detail=answer.detail)
    return TokenAnswer(location_id=location_id, access_token=answer.access_token,
                       expires_at=answer.expires_at)


async def answer_route(directory: Directory, number: str) -> RouteReply:
    try:
        known = PhMobile.parse(number)
    except InvalidPhoneNumber:
        return RouteReply(location_id=None)
    return RouteReply(location_id=await directory.route(known.e164))


def internal_router(tokens: TokenService, directory: Directory, *, sender_api_key: str,
                    default_key_for: DefaultKeyFor, min_valid_floor: int) -> APIRouter:
    router = APIRouter(prefix="/internal", include_in_schema=False,
                       dependencies=[Depends(bearer(sender_api_key, "SENDER_API_KEY"))])

    @router.post("/tokens")
    async def token(request: Request) -> TokensReply:
        asked = _read(TokensRequest, await request.body())
        return await _answered(answer_tokens(tokens, asked, min_valid_floor))

    @router.post("/locations")
    async def location(request: Request) -> LocationsReply:
        asked = _read(LocationsRequest, await request.body())
        found = await _answered(directory.get_many(
            [location_key(location_id) for location_id in asked.location_ids]))
        return LocationsReply(locations=[
            location_settings(location_id, found.get(location_key(location_id)),
                              default_key_for)
            for location_id in asked.location_ids])

    @router.get("/cast-keys")
    async def cast_keys() -> CastKeysReply:
        return CastKeysReply(api_keys=await _answered(directory.cast_keys()))

    @router.get("/routes/{number}")
    async def route(number: str) -> RouteReply:
        return await _answered(answer_route(directory, number))

    return router
