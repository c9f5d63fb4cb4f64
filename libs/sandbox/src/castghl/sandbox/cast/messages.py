"""Messages the simulator really sent, and what their delivery receipts say over time.

Each message's carrier outcome and receipt time are fixed when it is sent (from the
`carrier_outcome` and `dlr_delay_seconds` knobs then), so changing a knob later does not
rewrite history: a delivered message never turns undelivered.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from castghl.sandbox.cast.knobs import Outcome

# What a carrier receipt says for each final status (reference/cast.md, "Delivery status").
DLR_STATUS: dict[str, str | None] = {
    "sent": None, "failed": None, "pending": "ACCEPTD", "delivered": "DELIVRD",
    "undelivered": "UNDELIV",
}
ERROR_MESSAGES: dict[str, str] = {
    "failed": "Submission to the carrier failed; credits refunded",
    "undelivered": "The carrier did not deliver the message",
}


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def mask_key(api_key: str) -> str:
    # Every sandbox key starts with the same 10 characters, so the tail tells keys apart.
    return f"{api_key[:10]}…{api_key[-4:]}"


class OutcomeOverride(BaseModel):
    """`PUT /_sandbox/messages/{id}/outcome`: takes effect at once, whatever the delay."""

    model_config = ConfigDict(extra="forbid")

    status: Outcome
    dlr_status: str | None = None  # e.g. REJECTD or EXPIRED instead of UNDELIV
    error_message: str | None = None


@dataclass
class SentMessage:
    message_id: str
    api_key: str
    to: str
    message: str
    sender_id: str | None
    scheduled_at: str | None
    encoding: str
    parts: int
    idempotency_key: str | None
    at: float
    outcome: Outcome
    outcome_at: float
    override: OutcomeOverride | None = None
    override_at: float = 0.0

    def delivery(self, now: float) -> dict[str, Any]:
        """The `GET /api/v1/sms/status/{id}` body."""
        status, dlr, error, final_at = self._receipt(now)
        body: dict[str, Any] = {"success": True, "message_id": self.message_id,
                                "status": status, "sent_at": iso(self.at)}
        if dlr is not None:
            body["dlr_status"] = dlr
        if status == "delivered":
            body["delivered_at"] = iso(final_at)
        if error is not None:
            body["error_message"] = error
        return body

    def _receipt(self, now: float) -> tuple[Outcome, str | None, str | None, float]:
        if self.override is not None:
            status = self.override.status
            return (status, self.override.dlr_status or DLR_STATUS[status],
                    self.override.error_message or ERROR_MESSAGES.get(status),
                    self.override_at)
        if now >= self.outcome_at:
            return (self.outcome, DLR_STATUS[self.outcome], ERROR_MESSAGES.get(self.outcome),
                    self.outcome_at)
        return "sent", None, None, self.outcome_at

    def record(self, now: float) -> dict[str, Any]:
        """The `/_sandbox/sent` row."""
        return {
            "message_id": self.message_id, "to": self.to, "message": self.message,
            "sender_id": self.sender_id, "scheduled_at": self.scheduled_at,
            "encoding": self.encoding, "parts": self.parts,
            "api_key": mask_key(self.api_key), "idempotency_key": self.idempotency_key,
            "at": self.at, "status": self.delivery(now)["status"],
        }


class MessageLog:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._by_id: dict[str, SentMessage] = {}

    def add(self, *, api_key: str, to: str, message: str, sender_id: str | None,
            scheduled_at: str | None, encoding: str, parts: int,
            idempotency_key: str | None, outcome: Outcome, dlr_delay: float) -> SentMessage:
        now = self._clock()
        sent = SentMessage(
            message_id=new_message_id("CAST"), api_key=api_key, to=to, message=message,
            sender_id=sender_id, scheduled_at=scheduled_at, encoding=encoding, parts=parts,
            idempotency_key=idempotency_key, at=now, outcome=outcome,
            outcome_at=now + dlr_delay)
        self._by_id[sent.message_id] = sent
        return sent

    def get(self, message_id: str) -> SentMessage | None:
        return self._by_id.get(message_id)

    def all(self) -> list[SentMessage]:
        return list(self._by_id.values())


def new_message_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:20].upper()
