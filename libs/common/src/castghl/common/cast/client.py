"""Cast.ph API client: one send, its failures sorted by what the caller does next.

Failures map onto the error family (errors.py) by when they happened: a connection that
never opened sent nothing (retry freely); a timeout or a 500/502 after the request left
us may have sent the SMS (retry only with the same idempotency key). Error codes decide,
never the error text (reference/cast.md).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Final, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from castghl.common.cast.models import (
    CastBalance,
    CastErrorBody,
    CastLogs,
    CastProfile,
    CastReceipt,
    CastSenderIds,
    CastSendRequest,
    CastSendResponse,
    CastUnsubscribed,
    Channel,
)
from castghl.common.errors import (
    AccountError,
    BridgeError,
    PermanentError,
    RateLimited,
    RetryableError,
    UncertainError,
)
from castghl.common.http import Upstream
from castghl.common.phone import PhMobile

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

SEND_PATH: Final = "/api/sms/send"  # exists in both API versions; /api/v1/... is newer only
# Receipts, logs and the SIM channel exist in the newer API only (reference/cast.md).
SIM_SEND_PATH: Final = "/api/v1/sim/send"
LOGS_PATH: Final = "/api/v1/sms/logs"
SENDER_IDS_PATH: Final = "/api/v1/account/sender-ids"
BALANCE_PATH: Final = "/api/v1/account/balance"
PROFILE_PATH: Final = "/api/v1/account/profile"
UNSUBSCRIBED_PATH: Final = "/api/v1/account/unsubscribed"
UNSUBSCRIBED_PAGE: Final = 500
# Logs per call: the most Cast gives in one page.
LOGS_PAGE: Final = 500
IDEMPOTENCY_HEADER: Final = "X-Idempotency-Key"
REPLAY_HEADER: Final = "X-Idempotent-Replay"
# Cast's limits refill within seconds; a longer wait is retried through the queue's tiers.
MAX_RETRY_AFTER_SECONDS: Final = 60.0

_ACCOUNT_MESSAGES: Final = {
    "INVALID_API_KEY": "Cast SMS is not set up correctly (the Cast API key was refused); "
                       "please contact your administrator",
    "INSUFFICIENT_CREDITS": "Cast SMS account is out of credit",
    "CREDIT_LIMIT_REACHED": "Cast SMS account has reached its credit limit",
    "API_KEY_REVOKED": "Cast SMS is not set up correctly (the Cast API key was revoked); "
                       "please contact your administrator",
    "API_KEY_EXPIRED": "Cast SMS is not set up correctly (the Cast API key expired); "
                       "please contact your administrator",
    "USER_INACTIVE": "Cast SMS account is inactive; please contact your administrator",
    "IP_NOT_WHITELISTED": "Cast SMS server is not allowed to send (IP not whitelisted at "
                          "Cast.ph); please contact your administrator",
    "CHANNEL_NOT_ALLOWED": "Cast SMS: this location's Cast account may not send on the "
                           "channel of its sender ID; please contact your administrator",
}
# Old Cast API answers carry no error_code: fall back on the HTTP status.
_ACCOUNT_BY_STATUS: Final = {401: "INVALID_API_KEY", 402: "INSUFFICIENT_CREDITS",
                             403: "USER_INACTIVE"}


def _retry_after(response: httpx.Response) -> float:
    """Cast's `Retry-After`, within [1, MAX_RETRY_AFTER_SECONDS]: a wild value must not
    stall the whole lane for hours (the lane pauses for it)."""
    try:
        seconds = float(response.headers.get("Retry-After", "1"))
    except ValueError:
        return 1.0
    if not math.isfinite(seconds):
        return MAX_RETRY_AFTER_SECONDS
    return min(MAX_RETRY_AFTER_SECONDS, max(1.0, seconds))


def _refused(response: httpx.Response) -> bool:
    """A 2xx whose body says `success: false` is a refusal like any error answer: Cast
    sent nothing, and its `error_code` says why."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("success") is False


def error_for(response: httpx.Response) -> BridgeError:
    """Map a non-2xx Cast answer onto the error family."""
    try:
        body = CastErrorBody.model_validate_json(response.content)
    except ValidationError:
        body = CastErrorBody(error=response.text[:200])
    status = response.status_code
    code = body.error_code or ""
    detail = f"Cast answered {status} {code}: {body.error}".strip()
    # The code decides where Cast gives one (a 200 may carry it too); the status otherwise.
    if code == "RATE_LIMIT_EXCEEDED" or status == 429:
        return RateLimited(detail, retry_after=_retry_after(response), code="cast_rate_limited")
    if code in _ACCOUNT_MESSAGES or status in _ACCOUNT_BY_STATUS:
        account_code = code if code in _ACCOUNT_MESSAGES else _ACCOUNT_BY_STATUS[status]
        return AccountError(detail, code=f"cast_{account_code.lower()}",
                            user_message=_ACCOUNT_MESSAGES[account_code])
    if code == "ALREADY_UNSUBSCRIBED" or status == 422:
        return PermanentError(detail, code="recipient_opted_out",
                              user_message="Cast SMS: the recipient has opted out of SMS "
                                           "from this sender")
    if code == "SERVICE_UNAVAILABLE" or status == 503:
        return RetryableError(detail, code="cast_unavailable",
                              retry_after=_retry_after(response) if "Retry-After"
                              in response.headers else None)
    if code in {"INTERNAL_ERROR", "PROVIDER_ERROR"} or status >= 500:
        return UncertainError(detail, code="cast_server_error")
    reason = body.error or f"HTTP {status}"
    return PermanentError(detail, code="cast_rejected",
                          user_message=f"Cast SMS: Cast.ph rejected the message ({reason[:120]})")


def cast_number(to: PhMobile) -> str:
    """The form of `to` Cast's send API takes (reference/cast.md): `09XXXXXXXXX`, which both
    versions of the API accept; a mobile number without that form (DITO's 0895–0898) only
    as E.164, which the newer API accepts and the older one refuses with its reason."""
    national = to.national
    return national if national.startswith("09") else to.e164


class CastClient:
    """Sends SMS parts and reads their receipts. The `Upstream` is injected (tests give it
    a transport of their own)."""

    def __init__(self, http: Upstream, base_url: str, *, idempotency: bool) -> None:
        self.http = http
        self.base = base_url.rstrip("/")
        self.idempotency = idempotency
        # Parsed once: httpx parses a URL given as text on every request (~60 µs of CPU on
        # a 2-core machine), and every SMS part goes to one of these two.
        self._send_urls: dict[Channel, httpx.URL] = {
            "sms": httpx.URL(self.base + SEND_PATH), "sim": httpx.URL(self.base + SIM_SEND_PATH)}

    async def send(self, request: CastSendRequest, *, api_key: str,
                   idempotency_key: str, channel: Channel = "sms") -> CastSendResponse:
        headers = {"X-API-Key": api_key}
        if self.idempotency:
            headers[IDEMPOTENCY_HEADER] = idempotency_key
        try:
            body = request.model_dump(exclude_none=True)
            body["to"] = cast_number(request.to)
            response = await self.http.request("POST", self._send_urls[channel], json=body,
                                               headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never reached Cast: nothing can have been sent.
            raise RetryableError(f"cannot reach Cast: {type(exc).__name__}",
                                 code="cast_unreachable") from exc
        except httpx.TransportError as exc:
            raise UncertainError(f"no answer from Cast: {type(exc).__name__}",
                                 code="cast_no_answer") from exc
        if response.is_success and not _refused(response):
            try:
                sent = CastSendResponse.model_validate_json(response.content)
            except ValidationError as exc:
                raise UncertainError("Cast answered 2xx with an unreadable body",
                                     code="cast_bad_answer") from exc
            if response.headers.get(REPLAY_HEADER, "").lower() == "true":
                log.info("Cast replayed an earlier answer", extra={
                    "cast_message_id": sent.message_id})
            return sent
        raise error_for(response)

    async def receipt(self, cast_message_id: str, *, api_key: str,
                      channel: Channel = "sms") -> CastReceipt | None:
        """The receipt of one sent part; None when Cast does not know the id for this key
        (a key changed since the send)."""
        response = await self._get(f"/api/v1/{channel}/status/{quote(cast_message_id, safe='')}",
                                   api_key, {})
        if response.status_code == 404:
            return None
        return _read(CastReceipt, response)

    async def recent(self, *, api_key: str, offset: int = 0,
                     limit: int = LOGS_PAGE) -> list[CastReceipt]:
        """One page of the account's sent messages with their receipts, newest first."""
        response = await self._get(LOGS_PATH, api_key, {"limit": str(limit),
                                                        "offset": str(offset)})
        return _read(CastLogs, response).logs

    async def sender_ids(self, *, api_key: str) -> CastSenderIds | None:
        """The account's sender IDs with their channels; None where Cast's API has no
        such list (the older API answers 404)."""
        response = await self._get(SENDER_IDS_PATH, api_key, {})
        return None if response.status_code == 404 else _read(CastSenderIds, response)

    async def balance(self, *, api_key: str) -> CastBalance | None:
        response = await self._get(BALANCE_PATH, api_key, {})
        return None if response.status_code == 404 else _read(CastBalance, response)

    async def profile(self, *, api_key: str) -> CastProfile | None:
        response = await self._get(PROFILE_PATH, api_key, {})
        return None if response.status_code == 404 else _read(CastProfile, response)

    async def unsubscribed(self, *, api_key: str, offset: int = 0,
                           limit: int = UNSUBSCRIBED_PAGE) -> CastUnsubscribed | None:
        """One page of the numbers that left the account through Cast's opt-out link."""
        response = await self._get(UNSUBSCRIBED_PATH, api_key,
                                   {"limit": str(limit), "offset": str(offset)})
        return None if response.status_code == 404 else _read(CastUnsubscribed, response)

    async def _get(self, path: str, api_key: str, params: dict[str, str]) -> httpx.Response:
        try:
            response = await self.http.request("GET", self.base + path, params=params,
                                               headers={"X-API-Key": api_key})
        except httpx.TransportError as exc:
            # A read changes nothing at Cast: any failure is safe to retry.
            raise RetryableError(f"cannot read from Cast: {type(exc).__name__}",
                                 code="cast_unreachable") from exc
        if response.status_code == 404 or (response.is_success and not _refused(response)):
            return response
        raise error_for(response)


def _read(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise RetryableError("Cast answered a read with an unreadable body",
                             code="cast_bad_answer") from exc
