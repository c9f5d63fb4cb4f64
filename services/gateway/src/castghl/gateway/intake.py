"""What every webhook goes through before and after its route decides: the intake.

`WebhookApp` is a small ASGI app in front of the FastAPI one (which keeps `/healthz`,
`/readyz` and `/metrics`). For a webhook path it reads the raw body under a size cap,
hands it with the headers to the route, and answers: 200 with the route's JSON, or the
error family's answer (`castghl.common.answers`) for any `BridgeError` the route raised.
`Intake` holds what the routes share: the signature over the exact bytes received, the
freshness window of a signed `timestamp`, and the publish that RabbitMQ must confirm
before any 2xx (invariant 1). A refused webhook changed nothing (invariant 7).

Why not FastAPI routes here: the gateway is bound by CPU per webhook, and FastAPI's
routing, request and response handling cost ~65 µs of it, more than this whole front
plus uvicorn now does (bench/README.md, "Gateway stages").
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from faststream.rabbit import RabbitQueue
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from castghl.common.answers import refused
from castghl.common.broker import Publisher
from castghl.common.errors import (
    BridgeError,
    InvalidRequest,
    RetryableError,
    Unauthorized,
)
from castghl.common.signatures import WebhookVerifier
from castghl.common.topology import Topology
from castghl.common.validation import describe

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
# Header names lower-case (as HTTP/1.1 servers hand them over), first occurrence kept.
Headers = Mapping[str, str]
# A webhook route: the headers and the raw body in, the JSON of its 200 answer out.
Route = Callable[[Headers, bytes], Awaitable[bytes]]

# Clocks differ a little; a time further ahead than this is not a clock's error.
MAX_FUTURE_SKEW: Final = timedelta(minutes=5)
# A webhook body is at most MAX_BODY_BYTES (64 KiB): even a slow mobile link sends it in
# well under this; a client trickling it holds a slot of `max_concurrent` no longer.
BODY_TIMEOUT_SECONDS: Final = 10.0
BUSY_RETRY_AFTER_SECONDS: Final = 1.0


def json_answer(**fields: str) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()


ACCEPTED: Final = json_answer(status="accepted")


# --- how the intake says no (mapped to HTTP once, by castghl.common.answers) --------------

class BodyTooLarge(InvalidRequest):
    code = "body_too_large"
    http_status = 413


class BodyTooSlow(InvalidRequest):
    code = "body_too_slow"
    http_status = 408


class GatewayBusy(RetryableError):
    """This replica has as many webhooks in hand as it takes: GHL retries a 503."""

    code = "gateway_busy"
    http_status = 503


class MethodNotAllowed(InvalidRequest):
    code = "method_not_allowed"
    http_status = 405


class MissingSignature(Unauthorized):
    """Neither signature header holds anything that could be a signature."""

    code = "missing_signature"


class BadSignature(Unauthorized):
    """A signature that no configured key verifies over the bytes received."""

    code = "invalid_signature"


class Untimely(Unauthorized):
    """A signed `timestamp` older than the window, or further ahead than clocks drift: a
    replay of a captured body, not something GHL may still send."""

    code = "untimely_webhook"


class NotStored(RetryableError):
    """RabbitMQ did not confirm the message stored: the one 5xx, so that the caller (GHL,
    Cast's SIM gateway) sends it again later."""

    code = "not_stored"
    http_status = 503


def parse(model: type[M], body: bytes) -> M:
    """The body as `model`, or a 400 naming every problem (never a value)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc)) from None


class Intake:
    """What the webhook routes share, built once by the composition root."""

    def __init__(self, publisher: Publisher, topology: Topology, verifier: WebhookVerifier,
                 max_age_seconds: int) -> None:
        self.publisher = publisher
        self.topology = topology
        self.verifier = verifier
        self.max_age_seconds = max_age_seconds

    def verify(self, headers: Headers, body: bytes) -> None:
        """Over the raw bytes, exactly as signed: never over re-serialised JSON."""
        if not self.verifier.has_signature(headers):
            raise MissingSignature("missing signature (X-GHL-Signature or X-WH-Signature)")
        if not self.verifier.verify(body, headers):
            raise BadSignature("invalid signature")

    def check_fresh(self, timestamp: datetime | None) -> None:
        """Refuse a replay of an old signed body, but never a retry GHL may still send: the
        window covers GHL's retry horizon, and the dedupe records outlive it."""
        if timestamp is None:
            return
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=UTC)
        age = (datetime.now(UTC) - timestamp).total_seconds()
        if age > self.max_age_seconds:
            raise Untimely(f"stale webhook: timestamp is {age:.0f} s old")
        if -age > MAX_FUTURE_SKEW.total_seconds():
            raise Untimely(f"webhook timestamp is {-age:.0f} s in the future")

    async def publish(self, queue: RabbitQueue, message: BaseModel,
                      message_id: str | None) -> None:
        try:
            await self.publisher.publish(queue, message.model_dump_json().encode(),
                                         message_id=message_id)
        except Exception as exc:
            # Nothing may have been stored: the caller must send it again. One stored
            # after all (its confirm lost at the deadline) then arrives twice, and the
            # consumers' dedupe (messageId, Cast's id, webhookId) drops the copy.
            log.exception("publish failed", extra={"queue": queue.name})
            raise NotStored("temporarily unable to accept webhooks") from exc


class WebhookApp:
    """ASGI: `POST` to a webhook path runs its route; anything else goes to `rest`.

    At most `max_concurrent` webhooks are in hand at once (each may buffer a body of up to
    `max_body_bytes`); beyond that the answer is 503 with `Retry-After`, which GHL and
    Cast's gateway retry. A body must arrive whole within BODY_TIMEOUT_SECONDS (408)."""

    def __init__(self, routes: Mapping[str, Route], rest: ASGIApp, *, max_body_bytes: int,
                 max_concurrent: int) -> None:
        self.routes = dict(routes)
        self.rest = rest
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max_concurrent
        self.in_hand = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.rest(scope, receive, send)
            return
        if self.in_hand >= self.max_concurrent:
            busy = GatewayBusy(f"{self.in_hand} webhooks in hand; try again shortly",
                               retry_after=BUSY_RETRY_AFTER_SECONDS)
            await refused(scope["path"], busy)(scope, receive, send)
            return
        self.in_hand += 1
        try:
            await self._handle(route, scope, receive, send)
        finally:
            self.in_hand -= 1

    async def _handle(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1")
            if name not in headers:
                headers[name] = raw_value.decode("latin-1")
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"{scope['method']} is not allowed here; use POST")
            try:
                async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
                    body = await self._body(receive, headers)
            except TimeoutError:
                raise BodyTooSlow(f"body not received within {BODY_TIMEOUT_SECONDS:.0f} s"
                                  ) from None
            if body is None:
                return  # the client went away mid-body: nobody to answer
            answer = await route(headers, body)
        except BridgeError as error:
            response = refused(scope["path"], error)
            if isinstance(error, BodyTooSlow):
                # A client this slow does not keep its connection. (After a 413 the rest
                # of the body is read and thrown away: closing at once would reset the
                # connection under an honest client still sending, losing the answer.)
                response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    async def _body(self, receive: Receive, headers: Headers) -> bytes | None:
        """The whole body, refused as soon as it is known to exceed the cap."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large()
        message = await receive()
        body: bytes = message.get("body", b"")
        while message.get("more_body", False):
            if len(body) > self.max_body_bytes:
                raise self._too_large()
            message = await receive()
            body += message.get("body", b"")
        if message["type"] != "http.request":
            return None
        if len(body) > self.max_body_bytes:
            raise self._too_large()
        return body

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(f"body larger than {self.max_body_bytes} bytes")
