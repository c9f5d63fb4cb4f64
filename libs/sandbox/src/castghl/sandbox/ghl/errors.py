"""GHL's error family and its HTTP shapes, mapped in one place.

GHL's API is NestJS: errors look like `{"statusCode", "message", "error"}`, where
validation failures carry a list of class-validator sentences in `message`. The OAuth
token endpoint is an OAuth2 server instead: `{"error", "error_description"}`.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException as StarletteHTTPException

# The spec's UnauthorizedDTO example: one message for unknown, revoked and expired tokens,
# so a client must key on the 401 status, not on the wording.
INVALID_TOKEN = "Invalid token: access token is invalid"  # noqa: S105 - a message
WRONG_AUTH_CLASS = ("This authClass type is not allowed to access this scope. "
                    "Please reach out to the Platform team to get it added.")
MISSING_SCOPE = "The token is not authorized for this scope."
NO_LOCATION_ACCESS = "The token does not have access to this location."
NO_COMPANY_ACCESS = "The token does not have access to this company."
VERSION_MISSING = "version header was not found."
VERSION_INVALID = "version header is invalid"
NO_PROVIDER = "No conversation provider found for this message"

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """An answer GHL would give instead of serving the request."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def nest_body(status: int, message: str | list[str]) -> dict[str, Any]:
    return {"statusCode": status, "message": message, "error": phrase(status)}


def api_error(status: int, message: str | list[str]) -> ApiError:
    return ApiError(status, nest_body(status, message))


def unauthorized(message: str = INVALID_TOKEN) -> ApiError:
    return api_error(401, message)


def oauth_error(status: int, error: str, description: str) -> ApiError:
    return ApiError(status, {"error": error, "error_description": description})


# pydantic error type → class-validator's sentence about `{field}`.
_SENTENCES = {
    "extra_forbidden": "property {field} should not exist",
    "missing": "{field} should not be empty",
    "string_type": "{field} must be a string",
    "bool_type": "{field} must be a boolean value",
    "list_type": "{field} must be an array",
    "model_type": "{field} must be an object",
    "model_attributes_type": "{field} must be an object",
    "dict_type": "{field} must be an object",
    "datetime_type": "{field} must be a valid ISO 8601 date string",
    "datetime_parsing": "{field} must be a valid ISO 8601 date string",
    "datetime_from_date_parsing": "{field} must be a valid ISO 8601 date string",
}


def _sentence(error: ErrorDetails) -> str:
    """Phrase one pydantic error the way class-validator would.

    NestJS names a nested field by its parent path in front of the leaf's sentence:
    "dndSettings.SMS.status must be one of …", "dndSettings.property sms should not exist".
    """
    *parents, leaf = [str(part) for part in error["loc"]] or ["body"]
    prefix = "".join(f"{parent}." for parent in parents)
    return prefix + _leaf_sentence(error, leaf)


def _leaf_sentence(error: ErrorDetails, field: str) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind in _SENTENCES:
        return _SENTENCES[kind].format(field=field)
    if kind == "literal_error":
        values = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{field} must be one of the following values: {values}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{field} {error['msg']}"


def validation_error(exc: ValidationError | RequestValidationError, status: int = 422
                     ) -> ApiError:
    errors: Any = exc.errors()
    return api_error(status, [_sentence(e) for e in errors])


def parse_body(model: type[M], raw: bytes, content_type: str,
                             status: int = 422) -> M:
    """Validate a JSON body the way GHL's pipes do; `status` is the one the spec lists.

    Without a JSON content type NestJS leaves the body empty, so every required field is
    reported missing: that is what a client forgetting the header would see.
    """
    text = raw if "application/json" in content_type.lower() else b"{}"
    try:
        parsed = json.loads(text or b"{}")
    except ValueError:
        raise api_error(400, "Unexpected token in JSON body") from None
    if not isinstance(parsed, dict):
        raise api_error(status, ["body must be an object"])
    try:
        return model.model_validate_json(text or b"{}")
    except ValidationError as exc:
        raise validation_error(exc, status) from None


def parse_fields(model: type[M], data: dict[str, Any], status: int = 422) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, status) from None


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body, exc.status, headers=exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        error = validation_error(exc)
        return JSONResponse(error.body, error.status)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        # NestJS words unknown routes as "Cannot METHOD /path".
        message: Any = (f"Cannot {request.method} {request.url.path}"
                        if exc.status_code in (404, 405) else exc.detail)
        return JSONResponse(nest_body(exc.status_code, message), exc.status_code,
                            headers=exc.headers)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
