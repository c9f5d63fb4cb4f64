"""GHL conversation and contact calls the bridge makes, with a location token.

Request bodies follow GHL's OpenAPI specs (reference/ghl-openapi/): the sandbox simulator
rejects anything else, as GHL would.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from castghl.common.errors import RetryableError
from castghl.common.ghl.errors import error_for, transport_error
from castghl.common.http import Upstream
from castghl.common.messages import StatusError

CONVERSATIONS_VERSION: Final = "2021-04-15"
CONTACTS_VERSION: Final = "2021-07-28"


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Contact(_Answer):
    id: str


class _UpsertAnswer(_Answer):
    contact: _Contact


class _InboundAnswer(_Answer):
    success: bool = False
    messageId: str | None = None  # GHL's field name


class GhlApi:
    """The `Upstream` is injected: tests give it a transport of their own."""

    def __init__(self, http: Upstream, base_url: str) -> None:
        self.http = http
        self.base = base_url.rstrip("/")

    async def _call(self, method: str, path: str, token: str, version: str,
                    body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Version": version,
                   "Accept": "application/json"}
        try:
            response = await self.http.request(method, self.base + path, json=body,
                                               headers=headers)
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        if not response.is_success:
            raise error_for(response)
        return response

    async def update_status(self, token: str, message_id: str,
                            status: Literal["delivered", "failed", "pending", "read"],
                            error: StatusError | None = None) -> None:
        body: dict[str, Any] = {"status": status}
        if error is not None:
            body["error"] = error.model_dump()
        # The id comes from a webhook: quoted, it can only ever name one path segment.
        await self._call("PUT", f"/conversations/messages/{quote(message_id, safe='')}/status",
                         token, CONVERSATIONS_VERSION, body)

    async def upsert_contact(self, token: str, location_id: str, phone_e164: str) -> str:
        response = await self._call("POST", "/contacts/upsert", token, CONTACTS_VERSION,
                                    {"locationId": location_id, "phone": phone_e164})
        try:
            return _UpsertAnswer.model_validate_json(response.content).contact.id
        except ValidationError as exc:
            raise RetryableError("GHL contact upsert answered without a contact id",
                                 code="ghl_bad_answer") from exc

    async def set_sms_dnd(self, token: str, contact_id: str, *, active: bool, message: str,
                          code: str) -> None:
        """The contact's SMS do-not-disturb (UpdateContactDto.dndSettings.SMS); other
        channels are left out of the body, so GHL leaves them as they are."""
        setting = {"status": "active" if active else "inactive", "message": message,
                   "code": code}
        await self._call("PUT", f"/contacts/{quote(contact_id, safe='')}", token,
                         CONTACTS_VERSION, {"dndSettings": {"SMS": setting}})

    async def add_inbound_message(self, token: str, *, contact_id: str, message: str,
                                  alt_id: str, date: datetime,
                                  conversation_provider_id: str | None = None) -> str:
        body: dict[str, Any] = {
            "type": "SMS",
            "contactId": contact_id,
            "message": message,
            "direction": "inbound",
            "date": date.isoformat(),
            "altId": alt_id,
        }
        if conversation_provider_id:
            body["conversationProviderId"] = conversation_provider_id
        response = await self._call("POST", "/conversations/messages/inbound", token,
                                    CONVERSATIONS_VERSION, body)
        # GHL has answered 201 with an empty body: without a messageId nothing was created.
        try:
            answer = _InboundAnswer.model_validate_json(response.content or b"{}")
        except ValidationError:
            answer = _InboundAnswer()
        if not (answer.success and answer.messageId):
            raise RetryableError("GHL accepted the inbound message without creating it",
                                 code="ghl_inbound_not_created")
        return answer.messageId
