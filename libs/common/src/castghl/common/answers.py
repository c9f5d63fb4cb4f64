"""How the bridge's services say no over HTTP: the error family, mapped once.

Every FastAPI app of the bridge calls `install(app)`: a `BridgeError` that ends a request
becomes `{"code": ..., "detail": ...}` with the error's `http_status` (and `Retry-After`
when it says how long to wait). A caller of one of our internal APIs turns such an answer
back into the same class with `error_from`, so an error keeps its meaning — and what the
caller does next — across the wire.
"""

from __future__ import annotations

import hmac
import logging
import math
from collections.abc import Callable
from typing import Final

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from castghl.common.errors import (
    BridgeError,
    RetryableError,
    ServiceUnavailable,
    Unauthorized,
)

log = logging.getLogger(__name__)

REFUSED = Counter("castghl_http_refused_total", "Requests answered with an error",
                  ["route", "status"])


class ErrorAnswer(BaseModel):
    code: str
    detail: str = ""


def answer(error: BridgeError) -> JSONResponse:
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if isinstance(error, RetryableError) and retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"code": error.code, "detail": error.detail},
                        status_code=error.http_status, headers=headers)


def refused(route: str, error: BridgeError) -> JSONResponse:
    """Count and log a refusal, and the answer to send. For an ASGI route outside
    FastAPI (the gateway's webhooks); FastAPI apps get it from `install`."""
    REFUSED.labels(route, str(error.http_status)).inc()
    log.info("request refused", extra={"route": route, "status": error.http_status,
                                       "error_code": error.code, "reason": error.detail})
    return answer(error)


def install(app: FastAPI) -> None:
    @app.exception_handler(BridgeError)
    async def _refused(request: Request, error: BridgeError) -> JSONResponse:
        route = request.scope.get("route")
        return refused(getattr(route, "path", None) or request.url.path, error)


def bearer(secret: str, name: str) -> Callable[[Request], None]:
    """A FastAPI dependency admitting only `Authorization: Bearer <secret>`, compared in
    constant time; `name` (the setting holding it) tells a refused caller what to fix."""
    expected = secret.encode()

    def admit(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 expected):
            raise Unauthorized(f"missing or wrong {name} (Authorization: Bearer)")

    return admit


# What a proxy or server answers for a service that is down or restarting.
GATEWAY_STATUSES: Final = frozenset({502, 503, 504})


def error_from(response: httpx.Response) -> BridgeError:
    """The family member a non-2xx answer of one of our services stands for."""
    try:
        said = ErrorAnswer.model_validate_json(response.content)
    except ValidationError:
        detail = f"answered {response.status_code} without an error code"
        if response.status_code in GATEWAY_STATUSES:
            return ServiceUnavailable(detail)  # a proxy's answer for a service away
        return RetryableError(detail, code="service_bad_answer")
    return BridgeError.from_code(said.code, said.detail)
