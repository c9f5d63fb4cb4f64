"""Contacts API (ghl.md §4, contacts.json): upsert by phone (or email) within a location,
and update one contact by id — how the bridge sets a contact's SMS DND on STOP."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request

from castghl.sandbox.ghl.access import CONTACTS_VERSION, Gate
from castghl.sandbox.ghl.errors import NO_LOCATION_ACCESS, api_error, parse_body
from castghl.sandbox.ghl.schemas import UpdateContactDto, UpsertContactDto
from castghl.sandbox.ghl.state import GhlState

_FORMATTING = re.compile(r"[\s\-().]")
_E164 = re.compile(r"\+[1-9]\d{7,14}")


def normalise_phone(raw: str) -> str | None:
    """GHL strips formatting ("+1 888-888-8888" → "+18888888888").

    Without a leading "+" GHL would guess the country from the location's settings; the
    simulator refuses instead, because a bridge must never rely on that guess for
    Philippine numbers (a "09…" number read as US becomes someone else's).
    """
    compact = _FORMATTING.sub("", raw)
    return compact if _E164.fullmatch(compact) else None


def build_router(state: GhlState, gate: Gate) -> APIRouter:
    router = APIRouter(tags=["contacts"])

    @router.post("/contacts/upsert")
    async def upsert(request: Request) -> dict[str, Any]:
        caller = gate.check(request, user_type="Location", version=CONTACTS_VERSION,
                            scope="contacts.write")
        body = parse_body(UpsertContactDto, await request.body(),
                          request.headers.get("content-type", ""))
        if body.locationId != caller.grant.location_id:
            raise api_error(403, NO_LOCATION_ACCESS)
        phone = None
        if body.phone is not None:
            phone = normalise_phone(body.phone)
            if phone is None:
                raise api_error(422, ["phone must be a valid E.164 phone number"])
        fields = body.model_dump(exclude_none=True,
                                 exclude={"locationId", "phone", "email",
                                          "createNewIfDuplicateAllowed"})
        contact, new = state.upsert_contact(body.locationId, phone, body.email, fields)
        return {"new": new, "contact": contact.as_json(),
                "traceId": str(uuid.uuid4())}

    @router.put("/contacts/{contact_id}")
    async def update(contact_id: str, request: Request) -> dict[str, Any]:
        caller = gate.check(request, user_type="Location", version=CONTACTS_VERSION,
                            scope="contacts.write")
        body = parse_body(UpdateContactDto, await request.body(),
                          request.headers.get("content-type", ""))
        with state.lock:
            found = state.contacts.get(contact_id)
        if found is None:
            # The spec lists 400, 401 and 422 for this operation, no 404.
            raise api_error(400, "Contact not found")
        if found.location_id != caller.grant.location_id:
            raise api_error(403, NO_LOCATION_ACCESS)
        # What was sent, nested too: a channel left out of dndSettings is not "cleared".
        changes = body.model_dump(exclude_unset=True)
        if body.phone is not None:
            changes["phone"] = normalise_phone(body.phone)
            if changes["phone"] is None:
                raise api_error(422, ["phone must be a valid E.164 phone number"])
        contact = state.update_contact(found, changes)
        # UpdateContactsSuccessfulResponseDto, spelling and all.
        return {"succeded": True, "contact": contact.as_json()}

    return router
