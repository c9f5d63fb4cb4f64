"""The caller side of the OAuth service's internal API: tokens, per-location settings and
inbound routing, over HTTP, cached in-process.

Requests run concurrently on a pooled `Upstream` (injected, so tests can give it a
transport of their own), each with its own timeout: a token refresh for a status write never
holds up the Cast lane's settings look-up. Tokens and settings asked for at the same
moment go out as one request (`castghl.common.batching`): a burst for hundreds of
locations costs about one round trip, and an ask already on its way is joined, not
repeated. The service answers failures as the error family's code
(castghl.common.answers) — for the whole call, or per location — which comes back here
as the same class, so a worker's `Settler` decides retry or park without knowing about
OAuth. No answer at all is `ServiceUnavailable`: retried later.

Caches are bounded, so a flood of distinct location ids cannot grow a sender without
limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from castghl.common.answers import error_from
from castghl.common.batching import Batcher
from castghl.common.cache import BoundedCache
from castghl.common.errors import BridgeError, RetryableError, ServiceUnavailable
from castghl.common.http import Upstream
from castghl.common.messages import (
    CastKeysReply,
    LocationChanged,
    LocationSettings,
    LocationsReply,
    LocationsRequest,
    RouteReply,
    TokenAnswer,
    TokenRequest,
    TokensReply,
    TokensRequest,
)
from castghl.common.singleflight import SingleFlight

R = TypeVar("R", bound=BaseModel)

_JSON: Final = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class OAuthTimings:
    """How long to wait for the service, and how long its answers are kept."""

    timeout: float = 20.0  # per request: a refresh may include GHL's answer time
    settings_ttl: float = 60.0  # bounds staleness when a change notice is lost
    # Ask for more validity than a token is kept for, so a fresh answer is cacheable.
    min_valid_seconds: int = 900
    renew_margin: float = 300.0


class OAuthClient:
    """Ask the OAuth service; one per process."""

    def __init__(self, http: Upstream, base_url: str, api_key: str,
                 timings: OAuthTimings | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self.base = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.timings = timings or OAuthTimings()
        self.monotonic = monotonic
        self._tokens: BoundedCache[str, TokenAnswer] = BoundedCache()
        self._settings: BoundedCache[str, LocationSettings] = BoundedCache()
        self._routes: BoundedCache[str, str] = BoundedCache()
        self._token_batch: Batcher[str, str] = Batcher(self._fetch_tokens)
        self._refresh_batch: Batcher[tuple[str, str], str] = Batcher(self._fetch_refreshed)
        self._settings_batch: Batcher[str, LocationSettings] = Batcher(self._fetch_settings)
        self._route_flights: SingleFlight[str, str | None] = SingleFlight()

    # --- tokens ---------------------------------------------------------------------------

    def _cached_token(self, location_id: str) -> str | None:
        cached = self._tokens.get(location_id, self.monotonic())
        if cached is None or cached.access_token is None or cached.expires_at is None:
            return None
        left = cached.expires_at - datetime.now(UTC)
        return cached.access_token if left > timedelta(seconds=self.timings.renew_margin) \
            else None

    async def token(self, location_id: str) -> str:
        """A location token valid for a while; raises the error family when there is none."""
        if (cached := self._cached_token(location_id)) is not None:
            return cached
        return await self._token_batch.get(location_id)

    async def refresh(self, location_id: str, stale_token: str) -> str:
        """After GHL refused `stale_token` with 401: a different token, refreshed only if
        nobody (in any process) has replaced it yet."""
        current = self._cached_token(location_id)
        if current == stale_token:
            self._tokens.pop(location_id)
        elif current is not None:
            return current
        return await self._refresh_batch.get((location_id, stale_token))

    async def _fetch_tokens(self, location_ids: list[str]) -> dict[str, str | BridgeError]:
        return await self._ask_tokens([
            TokenRequest(location_id=location_id,
                         min_valid_seconds=self.timings.min_valid_seconds)
            for location_id in location_ids])

    async def _fetch_refreshed(self, asks: list[tuple[str, str]]
                               ) -> dict[tuple[str, str], str | BridgeError]:
        found = await self._ask_tokens([TokenRequest(location_id=location_id, stale_token=stale)
                                        for location_id, stale in asks])
        return {(location_id, stale): found[location_id] for location_id, stale in asks
                if location_id in found}

    async def _ask_tokens(self, requests: list[TokenRequest]) -> dict[str, str | BridgeError]:
        reply = await self._call("POST", "/internal/tokens", TokensReply,
                                 TokensRequest(requests=requests))
        found: dict[str, str | BridgeError] = {}
        for answer in reply.tokens:
            if answer.code is not None or not answer.access_token or answer.expires_at is None:
                self._tokens.pop(answer.location_id)
                found[answer.location_id] = BridgeError.from_code(
                    answer.code or "service_unavailable",
                    answer.detail or "the OAuth service answered without a token")
                continue
            # Used until shortly before `expires_at` (`_cached_token`); the entry itself is
            # aged out after a day at most.
            self._tokens.put(answer.location_id, answer, self.monotonic() + 86_400)
            found[answer.location_id] = answer.access_token
        return found

    # --- settings and routing -------------------------------------------------------------

    async def location(self, location_id: str) -> LocationSettings:
        """The location's settings (`installed` is false when it may not send)."""
        cached = self._settings.get(location_id, self.monotonic())
        if cached is not None:
            return cached
        return await self._settings_batch.get(location_id)

    async def _fetch_settings(self, location_ids: list[str]
                              ) -> dict[str, LocationSettings | BridgeError]:
        reply = await self._call("POST", "/internal/locations", LocationsReply,
                                 LocationsRequest(location_ids=location_ids))
        until = self.monotonic() + self.timings.settings_ttl
        for settings in reply.locations:
            self._settings.put(settings.location_id, settings, until)
        return {settings.location_id: settings for settings in reply.locations}

    def forget(self, notice: LocationChanged) -> None:
        """Drop what is cached of a location (or of every location of a company) that the
        OAuth service just changed: the next message asks again."""
        if notice.location_id is not None:
            self._settings.pop(notice.location_id)
        if notice.company_id is not None:
            company = notice.company_id
            self._settings.drop_where(lambda settings: settings.company_id == company)
        # Number owners may have moved with the change: routes are cheap to ask again.
        self._routes.clear()

    async def route(self, to_number: str) -> str | None:
        """The location whose inbound numbers contain `to_number`, if any."""
        cached = self._routes.get(to_number, self.monotonic())
        if cached is not None:
            return cached
        return await self._route_flights.run(to_number, lambda: self._fetch_route(to_number))

    async def _fetch_route(self, to_number: str) -> str | None:
        reply = await self._call("GET", f"/internal/routes/{quote(to_number, safe='')}",
                                 RouteReply)
        # Only owners are cached: "nobody owns it" must not outlive an operator assigning
        # the number and replaying the parked replies.
        if reply.location_id is not None:
            self._routes.put(to_number, reply.location_id,
                             self.monotonic() + self.timings.settings_ttl)
        return reply.location_id

    async def cast_keys(self) -> list[str]:
        """Every Cast key installed locations brought (not cached: asked rarely)."""
        return (await self._call("GET", "/internal/cast-keys", CastKeysReply)).api_keys

    # --- the wire -------------------------------------------------------------------------

    async def _call(self, method: str, path: str, reply_type: type[R],
                    body: BaseModel | None = None) -> R:
        headers = self.headers if body is None else {**self.headers, **_JSON}
        try:
            response = await self.http.request(
                method, self.base + path, headers=headers,
                content=body.model_dump_json().encode() if body is not None else None,
                timeout=self.timings.timeout)
        except httpx.HTTPError as exc:  # down, overloaded, restarting: all "no answer"
            raise ServiceUnavailable(
                f"no answer from the OAuth service ({type(exc).__name__})") from exc
        if not response.is_success:
            raise error_from(response)
        try:
            return reply_type.model_validate_json(response.content)
        except ValidationError as exc:
            # It answered, so it is up: a version mismatch, say, which waiting cannot fix.
            raise RetryableError(f"unreadable answer from the OAuth service on {path}",
                                 code="service_bad_answer") from exc
