"""Messages the simulator really sent, and what their delivery receipts say over time.

Each message's carrier outcome and receipt time are fixed when it is sent (from the first
matching `carrier_rules` entry, else `carrier_outcome` after `dlr_delay_seconds`), so
changing a knob later does not rewrite history: a delivered message never turns
undelivered. Only `PUT /_sandbox/messages/{id}/outcome` changes one afterwards.

Statuses follow reference/cast.md: `sent` until the receipt arrives, then `pending`
(ACCEPTD), `delivered` (DELIVRD), `undelivered` (UNDELIV, REJECTD or EXPIRED) or `failed`
(the submission failed; the credits are refunded when the receipt says so).
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from castghl.sandbox.cast.knobs import DLR_CODES, CarrierOutcome, Channel, Outcome
from castghl.sandbox.cast.validation import local_form

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


class OutcomeOverride(CarrierOutcome):
    """`PUT /_sandbox/messages/{id}/outcome`: takes effect at once, whatever the delay."""


@dataclass(frozen=True)
class Receipt:
    status: Outcome
    dlr_status: str | None
    error_message: str | None
    at: float  # when the receipt arrived (meaningless while `sent`)

    @classmethod
    def of(cls, outcome: CarrierOutcome, at: float) -> Receipt:
        status = outcome.status
        return cls(status, outcome.dlr_status or DLR_CODES[status][0],
                   outcome.error_message or ERROR_MESSAGES.get(status), at)

    def fields(self) -> dict[str, Any]:
        """The receipt part of a status answer or a log row: optional keys only when set."""
        body: dict[str, Any] = {"status": self.status}
        if self.dlr_status is not None:
            body["dlr_status"] = self.dlr_status
        if self.status == "delivered":
            body["delivered_at"] = iso(self.at)
        if self.error_message is not None:
            body["error_message"] = self.error_message
        return body


NO_RECEIPT_YET = CarrierOutcome(status="sent")


@dataclass
class SentMessage:
    message_id: str
    api_key: str
    channel: Channel
    to: str
    message: str
    sender_id: str | None
    scheduled_at: str | None
    encoding: str
    parts: int
    charged: int  # credits taken: what a failed submission gives back
    idempotency_key: str | None
    at: float
    outcome: CarrierOutcome
    outcome_at: float
    override: OutcomeOverride | None = None
    override_at: float = 0.0
    refunded: bool = False

    def receipt(self, now: float) -> Receipt:
        if self.override is not None:
            return Receipt.of(self.override, self.override_at)
        if now >= self.outcome_at:
            return Receipt.of(self.outcome, self.outcome_at)
        return Receipt.of(NO_RECEIPT_YET, self.outcome_at)

    def delivery(self, now: float) -> dict[str, Any]:
        """The `GET /api/v1/{sms,sim}/status/{id}` body."""
        return {"success": True, "message_id": self.message_id, "sent_at": iso(self.at),
                **self.receipt(now).fields()}

    def log_row(self, now: float) -> dict[str, Any]:
        """One row of `GET /api/v1/sms/logs` (its contract: `logs.py`)."""
        return {"message_id": self.message_id, "to": self.to, "message": self.message,
                "sender_id": self.sender_id, "sent_at": iso(self.at), "parts": self.parts,
                "channel": self.channel, **self.receipt(now).fields()}

    def matches(self, needle: str) -> bool:
        """`search`: a case-insensitive part of the id, text or sender ID, or of the
        recipient in either number form."""
        needle = needle.lower()
        local = local_form(self.to)
        haystack = [self.message_id, self.message, self.sender_id or "", local,
                    "+63" + local[1:]]
        return any(needle in text.lower() for text in haystack)

    def record(self, now: float) -> dict[str, Any]:
        """The `/_sandbox/sent` row."""
        return {
            "message_id": self.message_id, "channel": self.channel, "to": self.to,
            "message": self.message, "sender_id": self.sender_id,
            "scheduled_at": self.scheduled_at, "encoding": self.encoding,
            "parts": self.parts, "charged": self.charged,
            "api_key": mask_key(self.api_key), "idempotency_key": self.idempotency_key,
            "at": self.at, "status": self.receipt(now).status,
        }


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    message: SentMessage = field(compare=False)


class MessageLog:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._by_id: dict[str, SentMessage] = {}
        self._by_key: dict[str, list[SentMessage]] = {}
        # Scripted submit failures, by receipt time: refunded once the receipt arrives.
        self._failing: list[_Due] = []

    def add(self, *, api_key: str, channel: Channel, to: str, message: str,
            sender_id: str | None, scheduled_at: str | None, encoding: str, parts: int,
            charged: int, idempotency_key: str | None, outcome: CarrierOutcome,
            dlr_delay: float) -> SentMessage:
        now = self._clock()
        sent = SentMessage(
            message_id=new_message_id("CAST"), api_key=api_key, channel=channel, to=to,
            message=message, sender_id=sender_id, scheduled_at=scheduled_at,
            encoding=encoding, parts=parts, charged=charged,
            idempotency_key=idempotency_key, at=now, outcome=outcome,
            outcome_at=now + dlr_delay)
        self._by_id[sent.message_id] = sent
        self._by_key.setdefault(api_key, []).append(sent)
        if outcome.status == "failed" and charged:
            heapq.heappush(self._failing, _Due(sent.outcome_at, len(self._by_id), sent))
        return sent

    def get(self, message_id: str) -> SentMessage | None:
        return self._by_id.get(message_id)

    def all(self) -> list[SentMessage]:
        return list(self._by_id.values())

    def of_key(self, api_key: str) -> list[SentMessage]:
        return list(self._by_key.get(api_key, ()))

    def failures_due(self, now: float) -> list[SentMessage]:
        """Scripted submit failures whose receipt has arrived since the last call."""
        due = []
        while self._failing and self._failing[0].at <= now:
            due.append(heapq.heappop(self._failing).message)
        return due


def new_message_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:20].upper()
