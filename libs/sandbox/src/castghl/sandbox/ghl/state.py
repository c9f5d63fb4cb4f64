"""What one simulated GHL holds: contacts, conversations, messages and sent webhooks.

Everything lives on one `GhlState` instance built by `create_ghl_app`, so two simulators
in one process never share data. A lock guards it because the recording module's
`/_sandbox/reset` runs in a worker thread while API handlers run on the event loop.
Every timestamp comes from the simulator's clock, so a test that moves it sees GHL's
dates move too.
"""

from __future__ import annotations

import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_ALPHABET = string.ascii_letters + string.digits


def new_id(length: int = 20) -> str:
    """A GHL-looking id (e.g. `ve9EPM428h8vShlRW1KT`): 20 random alphanumerics."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def iso_time(at: float) -> str:
    """ISO-8601 in UTC with milliseconds and `Z`, as JavaScript's toISOString writes it."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@dataclass
class Contact:
    id: str
    location_id: str
    phone: str | None
    email: str | None
    fields: dict[str, Any]
    date_added: str
    date_updated: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "locationId": self.location_id, "phone": self.phone,
                "email": self.email, **self.fields, "dateAdded": self.date_added,
                "dateUpdated": self.date_updated}


@dataclass
class StatusUpdate:
    status: str
    error: dict[str, Any] | None
    at: str


@dataclass
class Message:
    id: str
    location_id: str
    contact_id: str
    conversation_id: str
    direction: str
    # "provider": a user sent it and GHL handed it to us by webhook (status updates allowed);
    # "inbound_api": our bridge added it through POST /conversations/messages/inbound.
    source: str
    type: str
    body: str | None
    attachments: list[str]
    phone: str | None = None
    user_id: str | None = None
    alt_id: str | None = None
    date: str | None = None
    conversation_provider_id: str | None = None
    # Stamped by `GhlState.add_message`: GHL's clock starts when it stores the message.
    created: float = 0.0
    statuses: list[StatusUpdate] = field(default_factory=list)

    @property
    def date_added(self) -> str:
        return iso_time(self.created)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "locationId": self.location_id, "contactId": self.contact_id,
            "conversationId": self.conversation_id, "direction": self.direction,
            "source": self.source, "type": self.type, "message": self.body,
            "attachments": self.attachments, "phone": self.phone, "userId": self.user_id,
            "altId": self.alt_id, "date": self.date,
            "conversationProviderId": self.conversation_provider_id,
            "dateAdded": self.date_added,
            "status": self.statuses[-1].status if self.statuses else None,
            "statuses": [{"status": s.status, "error": s.error, "at": s.at}
                         for s in self.statuses],
        }


@dataclass
class Conversation:
    id: str
    location_id: str
    contact_id: str
    date_added: str
    message_ids: list[str] = field(default_factory=list)


@dataclass
class Delivery:
    status_code: int | None
    body: str | None
    elapsed_ms: float  # real time: how long the receiver really took to answer
    at: str
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"status_code": self.status_code, "body": self.body,
                "elapsed_ms": self.elapsed_ms, "error": self.error, "at": self.at}


@dataclass
class SentWebhook:
    """One webhook as first signed: redeliveries reuse these exact bytes and headers."""

    webhook_id: str
    kind: str  # "outbound" | "app"
    url: str
    raw: bytes
    headers: dict[str, str]
    payload: dict[str, Any]
    message_id: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"webhookId": self.webhook_id, "kind": self.kind, "url": self.url,
                "messageId": self.message_id, "payload": self.payload,
                "body": self.raw.decode("utf-8"), "headers": self.headers,
                "deliveries": [d.as_json() for d in self.deliveries]}


class GhlState:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.contacts: dict[str, Contact] = {}
        self.conversations: dict[str, Conversation] = {}
        self.messages: dict[str, Message] = {}
        self.webhooks: dict[str, SentWebhook] = {}

    def reset(self) -> None:
        with self.lock:
            self.contacts.clear()
            self.conversations.clear()
            self.messages.clear()
            self.webhooks.clear()

    def now_iso(self) -> str:
        return iso_time(self.clock())

    # --- contacts -------------------------------------------------------------------------

    def contact(self, location_id: str, contact_id: str) -> Contact | None:
        with self.lock:
            found = self.contacts.get(contact_id)
        return found if found is not None and found.location_id == location_id else None

    def find_contact(self, location_id: str, phone: str | None, email: str | None
                     ) -> Contact | None:
        """GHL's duplicate rule: phone first, then email (case-insensitive)."""
        with self.lock:
            in_location = [c for c in self.contacts.values() if c.location_id == location_id]
        if phone is not None:
            for contact in in_location:
                if contact.phone == phone:
                    return contact
        if email is not None:
            for contact in in_location:
                if contact.email is not None and contact.email.lower() == email.lower():
                    return contact
        return None

    def add_contact(self, location_id: str, phone: str | None, email: str | None,
                    fields: dict[str, Any], contact_id: str | None = None) -> Contact:
        stamp = self.now_iso()
        contact = Contact(contact_id or new_id(), location_id, phone, email, dict(fields),
                          date_added=stamp, date_updated=stamp)
        with self.lock:
            self.contacts[contact.id] = contact
        return contact

    def upsert_contact(self, location_id: str, phone: str | None, email: str | None,
                       fields: dict[str, Any]) -> tuple[Contact, bool]:
        """Find the duplicate and update it, or create: one step, so two concurrent
        upserts of one phone make one contact."""
        with self.lock:
            found = self.find_contact(location_id, phone, email)
            if found is None:
                return self.add_contact(location_id, phone, email, fields), True
            found.fields.update(fields)
            found.phone = phone or found.phone
            found.email = email or found.email
            found.date_updated = self.now_iso()
            return found, False

    def update_contact(self, contact: Contact, changes: dict[str, Any]) -> Contact:
        """`PUT /contacts/{id}`: the fields given replace the stored ones (a null clears
        one), except `dndSettings`, merged per channel: GHL's docs do not say, and a STOP
        that sets SMS must not be seen to clear the Email setting a user chose."""
        with self.lock:
            changes = dict(changes)
            if "phone" in changes:
                contact.phone = changes.pop("phone")
            if "email" in changes:
                contact.email = changes.pop("email")
            dnd = changes.pop("dndSettings", None)
            if dnd is not None:
                stored = contact.fields.get("dndSettings") or {}
                changes["dndSettings"] = {**stored, **dnd}
            contact.fields.update(changes)
            contact.date_updated = self.now_iso()
            return contact

    # --- conversations and messages -------------------------------------------------------

    def conversation(self, location_id: str, conversation_id: str) -> Conversation | None:
        with self.lock:
            found = self.conversations.get(conversation_id)
        return found if found is not None and found.location_id == location_id else None

    def conversation_of(self, contact: Contact) -> Conversation:
        """GHL keeps one conversation per contact: find it or open it."""
        with self.lock:
            for conversation in self.conversations.values():
                if conversation.contact_id == contact.id:
                    return conversation
            return self.open_conversation(new_id(), contact)

    def open_conversation(self, conversation_id: str, contact: Contact) -> Conversation:
        conversation = Conversation(conversation_id, contact.location_id, contact.id,
                                    self.now_iso())
        with self.lock:
            self.conversations[conversation.id] = conversation
        return conversation

    def add_message(self, message: Message) -> Message:
        message.created = self.clock()
        with self.lock:
            self.messages[message.id] = message
            conversation = self.conversations.get(message.conversation_id)
            if conversation is not None:
                conversation.message_ids.append(message.id)
        return message

    def message(self, message_id: str) -> Message | None:
        with self.lock:
            return self.messages.get(message_id)

    def record_status(self, message: Message, status: str, error: dict[str, Any] | None
                      ) -> None:
        with self.lock:
            message.statuses.append(StatusUpdate(status, error, self.now_iso()))

    # --- webhooks -------------------------------------------------------------------------

    def add_webhook(self, webhook: SentWebhook) -> None:
        with self.lock:
            self.webhooks[webhook.webhook_id] = webhook

    def webhook_for_message(self, message_id: str) -> SentWebhook | None:
        with self.lock:
            found = [w for w in self.webhooks.values() if w.message_id == message_id]
        return found[-1] if found else None

    # --- views for /_sandbox --------------------------------------------------------------

    def conversations_view(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{
                "id": c.id, "locationId": c.location_id, "contactId": c.contact_id,
                "phone": self.contacts[c.contact_id].phone if c.contact_id in self.contacts
                else None,
                "dateAdded": c.date_added,
                "messages": [self.messages[m].as_json() for m in c.message_ids],
            } for c in self.conversations.values()]
