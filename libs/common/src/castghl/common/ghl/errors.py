"""GHL API answers, mapped onto the error family (reference/ghl.md §3, §5, §7)."""

from __future__ import annotations

import json
from typing import Final

import httpx

from castghl.common.errors import BridgeError, PermanentError, RateLimited, RetryableError

PROVIDER_RACE_TEXT: Final = "no conversation provider found"


class GhlUnauthorized(RetryableError):
    """401: the token was refused — refresh it (once) and retry."""

    code = "ghl_unauthorized"


class GhlProviderNotReady(RetryableError):
    """403 "No conversation provider found" right after the webhook: GHL's own race, not a
    token problem. Retry after a delay; never refresh for it."""

    code = "ghl_provider_not_ready"


def message_of(response: httpx.Response) -> str:
    """GHL's own words from an error answer (its JSON `message`, or the text)."""
    try:
        body = response.json()
    except json.JSONDecodeError:
        return response.text[:200]
    if isinstance(body, dict):
        message = body.get("message") or body.get("error_description") or body.get("error")
        return str(message)[:200] if message else ""
    return str(body)[:200]


def rate_limit_wait(response: httpx.Response) -> float:
    """Seconds to wait after a 429: Retry-After if sent, else GHL's interval header."""
    for header, scale in (("Retry-After", 1.0), ("X-RateLimit-Interval-Milliseconds", 0.001)):
        try:
            return max(1.0, float(response.headers[header]) * scale)
        except (KeyError, ValueError):
            continue
    return 10.0  # GHL's documented window is 10 s


def error_for(response: httpx.Response) -> BridgeError:
    status = response.status_code
    message = message_of(response)
    detail = f"GHL answered {status}: {message}".strip()
    if status == 401:
        return GhlUnauthorized(detail)
    if status == 403 and PROVIDER_RACE_TEXT in message.lower():
        return GhlProviderNotReady(detail)
    if status == 429:
        return RateLimited(detail, retry_after=rate_limit_wait(response), code="ghl_rate_limited")
    if status >= 500:
        return RetryableError(detail, code="ghl_server_error")
    return PermanentError(detail, code=f"ghl_http_{status}")


def transport_error(exc: httpx.TransportError) -> RetryableError:
    return RetryableError(f"cannot reach GHL: {type(exc).__name__}", code="ghl_unreachable")
