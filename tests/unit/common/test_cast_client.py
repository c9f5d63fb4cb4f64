"""Cast's answers mapped onto the error family (httpx.MockTransport stands in for Cast).

The class of the error decides whether an SMS can be duplicated: `RetryableError` means
nothing was sent (retry freely), `UncertainError` that it may have been (retry only with
the same idempotency key), `PermanentError` that the message fails with a `user_message`
the GHL user reads, `AccountError` that the operator must act too, `RateLimited` that
waiting is not a failed attempt. The cases follow reference/cast.md, "Errors (new doc)",
then the old doc's bodies without `error_code`, then what no doc promises.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from castghl.common.cast.client import MAX_RETRY_AFTER_SECONDS, SEND_PATH, CastClient
from castghl.common.cast.models import CastReceipt, CastSendRequest
from castghl.common.errors import (
    AccountError,
    BridgeError,
    PermanentError,
    RateLimited,
    RetryableError,
    UncertainError,
)
from castghl.common.http import Upstream

REQUEST = CastSendRequest(to="09171234567", message="Hello", sender_id="CASTPH")
API_KEY = "cast_" + "ab" * 32
BASE_URL = "https://cast.test"
NOT_SET_UP = "please contact your administrator"
MAY_HAVE_BEEN_SENT = UncertainError.user_message


def client(answer: httpx.Response | Callable[[httpx.Request], httpx.Response],
           *, idempotency: bool = True, seen: list[httpx.Request] | None = None) -> CastClient:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return answer(request) if callable(answer) else answer

    transport = httpx.MockTransport(handle)
    return CastClient(Upstream(transport), BASE_URL,
                      idempotency=idempotency)


def cast_error(status: int, code: str | None, text: str = "refused",
               headers: dict[str, str] | None = None) -> httpx.Response:
    body: dict[str, object] = {"success": False, "error": text}
    if code is not None:
        body["error_code"] = code
    return httpx.Response(status, json=body, headers=headers)


def raw(status: int, content: bytes, content_type: str = "text/html") -> httpx.Response:
    return httpx.Response(status, content=content, headers={"Content-Type": content_type})


@dataclass(frozen=True)
class Expect:
    kind: type[BridgeError]
    code: str
    user_message: str | None = None  # a substring of what the GHL user reads, where they do
    retry_after: float | None = None


def _case(answer: httpx.Response, expect: Expect, name: str) -> object:
    return pytest.param(answer, expect, id=name)


# reference/cast.md, "Errors (new doc)": every status and error_code.
NEW_DOC = [
    _case(cast_error(400, "INVALID_REQUEST", "Missing field: to"),
          Expect(PermanentError, "cast_rejected",
                 "Cast SMS: Cast.ph rejected the message (Missing field: to)"),
          "400-invalid-request"),
    _case(cast_error(400, "VALIDATION_ERROR", "Invalid phone number"),
          Expect(PermanentError, "cast_rejected",
                 "Cast SMS: Cast.ph rejected the message (Invalid phone number)"),
          "400-validation-error"),
    _case(cast_error(401, "INVALID_API_KEY"),
          Expect(AccountError, "cast_invalid_api_key", "the Cast API key was refused"),
          "401-invalid-api-key"),
    _case(cast_error(402, "INSUFFICIENT_CREDITS"),
          Expect(AccountError, "cast_insufficient_credits",
                 "Cast SMS account is out of credit"),
          "402-insufficient-credits"),
    _case(cast_error(402, "CREDIT_LIMIT_REACHED"),
          Expect(AccountError, "cast_credit_limit_reached",
                 "Cast SMS account has reached its credit limit"),
          "402-credit-limit-reached"),
    _case(cast_error(403, "API_KEY_REVOKED"),
          Expect(AccountError, "cast_api_key_revoked", "the Cast API key was revoked"),
          "403-api-key-revoked"),
    _case(cast_error(403, "API_KEY_EXPIRED"),
          Expect(AccountError, "cast_api_key_expired", "the Cast API key expired"),
          "403-api-key-expired"),
    _case(cast_error(403, "USER_INACTIVE"),
          Expect(AccountError, "cast_user_inactive", "Cast SMS account is inactive"),
          "403-user-inactive"),
    _case(cast_error(403, "IP_NOT_WHITELISTED"),
          Expect(AccountError, "cast_ip_not_whitelisted", "IP not whitelisted"),
          "403-ip-not-whitelisted"),
    _case(cast_error(403, "CHANNEL_NOT_ALLOWED"),
          Expect(AccountError, "cast_channel_not_allowed",
                 "may not send on the channel of its sender ID"),
          "403-channel-not-allowed"),
    _case(cast_error(404, "NOT_FOUND", "Not found"),
          Expect(PermanentError, "cast_rejected",
                 "Cast SMS: Cast.ph rejected the message (Not found)"),
          "404-not-found"),
    _case(cast_error(422, "ALREADY_UNSUBSCRIBED"),
          Expect(PermanentError, "recipient_opted_out",
                 "the recipient has opted out of SMS from this sender"),
          "422-already-unsubscribed"),
    _case(cast_error(429, "RATE_LIMIT_EXCEEDED", headers={"Retry-After": "3"}),
          Expect(RateLimited, "cast_rate_limited", retry_after=3.0),
          "429-rate-limit-exceeded"),
    _case(cast_error(500, "INTERNAL_ERROR"),
          Expect(UncertainError, "cast_server_error", MAY_HAVE_BEEN_SENT),
          "500-internal-error"),
    _case(cast_error(502, "PROVIDER_ERROR"),
          Expect(UncertainError, "cast_server_error", MAY_HAVE_BEEN_SENT),
          "502-provider-error"),
    _case(cast_error(503, "SERVICE_UNAVAILABLE"),
          Expect(RetryableError, "cast_unavailable"),
          "503-service-unavailable"),
    _case(cast_error(503, "SERVICE_UNAVAILABLE", headers={"Retry-After": "20"}),
          Expect(RetryableError, "cast_unavailable", retry_after=20.0),
          "503-with-retry-after"),
]

# The old doc: the same statuses, no `error_code`: the status alone decides.
OLD_DOC = [
    _case(cast_error(400, None, "Invalid phone number format"),
          Expect(PermanentError, "cast_rejected",
                 "Cast.ph rejected the message (Invalid phone number format)"),
          "old-400"),
    _case(cast_error(401, None, "Invalid API key"),
          Expect(AccountError, "cast_invalid_api_key", NOT_SET_UP), "old-401"),
    _case(cast_error(402, None, "Insufficient credits"),
          Expect(AccountError, "cast_insufficient_credits", "out of credit"), "old-402"),
    _case(cast_error(403, None, "Forbidden"),
          Expect(AccountError, "cast_user_inactive", NOT_SET_UP), "old-403"),
    _case(cast_error(422, None, "Recipient unsubscribed"),
          Expect(PermanentError, "recipient_opted_out", "opted out"), "old-422"),
    _case(cast_error(429, None, "Too many requests"),
          Expect(RateLimited, "cast_rate_limited", retry_after=1.0), "old-429-no-retry-after"),
    _case(cast_error(500, None, "Server error"),
          Expect(UncertainError, "cast_server_error", MAY_HAVE_BEEN_SENT), "old-500"),
]

# What no doc promises: bodies that are not Cast's JSON, codes Cast may add later.
ODD = [
    _case(raw(502, b"<html><body>502 Bad Gateway</body></html>"),
          Expect(UncertainError, "cast_server_error", MAY_HAVE_BEEN_SENT),
          "502-html-from-a-proxy"),
    _case(raw(504, b"upstream request timeout", "text/plain"),
          Expect(UncertainError, "cast_server_error", MAY_HAVE_BEEN_SENT),
          "504-from-a-proxy-after-forwarding"),
    _case(raw(503, b"Service Unavailable", "text/plain"),
          Expect(RetryableError, "cast_unavailable"), "503-plain-text"),
    _case(raw(429, b"slow down", "text/plain"),
          Expect(RateLimited, "cast_rate_limited", retry_after=1.0), "429-plain-text"),
    _case(raw(401, b""),
          Expect(AccountError, "cast_invalid_api_key", NOT_SET_UP), "401-empty-body"),
    _case(raw(400, b""),
          Expect(PermanentError, "cast_rejected", "Cast.ph rejected the message (HTTP 400)"),
          "400-empty-body"),
    _case(raw(400, b"Bad Request", "text/plain"),
          Expect(PermanentError, "cast_rejected",
                 "Cast.ph rejected the message (Bad Request)"),
          "400-plain-text"),
    _case(httpx.Response(400, json=["not", "an", "object"]),
          Expect(PermanentError, "cast_rejected"), "400-json-not-an-object"),
    _case(cast_error(400, "ALREADY_UNSUBSCRIBED"),
          Expect(PermanentError, "recipient_opted_out", "opted out"),
          "opted-out-code-on-another-status"),
    _case(cast_error(400, "INSUFFICIENT_CREDITS"),
          Expect(AccountError, "cast_insufficient_credits", "out of credit"),
          "account-code-on-another-status"),
    _case(cast_error(403, "SOMETHING_NEW"),
          Expect(AccountError, "cast_user_inactive", NOT_SET_UP),
          "unknown-403-code-falls-back-on-the-status"),
    _case(cast_error(418, "TEAPOT"),
          Expect(PermanentError, "cast_rejected", "Cast.ph rejected the message (refused)"),
          "other-4xx-is-permanent"),
    _case(httpx.Response(200, json={"success": True}),
          Expect(UncertainError, "cast_bad_answer", MAY_HAVE_BEEN_SENT),
          "200-without-message-id"),
    _case(raw(200, b"OK", "text/plain"),
          Expect(UncertainError, "cast_bad_answer", MAY_HAVE_BEEN_SENT),
          "200-not-json"),
    _case(raw(200, b""),
          Expect(UncertainError, "cast_bad_answer", MAY_HAVE_BEEN_SENT), "200-empty"),
    _case(raw(202, b'{"success": true, "message_id": ', "application/json"),
          Expect(UncertainError, "cast_bad_answer", MAY_HAVE_BEEN_SENT),
          "202-truncated-json"),
    _case(httpx.Response(200, json={"success": False, "message_id": "CAST1",
                                    "error": "Message blocked"}),
          Expect(PermanentError, "cast_rejected",
                 "Cast.ph rejected the message (Message blocked)"),
          "200-success-false-with-a-message-id"),
]


async def raised_by(answer: httpx.Response) -> BridgeError:
    with pytest.raises(BridgeError) as failed:
        await client(answer).send(REQUEST, api_key=API_KEY, idempotency_key="msg1:0")
    return failed.value


@pytest.mark.parametrize(("answer", "expect"), [*NEW_DOC, *OLD_DOC, *ODD])
async def test_a_failed_send_is_sorted_by_what_the_caller_does_next(
        answer: httpx.Response, expect: Expect) -> None:
    error = await raised_by(answer)

    assert type(error) is expect.kind
    assert error.code == expect.code
    if expect.user_message is not None:
        assert expect.user_message in error.user_message
    assert getattr(error, "retry_after", None) == expect.retry_after
    # The detail (logs, the parked reason) names what Cast answered.
    if not answer.is_success:
        assert f"Cast answered {answer.status_code}" in error.detail


@pytest.mark.parametrize(("code", "expect"), [
    ("INSUFFICIENT_CREDITS", Expect(AccountError, "cast_insufficient_credits",
                                    "Cast SMS account is out of credit")),
    ("IP_NOT_WHITELISTED", Expect(AccountError, "cast_ip_not_whitelisted",
                                  "IP not whitelisted")),
    ("ALREADY_UNSUBSCRIBED", Expect(PermanentError, "recipient_opted_out", "opted out")),
    ("VALIDATION_ERROR", Expect(PermanentError, "cast_rejected",
                                "Cast.ph rejected the message (Refused)")),
    ("RATE_LIMIT_EXCEEDED", Expect(RateLimited, "cast_rate_limited", retry_after=1.0)),
    ("SERVICE_UNAVAILABLE", Expect(RetryableError, "cast_unavailable")),
    ("INTERNAL_ERROR", Expect(UncertainError, "cast_server_error", MAY_HAVE_BEEN_SENT)),
    ("PROVIDER_ERROR", Expect(UncertainError, "cast_server_error", MAY_HAVE_BEEN_SENT)),
    (None, Expect(PermanentError, "cast_rejected", "Cast.ph rejected the message (Refused)")),
], ids=["account", "account-ip", "opted-out", "validation", "rate-limit", "unavailable",
        "internal-error", "provider-error", "no-code"])
async def test_a_200_saying_success_false_is_sorted_by_its_error_code(
        code: str | None, expect: Expect) -> None:
    # Cast's error body (no message_id) on a 2xx: a refusal, not an unreadable acceptance.
    error = await raised_by(cast_error(200, code, "Refused"))

    assert type(error) is expect.kind
    assert error.code == expect.code
    if expect.user_message is not None:
        assert expect.user_message in error.user_message
    assert getattr(error, "retry_after", None) == expect.retry_after


@pytest.mark.parametrize(("header", "wait"), [
    ("7", 7.0), ("0", 1.0), ("-5", 1.0), ("0.25", 1.0), ("86400", MAX_RETRY_AFTER_SECONDS),
    ("inf", MAX_RETRY_AFTER_SECONDS), ("nan", MAX_RETRY_AFTER_SECONDS), ("soon", 1.0),
    ("Wed, 21 Oct 2026 07:28:00 GMT", 1.0), (None, 1.0),
], ids=["seconds", "zero", "negative", "sub-second", "a-day", "infinite", "nan",
        "not-a-number", "http-date", "absent"])
async def test_retry_after_is_honoured_within_bounds(header: str | None, wait: float) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    answer = httpx.Response(429, headers=headers, json={
        "success": False, "error": "Rate limit exceeded", "error_code": "RATE_LIMIT_EXCEEDED"})
    with pytest.raises(RateLimited) as limited:
        await client(answer).send(REQUEST, api_key="cast_x", idempotency_key="k")
    assert limited.value.retry_after == wait


# --- transport failures: did the request leave us? ------------------------------------------

def failing(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handle(_: httpx.Request) -> httpx.Response:
        raise exc
    return handle


@pytest.mark.parametrize(("exc", "kind", "code"), [
    (httpx.ConnectError("connection refused"), RetryableError, "cast_unreachable"),
    (httpx.ConnectTimeout("connect timed out"), RetryableError, "cast_unreachable"),
    (httpx.PoolTimeout("no free connection"), RetryableError, "cast_unreachable"),
    (httpx.ReadTimeout("read timed out"), UncertainError, "cast_no_answer"),
    (httpx.RemoteProtocolError("server disconnected"), UncertainError, "cast_no_answer"),
    (httpx.ReadError("connection reset"), UncertainError, "cast_no_answer"),
    (httpx.WriteTimeout("write timed out"), UncertainError, "cast_no_answer"),
    (httpx.WriteError("broken pipe"), UncertainError, "cast_no_answer"),
], ids=["connect-error", "connect-timeout", "pool-timeout", "read-timeout",
        "remote-protocol-error", "read-error", "write-timeout", "write-error"])
async def test_a_transport_failure_is_retryable_only_if_nothing_left_us(
        exc: httpx.TransportError, kind: type[BridgeError], code: str) -> None:
    with pytest.raises(BridgeError) as failed:
        await client(failing(exc)).send(REQUEST, api_key=API_KEY, idempotency_key="msg1:0")

    assert type(failed.value) is kind
    assert failed.value.code == code
    assert failed.value.__cause__ is exc
    if kind is UncertainError:
        assert failed.value.user_message == MAY_HAVE_BEEN_SENT


# --- what we send, and what we return -------------------------------------------------------

def accepted(message_id: str = "CAST0001", parts: int = 1,
             headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, headers=headers,
                          json={"success": True, "message_id": message_id, "parts": parts})


async def test_a_send_posts_the_json_body_with_the_key_and_the_idempotency_key() -> None:
    seen: list[httpx.Request] = []
    sent = await client(accepted("CAST42", 2), seen=seen).send(
        REQUEST, api_key=API_KEY, idempotency_key="ghlmsg1:0")

    assert (sent.success, sent.message_id, sent.parts) == (True, "CAST42", 2)
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == BASE_URL + SEND_PATH
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["X-Idempotency-Key"] == "ghlmsg1:0"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "to": "09171234567", "message": "Hello", "sender_id": "CASTPH"}


async def test_without_idempotency_no_idempotency_key_is_sent() -> None:
    seen: list[httpx.Request] = []
    await client(accepted(), idempotency=False, seen=seen).send(
        REQUEST, api_key=API_KEY, idempotency_key="ghlmsg1:0")

    [request] = seen
    assert "X-Idempotency-Key" not in request.headers
    assert request.headers["X-API-Key"] == API_KEY


async def test_no_sender_id_leaves_it_to_cast_and_a_trailing_slash_is_harmless() -> None:
    seen: list[httpx.Request] = []
    cast = CastClient(Upstream(httpx.MockTransport(
        lambda request: seen.append(request) or accepted())), BASE_URL + "/",
        idempotency=True)
    await cast.send(CastSendRequest(to="09171234567", message="Hi"), api_key=API_KEY,
                    idempotency_key="k")

    [request] = seen
    assert str(request.url) == BASE_URL + SEND_PATH
    assert json.loads(request.content) == {"to": "09171234567", "message": "Hi"}


async def test_a_replayed_answer_is_the_original_acceptance() -> None:
    replayed = accepted("CAST-FIRST", 1, headers={"X-Idempotent-Replay": "true"})

    sent = await client(replayed).send(REQUEST, api_key=API_KEY, idempotency_key="ghlmsg1:0")

    assert (sent.success, sent.message_id, sent.parts) == (True, "CAST-FIRST", 1)


async def test_a_replayed_refusal_is_the_original_refusal() -> None:
    replayed = cast_error(402, "INSUFFICIENT_CREDITS",
                          headers={"X-Idempotent-Replay": "true"})

    error = await raised_by(replayed)

    assert type(error) is AccountError
    assert error.code == "cast_insufficient_credits"


async def test_extra_fields_in_an_acceptance_are_ignored() -> None:
    answer = httpx.Response(200, json={"success": True, "message_id": "CAST7", "parts": 3,
                                       "sandbox": True, "credits_left": 99})

    sent = await client(answer).send(REQUEST, api_key="cast_test_x", idempotency_key="k")

    assert (sent.message_id, sent.parts) == ("CAST7", 3)


@pytest.mark.parametrize(("sent_at", "ts"), [
    ("2026-12-01T00:00:00Z", 1_796_083_200.0),
    ("2026-12-01T08:00:00+08:00", 1_796_083_200.0),
    ("2026-12-01T00:00:00", 1_796_083_200.0),  # no zone: UTC
    ("1 Dec 2026", None),
    (None, None),
])
def test_a_receipt_row_reads_its_send_time_or_none(sent_at: str | None,
                                                   ts: float | None) -> None:
    row = CastReceipt.model_validate({"message_id": "c1", "status": "sent", "sent_at": sent_at})
    assert row.sent_ts == ts
