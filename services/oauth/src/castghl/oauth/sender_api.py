"""The sender's operator API (`SENDER_URL`/ops), as the admin API and the console read it.

Messages, parked messages, Cast accounts, usage and queue health belong to the sender;
this service reads them only through that API, with the admin key, never from the
sender's collections. No answer is `ServiceUnavailable` (503), which the console shows
as "the sender did not answer", not as an error page.
"""

from __future__ import annotations

from typing import Any, Final

import httpx

from castghl.common.answers import error_from
from castghl.common.errors import RetryableError, ServiceUnavailable

TIMEOUT_SECONDS: Final = 15.0  # a parked survey reads up to 500 messages per queue


class SenderApi:
    def __init__(self, http: httpx.AsyncClient, base_url: str, admin_api_key: str) -> None:
        self.http = http
        self.base = base_url.rstrip("/") + "/ops"
        self.headers = {"authorization": f"Bearer {admin_api_key}"}

    async def _call(self, method: str, path: str, **params: Any) -> dict[str, Any]:
        try:
            response = await self.http.request(
                method, self.base + path, headers=self.headers, timeout=TIMEOUT_SECONDS,
                params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"no answer from the sender ({type(exc).__name__})") from exc
        if not response.is_success:
            raise error_from(response)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise RetryableError(f"unreadable answer from the sender on {path}",
                                 code="service_bad_answer")
        return answer

    async def days(self, location_id: str, first: str, last: str) -> list[dict[str, Any]]:
        """One location's usage rows (`UsageReader`)."""
        return list((await self.usage(first, last, location_id))["days"])

    async def usage(self, first: str, last: str, location_id: str | None = None
                    ) -> dict[str, Any]:
        return await self._call("GET", "/usage", since=first, until=last,
                                location_id=location_id)

    async def message(self, message_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/messages/{message_id}")

    async def messages_to(self, digits: str) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/messages", phone=digits))["messages"])

    async def parked(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/parked"))["queues"])

    async def replay(self, queue: str) -> dict[str, Any]:
        return await self._call("POST", f"/parked/{queue}/replay")

    async def accounts(self) -> dict[str, Any]:
        return await self._call("GET", "/accounts")

    async def health(self) -> dict[str, Any]:
        return await self._call("GET", "/health")
