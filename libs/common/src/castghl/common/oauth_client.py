"""The caller side of the OAuth service: tokens, per-location settings and inbound routing,
asked over RabbitMQ request/reply and cached in-process.

Answers the service gives as data (`TokenReply.error`) become the common error family
here, once, so a worker's `outcome_for` decides retry or park without knowing about OAuth:
an uninstalled location or a dead refresh token is permanent; a paused location, an
unreachable GHL or an OAuth service that does not answer is worth retrying.

Concurrent identical asks share one RPC (`castghl.common.singleflight`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from faststream.rabbit import RabbitBroker, RabbitQueue
from pydantic import BaseModel, ValidationError

from castghl.common.errors import AccountError, BridgeError, PermanentError, RetryableError
from castghl.common.messages import (
    LocationChanged,
    LocationRequest,
    LocationSettings,
    RouteReply,
    RouteRequest,
    TokenError,
    TokenReply,
    TokenRequest,
)
from castghl.common.singleflight import SingleFlight
from castghl.common.topology import Topology

V = TypeVar("V")
R = TypeVar("R", bound=BaseModel)


class NotInstalled(PermanentError):
    code = "not_installed"
    user_message = ("Cast SMS is not installed on this GHL location (or was uninstalled): "
                    "install Cast SMS from the GHL Marketplace again.")


class NeedsReauth(AccountError):
    """GHL refused the stored refresh token: only a reinstall brings the location back."""

    code = "needs_reauth"
    user_message = ("Cast SMS lost its GHL authorisation for this location: reinstall "
                    "Cast SMS from the GHL Marketplace to reconnect it.")


class LocationPaused(RetryableError):
    """GHL says the location is not active; the same refresh token works again later."""

    code = "location_inactive"
    user_message = "GHL reports this location as inactive; Cast SMS will try again."


class UpstreamUnavailable(RetryableError):
    code = "upstream_unavailable"
    user_message = "Cast SMS could not reach GHL to renew its access; it will try again."


class OAuthServiceUnavailable(RetryableError):
    """No (readable) answer from the OAuth service: down, overloaded or restarting."""

    code = "oauth_unavailable"
    user_message = "Cast SMS could not get its GHL access token; it will try again."


_ERRORS: dict[TokenError, type[BridgeError]] = {
    TokenError.NOT_INSTALLED: NotInstalled,
    TokenError.NEEDS_REAUTH: NeedsReauth,
    TokenError.LOCATION_INACTIVE: LocationPaused,
    TokenError.UPSTREAM_UNAVAILABLE: UpstreamUnavailable,
}


def token_error(error: TokenError, detail: str = "") -> BridgeError:
    """The error family member for a `TokenError` the service answered."""
    return _ERRORS[error](detail or f"OAuth service: {error.value}")


@dataclass(frozen=True)
class _CachedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class _Cached(Generic[V]):
    value: V
    until: float


class OAuthClient:
    """Ask the OAuth service; one per process, sharing the service's broker."""

    def __init__(self, broker: RabbitBroker, topology: Topology, *, timeout: float = 20.0,
                 min_valid_seconds: int = 900, renew_margin_seconds: float = 300.0,
                 settings_ttl_seconds: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.broker = broker
        self.topology = topology
        self.timeout = timeout
        # Ask for more validity than we keep a token for, so a fresh answer is cacheable.
        self.min_valid_seconds = min_valid_seconds
        self.renew_margin = timedelta(seconds=renew_margin_seconds)
        self.settings_ttl = settings_ttl_seconds
        self.monotonic = monotonic
        self._tokens: dict[str, _CachedToken] = {}
        self._settings: dict[str, _Cached[LocationSettings]] = {}
        self._routes: dict[str, _Cached[str | None]] = {}
        self._token_flights: SingleFlight[tuple[str, ...], str] = SingleFlight()
        self._settings_flights: SingleFlight[str, LocationSettings] = SingleFlight()
        self._route_flights: SingleFlight[str, str | None] = SingleFlight()

    # --- tokens ---------------------------------------------------------------------------

    def _cached_token(self, location_id: str) -> str | None:
        cached = self._tokens.get(location_id)
        if cached is not None and cached.expires_at - datetime.now(UTC) > self.renew_margin:
            return cached.token
        return None

    async def token(self, location_id: str) -> str:
        """A location token valid for a while; raises the error family when there is none."""
        if (cached := self._cached_token(location_id)) is not None:
            return cached
        request = TokenRequest(location_id=location_id, min_valid_seconds=self.min_valid_seconds)
        return await self._token_flights.run((location_id,), lambda: self._fetch_token(request))

    async def refresh(self, location_id: str, stale_token: str) -> str:
        """After GHL refused `stale_token` with 401: a different token, refreshed only if
        nobody (in any process) has replaced it yet."""
        cached = self._tokens.get(location_id)
        if cached is not None and cached.token == stale_token:
            del self._tokens[location_id]
        elif (current := self._cached_token(location_id)) is not None:
            return current
        request = TokenRequest(location_id=location_id, stale_token=stale_token)
        return await self._token_flights.run((location_id, stale_token),
                                             lambda: self._fetch_token(request))

    async def _fetch_token(self, request: TokenRequest) -> str:
        reply = await self._call(self.topology.token_rpc, request, TokenReply)
        if reply.error is not None:
            self._tokens.pop(request.location_id, None)
            raise token_error(reply.error, reply.detail)
        if not reply.access_token or reply.expires_at is None:
            raise OAuthServiceUnavailable("the OAuth service answered without a token")
        self._tokens[request.location_id] = _CachedToken(reply.access_token, reply.expires_at)
        return reply.access_token

    # --- settings and routing -------------------------------------------------------------

    def forget(self, notice: LocationChanged) -> None:
        """Drop what is cached of a location (or of every location of a company) that the
        OAuth service just changed: the next message asks again."""
        if notice.location_id is not None:
            self._settings.pop(notice.location_id, None)
        if notice.company_id is not None:
            for location_id, cached in list(self._settings.items()):
                if cached.value.company_id == notice.company_id:
                    del self._settings[location_id]
        # Number owners may have moved with the change: routes are cheap to ask again.
        self._routes.clear()

    async def location(self, location_id: str) -> LocationSettings:
        """The location's settings (`installed=False` when it is not installed)."""
        cached = self._settings.get(location_id)
        if cached is not None and cached.until > self.monotonic():
            return cached.value
        return await self._settings_flights.run(location_id,
                                                lambda: self._fetch_location(location_id))

    async def _fetch_location(self, location_id: str) -> LocationSettings:
        reply = await self._call(self.topology.location_rpc,
                                 LocationRequest(location_id=location_id), LocationSettings)
        self._settings[location_id] = _Cached(reply, self.monotonic() + self.settings_ttl)
        return reply

    async def route(self, to_number: str) -> str | None:
        """The location whose inbound numbers contain `to_number`, if any."""
        cached = self._routes.get(to_number)
        if cached is not None and cached.until > self.monotonic():
            return cached.value
        return await self._route_flights.run(to_number, lambda: self._fetch_route(to_number))

    async def _fetch_route(self, to_number: str) -> str | None:
        reply = await self._call(self.topology.route_rpc, RouteRequest(to_number=to_number),
                                 RouteReply)
        # Only owners are cached: "nobody owns it" must not outlive an operator assigning
        # the number and replaying the parked replies.
        if reply.location_id is not None:
            self._routes[to_number] = _Cached(reply.location_id,
                                              self.monotonic() + self.settings_ttl)
        return reply.location_id

    # --- the wire -------------------------------------------------------------------------

    async def _call(self, queue: RabbitQueue, request: BaseModel, reply_type: type[R]) -> R:
        correlation_id = uuid.uuid4().hex
        try:
            response = await self.broker.request(
                request.model_dump_json().encode(), queue=queue, timeout=self.timeout,
                correlation_id=correlation_id, content_type="application/json")
        except Exception as exc:  # timeout, broker down, nobody consuming: all "no answer"
            raise OAuthServiceUnavailable(
                f"no answer from the OAuth service on {queue.name} "
                f"({type(exc).__name__})") from exc
        # Defence in depth: a reply meant for another request must never be used as ours.
        if response.correlation_id != correlation_id:
            raise OAuthServiceUnavailable(f"mismatched reply on {queue.name}")
        try:
            return reply_type.model_validate_json(response.body)
        except ValidationError as exc:
            raise OAuthServiceUnavailable(f"unreadable reply on {queue.name}") from exc
