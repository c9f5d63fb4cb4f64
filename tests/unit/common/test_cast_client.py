"""Cast's answers mapped onto the error family (httpx.MockTransport stands in for Cast)."""

from __future__ import annotations

import httpx
import pytest

from castghl.common.cast.client import MAX_RETRY_AFTER_SECONDS, CastClient
from castghl.common.cast.models import CastSendRequest
from castghl.common.errors import RateLimited

REQUEST = CastSendRequest(to="09171234567", message="Hello")


def client(answer: httpx.Response) -> CastClient:
    transport = httpx.MockTransport(lambda _: answer)
    return CastClient(httpx.AsyncClient(transport=transport), "https://cast.test",
                      idempotency=True)


@pytest.mark.parametrize(("header", "wait"), [
    ("7", 7.0), ("0", 1.0), ("86400", MAX_RETRY_AFTER_SECONDS),
    ("inf", MAX_RETRY_AFTER_SECONDS), ("soon", 1.0), (None, 1.0),
], ids=["seconds", "zero", "a-day", "infinite", "not-a-number", "absent"])
async def test_retry_after_is_honoured_within_bounds(header: str | None, wait: float) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    answer = httpx.Response(429, headers=headers, json={
        "success": False, "error": "Rate limit exceeded", "error_code": "RATE_LIMIT_EXCEEDED"})
    with pytest.raises(RateLimited) as limited:
        await client(answer).send(REQUEST, api_key="cast_x", idempotency_key="k")
    assert limited.value.retry_after == wait
