"""Conversations API: message status updates and inbound messages (ghl.md §3, §4)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from castghl.sandbox.ghl.access import CONVERSATIONS_VERSION, Gate
from castghl.sandbox.ghl.errors import (
    NO_LOCATION_ACCESS,
    NO_PROVIDER,
    ApiError,
    api_error,
    parse_body,
)
from castghl.sandbox.ghl.knobs import GhlKnobs
from castghl.sandbox.ghl.schemas import ProcessMessageBodyDto, UpdateMessageStatusDto
from castghl.sandbox.ghl.state import Contact, Conversation, GhlState, Message, new_id

WRITE_SCOPE = "conversations/message.write"


def build_router(knobs: GhlKnobs, state: GhlState, gate: Gate) -> APIRouter:
    router = APIRouter(tags=["conversations"])

    @router.put("/conversations/messages/{message_id}/status")
    async def update_status(message_id: str, request: Request) -> dict[str, Any]:
        caller = gate.check(request, user_type="Location", version=CONVERSATIONS_VERSION,
                            scope=WRITE_SCOPE)
        # The spec lists 400 (not 422) for this operation's validation failures.
        body = parse_body(UpdateMessageStatusDto, await request.body(),
                          request.headers.get("content-type", ""), status=400)
        message = state.message(message_id)
        if message is None:
            raise api_error(404, "Message not found")
        if message.location_id != caller.grant.location_id:
            raise api_error(403, NO_LOCATION_ACCESS)
        # GHL attaches the provider to the message only some seconds after the webhook;
        # until then a valid token gets this 403 (ghl.md §3). Messages our bridge added
        # through the inbound API never have a provider to report for.
        young = state.clock() - message.created < knobs.status_race_seconds
        if message.source != "provider" or young:
            raise api_error(403, NO_PROVIDER)
        error = body.error.model_dump() if body.error is not None else None
        state.record_status(message, body.status, error)
        # SendMessageResponseDto, as the spec documents this operation's 200.
        return {"conversationId": message.conversation_id, "messageId": message.id,
                "status": body.status}

    @router.post("/conversations/messages/inbound", response_model=None)
    async def add_inbound(request: Request) -> dict[str, Any] | Response:
        caller = gate.check(request, user_type="Location", version=CONVERSATIONS_VERSION,
                            scope=WRITE_SCOPE)
        body = parse_body(ProcessMessageBodyDto, await request.body(),
                          request.headers.get("content-type", ""), status=400)
        location_id = caller.grant.location_id
        assert location_id is not None  # the gate only lets Location tokens through
        contact, conversation = _target(state, knobs, location_id, body)
        message = state.add_message(Message(
            id=new_id(), location_id=location_id, contact_id=contact.id,
            conversation_id=conversation.id, direction=body.direction, source="inbound_api",
            type=body.type, body=body.message, attachments=body.attachments or [],
            phone=contact.phone, alt_id=body.altId,
            date=body.date.isoformat() if body.date is not None else None,
            conversation_provider_id=body.conversationProviderId,
        ))
        if knobs.inbound_empty_201:
            # Seen from GHL: the message is stored, the answer says nothing (ghl.md §4).
            return Response(status_code=201)
        return {"success": True, "conversationId": conversation.id, "messageId": message.id,
                "message": "Message added successfully", "contactId": contact.id,
                "dateAdded": message.date_added}

    return router


def _bad_id(knobs: GhlKnobs, what: str) -> ApiError:
    # GHL has answered bad ids with 500 as well as 4xx (ghl.md §4): the status is a knob.
    status, text = knobs.inbound_bad_contact_status, f"{what} not found"
    # A 422 lists its reasons, as GHL's validation answers do.
    return api_error(status, [text] if status == 422 else text)


def _target(state: GhlState, knobs: GhlKnobs, location_id: str, body: ProcessMessageBodyDto
            ) -> tuple[Contact, Conversation]:
    """The contact and its (single) conversation the inbound message belongs to."""
    conversation: Conversation | None = None
    if body.conversationId is not None:
        conversation = state.conversation(location_id, body.conversationId)
        if conversation is None:
            raise _bad_id(knobs, "Conversation")
    contact_id = body.contactId or (conversation.contact_id if conversation else None)
    contact = state.contact(location_id, contact_id) if contact_id is not None else None
    if contact is None:
        raise _bad_id(knobs, "Contact")
    if conversation is not None and conversation.contact_id != contact.id:
        raise api_error(400, "Conversation does not belong to this contact")
    return contact, conversation or state.conversation_of(contact)
