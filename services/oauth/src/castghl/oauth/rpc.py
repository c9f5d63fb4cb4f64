"""The request/reply side of the service: tokens, location settings and inbound routing.

Handlers are plain functions of the request model returning the reply model; FastStream
publishes the return value to the request's `reply_to` (RabbitMQ Direct Reply-To) with its
correlation id. A failure is an answer too — a `TokenReply.error` the caller maps to the
error family — so nothing escapes to the broker and no caller waits for a timeout it
could have been spared. Requests are acked whatever happens: an RPC nobody is waiting for
any more is worth nothing, and a poison request must not loop.
"""

from __future__ import annotations

import logging
from typing import Protocol

from faststream.middlewares import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitResponse
from pydantic import BaseModel

from castghl.common.errors import BridgeError
from castghl.common.logging import log_context
from castghl.common.messages import (
    LocationRequest,
    LocationSettings,
    RouteReply,
    RouteRequest,
    TokenError,
    TokenReply,
    TokenRequest,
)
from castghl.common.phone import InvalidPhoneNumber, to_cast_number
from castghl.common.topology import Topology
from castghl.oauth.installation import Installation, location_key
from castghl.oauth.refresh import TokenFailure, TokenService
from castghl.oauth.tenancy import DefaultKeyFor, location_settings

log = logging.getLogger(__name__)

# Asking for more validity than a GHL token ever has would refresh on every request.
MAX_MIN_VALID_SECONDS = 6 * 3600


class Directory(Protocol):
    """What the settings and routing RPCs read from the installations repository."""

    async def get(self, key: str) -> Installation | None: ...

    async def route(self, number: str) -> str | None: ...


async def answer_token(tokens: TokenService, request: TokenRequest,
                       min_valid_floor: int) -> TokenReply:
    with log_context(locationId=request.location_id):
        try:
            if request.stale_token:
                token = await tokens.refresh_if_stale(request.location_id, request.stale_token)
            else:
                wanted = max(min_valid_floor, request.min_valid_seconds)
                token = await tokens.get(request.location_id,
                                         min(wanted, MAX_MIN_VALID_SECONDS))
        except TokenFailure as failure:
            return TokenReply(error=failure.error, detail=failure.detail)
        except BridgeError as exc:  # e.g. a stored token no configured key decrypts
            log.exception("token request failed", extra={"error_code": exc.code})
            return TokenReply(error=TokenError.UPSTREAM_UNAVAILABLE,
                              detail=f"OAuth service problem: {exc.code}")
        except Exception:  # MongoDB unreachable and the like: the caller retries later
            log.exception("token request failed")
            return TokenReply(error=TokenError.UPSTREAM_UNAVAILABLE,
                              detail="OAuth service problem: token store unavailable")
    return TokenReply(access_token=token.access_token, expires_at=token.expires_at)


async def answer_location(directory: Directory, request: LocationRequest,
                          default_key_for: DefaultKeyFor) -> LocationSettings:
    # The location's own Cast key travels decrypted, over our own broker, to the sender.
    inst = await directory.get(location_key(request.location_id))
    return location_settings(request.location_id, inst, default_key_for)


async def answer_route(directory: Directory, request: RouteRequest) -> RouteReply:
    try:
        number = to_cast_number(request.to_number)
    except InvalidPhoneNumber:
        return RouteReply(location_id=None)
    return RouteReply(location_id=await directory.route(number))


def reply(answer: BaseModel | None) -> RabbitResponse:
    """The answer for the caller's Direct Reply-To queue, never `mandatory`: RabbitMQ
    returns mandatory publishes to `amq.rabbitmq.reply-to` as unroutable even when it
    delivers them, and a caller that gave up is not worth an error anyway."""
    body = answer.model_dump_json().encode() if answer is not None else b""
    return RabbitResponse(body, mandatory=False, content_type="application/json")


def register_rpc(broker: RabbitBroker, topology: Topology, tokens: TokenService,
                 directory: Directory, *, default_key_for: DefaultKeyFor, min_valid_floor: int,
                 prefetch: int) -> None:
    # Bounded concurrency: each request may hold a MongoDB poll or a GHL call open.
    channel = Channel(prefetch_count=prefetch)

    @broker.subscriber(topology.token_rpc, channel=channel, ack_policy=AckPolicy.ACK)
    async def token_rpc(request: TokenRequest) -> RabbitResponse:
        return reply(await answer_token(tokens, request, min_valid_floor))

    # These replies have no error field: on a store failure the answer is empty, which the
    # caller reads as "OAuth service unavailable" at once instead of after its timeout.
    @broker.subscriber(topology.location_rpc, channel=channel, ack_policy=AckPolicy.ACK)
    async def location_rpc(request: LocationRequest) -> RabbitResponse:
        with log_context(locationId=request.location_id):
            try:
                return reply(await answer_location(directory, request, default_key_for))
            except Exception:
                log.exception("location settings request failed")
                return reply(None)

    @broker.subscriber(topology.route_rpc, channel=channel, ack_policy=AckPolicy.ACK)
    async def route_rpc(request: RouteRequest) -> RabbitResponse:
        try:
            return reply(await answer_route(directory, request))
        except Exception:
            log.exception("route request failed")
            return reply(None)
