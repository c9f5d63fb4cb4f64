"""`/_sandbox/*` of the GHL simulator: play GHL's side (a user sends an SMS, an app is
installed), steer tokens, and read back what our bridge did."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import APIRouter, Body

from castghl.sandbox.ghl.contacts import normalise_phone
from castghl.sandbox.ghl.errors import api_error
from castghl.sandbox.ghl.knobs import GhlKnobs
from castghl.sandbox.ghl.oauth import installation_grant, token_response
from castghl.sandbox.ghl.schemas import (
    AppEventRequest,
    IssueRequest,
    OutboundRequest,
    RedeliverRequest,
    TokenScope,
)
from castghl.sandbox.ghl.state import (
    Contact,
    Conversation,
    GhlState,
    Message,
    SentWebhook,
    new_id,
)
from castghl.sandbox.ghl.tokens import TokenStore
from castghl.sandbox.ghl.webhooks import (
    Signer,
    app_event_payload,
    deliver,
    encode,
    outbound_payload,
)
from castghl.sandbox.recording import SANDBOX_PREFIX


def _contact_for(state: GhlState, location_id: str, request: OutboundRequest) -> Contact:
    # The webhook carries the phone exactly as given (odd numbers are how tests probe the
    # bridge), but the contact holds it as GHL stores phones, so a reply from that phone
    # upserted later finds this contact and lands in this conversation.
    phone = (normalise_phone(request.phone) or request.phone) if request.phone else None
    if request.contactId is not None:
        known = state.contact(location_id, request.contactId)
        return known or state.add_contact(location_id, phone, None, {},
                                          contact_id=request.contactId)
    found = state.find_contact(location_id, phone, None)
    return found or state.add_contact(location_id, phone, None, {})


def _conversation_for(state: GhlState, contact: Contact, conversation_id: str | None
                      ) -> Conversation:
    if conversation_id is None:
        return state.conversation_of(contact)
    found = state.conversation(contact.location_id, conversation_id)
    return found if found is not None else state.open_conversation(conversation_id, contact)


class SandboxControls:
    def __init__(self, knobs: GhlKnobs, state: GhlState, tokens: TokenStore, signer: Signer
                 ) -> None:
        self.knobs = knobs
        self.state = state
        self.tokens = tokens
        self.signer = signer
        # Created on first use, inside the server's event loop; closed with the app.
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient()
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def router(self) -> APIRouter:
        router = APIRouter(prefix=SANDBOX_PREFIX, tags=["sandbox"])
        routes: list[tuple[str, str, Any]] = [
            ("POST", "/outbound", self.outbound),
            ("POST", "/outbound/{message_id}/redeliver", self.redeliver),
            ("POST", "/app-event", self.app_event),
            ("GET", "/keys", self.keys),
            ("GET", "/oauth", self.tokens.snapshot),
            ("POST", "/tokens/issue", self.issue),
            ("POST", "/tokens/expire", self.expire),
            ("POST", "/tokens/revoke", self.revoke),
            ("GET", "/messages", self.messages),
            ("GET", "/messages/{message_id}", self.message),
            ("GET", "/contacts", self.contacts),
            ("GET", "/conversations", self.state.conversations_view),
            ("GET", "/webhooks", self.webhooks),
        ]
        for method, path, endpoint in routes:
            router.add_api_route(path, endpoint, methods=[method])
        return router

    # --- GHL's side: a user sends an SMS, an app is installed -----------------------------

    async def _send(self, hook: SentWebhook, times: int) -> dict[str, Any]:
        deliveries = await deliver(self.http, hook.url, hook.raw, hook.headers, times=times,
                                   timeout_s=self.knobs.webhook_timeout,
                                   clock=self.state.clock)
        with self.state.lock:
            hook.deliveries.extend(deliveries)
        return {**hook.as_json(), "deliveries": [d.as_json() for d in deliveries]}

    def _sign(self, kind: str, url: str, payload: dict[str, Any], message_id: str | None
              ) -> SentWebhook:
        raw = encode(payload)
        hook = SentWebhook(str(payload.get("webhookId") or uuid.uuid4()), kind, url, raw,
                           self.signer.headers(raw), payload, message_id)
        self.state.add_webhook(hook)
        return hook

    async def outbound(self, request: OutboundRequest) -> dict[str, Any]:
        """A GHL user sends an SMS: store the message, fire ProviderOutboundMessage."""
        knobs, state = self.knobs, self.state
        url = knobs.webhook_url
        if request.deliver and url is None:
            raise api_error(409, "knob webhook_url is not set")
        location_id = request.locationId or knobs.location_id
        contact = _contact_for(state, location_id, request)
        conversation = _conversation_for(state, contact, request.conversationId)
        message = state.add_message(Message(
            id=new_id(), location_id=location_id, contact_id=contact.id,
            conversation_id=conversation.id, direction="outbound", source="provider",
            type=request.type, body=request.message, attachments=request.attachments,
            phone=request.phone, user_id=request.userId or knobs.user_id,
            conversation_provider_id=knobs.conversation_provider_id,
        ))
        answer: dict[str, Any] = {"messageId": message.id, "contactId": contact.id,
                                  "conversationId": conversation.id}
        if url is None or not request.deliver:
            return {**answer, "webhookId": None, "payload": None, "deliveries": []}
        payload = outbound_payload(message, knobs, str(uuid.uuid4()), request.extra,
                                   timestamp=state.now_iso())
        hook = self._sign("outbound", url, payload, message.id)
        return {**answer, **await self._send(hook, request.times)}

    async def redeliver(self, message_id: str,
                        request: RedeliverRequest | None = Body(None)  # noqa: B008
                        ) -> dict[str, Any]:
        """GHL retries: the same bytes and signatures as the first delivery."""
        hook = self.state.webhook_for_message(message_id)
        if hook is None:
            raise api_error(404, "No webhook was sent for this message")
        times = request.times if request is not None else 1
        return {"messageId": message_id, **await self._send(hook, times)}

    async def app_event(self, request: AppEventRequest) -> dict[str, Any]:
        """INSTALL / UNINSTALL to the app's webhook URL; UNINSTALL also kills the tokens."""
        knobs = self.knobs
        url = knobs.app_webhook_url
        if url is None:
            raise api_error(409, "knob app_webhook_url is not set")
        given = request.model_fields_set
        location_id = (request.locationId if "locationId" in given
                       else knobs.location_id if knobs.install_user_type == "Location"
                       else None)
        company_id = request.companyId if "companyId" in given else knobs.company_id
        payload = app_event_payload(request.type, knobs, location_id=location_id,
                                    company_id=company_id, webhook_id=str(uuid.uuid4()),
                                    timestamp=self.state.now_iso(),
                                    overrides=dict(request.model_extra or {}))
        # Only this app's own uninstall ends its tokens: another app's leaves them alone.
        if request.type == "UNINSTALL" and payload.get("appId") == knobs.app_id:
            self.tokens.revoke(location_id, company_id if location_id is None else None,
                               access=True)
        return await self._send(self._sign("app", url, payload, None), 1)

    # --- tokens ---------------------------------------------------------------------------

    def keys(self) -> dict[str, str]:
        return self.signer.public_keys()

    def issue(self, request: IssueRequest | None = Body(None)  # noqa: B008
              ) -> dict[str, Any]:
        """A finished install without the browser dance: a token response as /oauth/token."""
        request = request or IssueRequest()
        grant = installation_grant(self.knobs, request.scope or self.knobs.scopes,
                                   user_type=request.userType, location_id=request.locationId,
                                   company_id=request.companyId,
                                   approved=request.approvedLocations)
        return token_response(self.tokens.issue(grant, self.knobs.access_token_ttl),
                              self.knobs)

    def expire(self, request: TokenScope | None = Body(None)  # noqa: B008
               ) -> dict[str, int]:
        request = request or TokenScope()
        return {"expired": self.tokens.expire(request.locationId, request.companyId)}

    def revoke(self, request: TokenScope | None = Body(None)  # noqa: B008
               ) -> dict[str, int]:
        request = request or TokenScope()
        return {"revoked": self.tokens.revoke(request.locationId, request.companyId,
                                              request.access)}

    # --- what the bridge did --------------------------------------------------------------

    def messages(self, locationId: str | None = None, direction: str | None = None
                 ) -> list[dict[str, Any]]:
        with self.state.lock:
            found = list(self.state.messages.values())
        return [m.as_json() for m in found
                if (locationId is None or m.location_id == locationId)
                and (direction is None or m.direction == direction)]

    def message(self, message_id: str) -> dict[str, Any]:
        found = self.state.message(message_id)
        if found is None:
            raise api_error(404, "Message not found")
        return found.as_json()

    def contacts(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [c.as_json() for c in self.state.contacts.values()]

    def webhooks(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [w.as_json() for w in self.state.webhooks.values()]
