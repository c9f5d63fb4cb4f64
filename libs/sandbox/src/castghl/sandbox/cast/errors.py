"""Cast's one error shape, `{"success": false, "error", "error_code"}`, and the handlers
that make every failure — ours, FastAPI's, Starlette's — leave the simulator in it.

FastAPI's own 422 `{"detail": [...]}` must never reach a client: the bridge would meet a
shape the real API never sends and our tests would pass against the wrong contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

API_PREFIX = "/api/"

# Starlette raises these for routes and methods it does not know; Cast's answer, not its.
_HTTP_CODES = {404: "NOT_FOUND", 405: "INVALID_REQUEST"}


@dataclass(frozen=True)
class Answer:
    """A status, JSON body and headers: what the idempotency cache keeps and replays."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, extra_headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status,
                            headers={**self.headers, **(extra_headers or {})})


class CastError(Exception):
    """A refusal in Cast's shape; raised anywhere in a handler, answered by `install`."""

    def __init__(self, status: int, error_code: str, error: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error_code = error_code
        self.error = error
        self.headers = headers or {}

    def answer(self) -> Answer:
        return Answer(self.status, error_body(self.error, self.error_code), self.headers)


def error_body(error: str, error_code: str) -> dict[str, Any]:
    return {"success": False, "error": error, "error_code": error_code}


def _describe(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err.get("loc", ()) if part != "body")
        problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else err["msg"])
    return "; ".join(problems) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    async def on_cast_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, CastError)
        return exc.answer().response()

    async def on_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(error_body(_describe(exc), "VALIDATION_ERROR"), status_code=400)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not request.url.path.startswith(API_PREFIX):
            # /_sandbox answers keep FastAPI's `detail` (e.g. the knob errors of PATCH),
            # whose pydantic error contexts may hold exception objects: sent as text.
            detail = jsonable_encoder(exc.detail, custom_encoder={Exception: str})
            return JSONResponse({"detail": detail}, status_code=exc.status_code,
                                headers=exc.headers)
        code = _HTTP_CODES.get(exc.status_code, "INVALID_REQUEST")
        return JSONResponse(error_body(str(exc.detail), code), status_code=exc.status_code,
                            headers=exc.headers)

    async def on_crash(_: Request, exc: Exception) -> Response:
        return JSONResponse(error_body(f"simulator crashed: {type(exc).__name__}",
                                       "INTERNAL_ERROR"), status_code=500)

    app.add_exception_handler(CastError, on_cast_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_crash)
