"""What the demo and the compose test play: cases, firing them, waiting, the table.

A `Case` is one or more messages a GHL user sends the same way (one text, a burst, a
webhook GHL delivers three times) and what each must end as: how many SMS Cast sends for
it and the one final status GHL records, or none. `fire` has the GHL simulator send them
through any `castghl.sandbox.stack.Bridge` (processes or containers); `settle` waits
until every message that must get a status has one and nothing more can happen, then
counts; `table` lays the rows out. What Cast sent is found by each message's text
(`Bridge.cast_sends_for`), so every message gets a text of its own (`unique`).

`castghl-demo` adds a reply to this, `python -m castghl.sandbox.compose` a burst and a
killed lane owner; the cases both play are here.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from castghl.sandbox.stack import WAIT_TIMEOUT_SECONDS, Bridge

PHONE = "+63 917 123 4567"
# Over Cast's 450-character cap (reference/cast.md): it must reach Cast as two SMS.
LONG_TEXT = " ".join(["Paalala: ang inyong appointment ay bukas ng 10:00 ng umaga."] * 10)
HEADER = ("case", "webhook answers", "Cast sends", "GHL statuses", "GHL status", "after",
          "ok")
# How often `settle` looks for statuses; it goes on as soon as every one is in.
POLL_SECONDS = 0.25


def unique(text: str) -> str:
    """`text` behind a tag of its own, so that Cast's log tells this message's SMS from any
    other's (`castghl.sandbox.oracle`). In front, because a long text's first SMS holds
    only its beginning; its later SMS are told apart by their own words, so one case
    sends one long text."""
    return f"[{secrets.token_hex(3)}] {text}"


@dataclass
class Sent:
    """One message of a case: how its webhook was answered, and what became of it."""

    message_id: str
    conversation_id: str
    answers: list[int]
    fired_at: float
    settled_after: float | None = None  # seconds from firing to its first GHL status
    cast_sends: int = 0
    statuses: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Case:
    """Messages sent the same way, and what each of them must end as."""

    name: str
    # The GHL simulator's outbound request; each message's `message` is made `unique`.
    payload: dict[str, Any]
    expect_status: str | None = "delivered"  # None: no status at all (nothing to send)
    expect_parts: int = 1  # SMS Cast sends for each message
    expect_error: str = ""  # in the final status's error message
    count: int = 1
    times: int = 1  # deliveries of each webhook (GHL's retries)
    # What the carrier's receipt says of this case's SMS: a Cast simulator carrier rule
    # without its matcher (`script_carrier` matches the case's text). None: delivered.
    carrier: dict[str, Any] | None = None
    sent: list[Sent] = field(default_factory=list)

    def problems(self) -> list[str]:
        found: list[str] = []
        if len(self.sent) != self.count:
            found.append(f"{len(self.sent)}/{self.count} webhooks fired")
        # GHL retries a webhook until it is answered 200: the last answer is what counts.
        if bad := sorted({m.answers[-1] for m in self.sent if m.answers and m.answers[-1] != 200}):
            found.append(f"webhook answers {bad}")
        statuses = 1 if self.expect_status else 0
        for message in self.sent:
            name = message.message_id
            if message.cast_sends != self.expect_parts:
                found.append(f"{name}: {message.cast_sends} Cast sends, "
                             f"expected {self.expect_parts}")
            if len(message.statuses) != statuses:
                found.append(f"{name}: {len(message.statuses)} GHL statuses, "
                             f"expected {statuses}")
            elif statuses and message.statuses[0]["status"] != self.expect_status:
                found.append(f"{name}: status {message.statuses[0]['status']}")
            elif statuses and self.expect_error not in error_of(message.statuses[0]):
                found.append(f"{name}: error {error_of(message.statuses[0])!r}")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()

    def row(self) -> tuple[str, ...]:
        answers = [a for m in self.sent for a in m.answers]
        shown = (",".join(map(str, answers)) if self.count == 1
                 else f"{len(answers)}x " + ",".join(map(str, sorted(set(answers)))))
        statuses = [s for m in self.sent for s in m.statuses]
        finals = sorted({s["status"] + (f": {error_of(s)}" if error_of(s) else "")
                         for s in statuses})
        # The slowest message of the case: a burst is as done as its last message.
        after = [m.settled_after for m in self.sent if m.settled_after is not None]
        return (self.name, shown, str(sum(m.cast_sends for m in self.sent)),
                str(len(statuses)), "; ".join(finals) or "(none)",
                f"{max(after):.1f} s" if after else "-", "yes" if self.ok else "NO")


def error_of(status: dict[str, Any]) -> str:
    return str((status.get("error") or {}).get("message") or "")


# --- the cases both the demo and the compose test play ----------------------------------

def retried_webhook() -> Case:
    """GHL delivers one webhook three times (its retries): one SMS, one status."""
    return Case("same webhook 3 times", {"phone": PHONE, "message": "Sent once, retried twice"},
                times=3)


def long_text() -> Case:
    return Case(f"{len(unique(LONG_TEXT))}-character text",
                {"phone": PHONE, "message": LONG_TEXT}, expect_parts=2)


def carrier_rejected() -> Case:
    """Cast accepts it, then the carrier refuses it (an unregistered sender ID, say):
    the receipt makes it `failed`, never `delivered`."""
    return Case("rejected by the carrier",
                {"phone": PHONE, "message": "Promo from a sender ID this network never saw"},
                expect_status="failed", expect_error="the carrier rejected this message",
                carrier={"status": "undelivered", "dlr_status": "REJECTD"})


def us_number() -> Case:
    return Case("US number", {"phone": "+1 555 123 4567", "message": "Hi"},
                expect_status="failed", expect_parts=0,
                expect_error="not a Philippine mobile number")


# --- playing them ------------------------------------------------------------------------

def script_carrier(bridge: Bridge, cases: Sequence[Case]) -> None:
    """Tell the Cast simulator's carrier what to answer for each case that says."""
    bridge.configure_cast(carrier_rules=[
        {"contains": case.payload["message"], **case.carrier}
        for case in cases if case.carrier is not None])


def fire(bridge: Bridge, case: Case) -> None:
    """Have the GHL simulator send the case's messages, each with a text of its own."""
    for _ in range(case.count):
        fired_at = time.monotonic()
        answer = bridge.send(times=case.times,
                             **{**case.payload, "message": unique(case.payload["message"])})
        case.sent.append(Sent(answer["messageId"], answer.get("conversationId") or "",
                              [d["status_code"] for d in answer["deliveries"]], fired_at))


def settle(bridge: Bridge, cases: Sequence[Case], timeout: float = WAIT_TIMEOUT_SECONDS
           ) -> None:
    """Wait until every message that must get a status has one, then until nothing more
    can happen (`Bridge.wait_quiet`: a late duplicate would still be on its way), then
    count what Cast sent and GHL recorded for each message."""
    every = [m for case in cases for m in case.sent]
    awaited = [m for case in cases if case.expect_status for m in case.sent]
    deadline = time.monotonic() + timeout
    while True:
        for message in every:
            if message.settled_after is None and bridge.statuses(message.message_id):
                message.settled_after = time.monotonic() - message.fired_at
        if all(m.settled_after is not None for m in awaited) or time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    bridge.wait_quiet(timeout)
    sends = bridge.cast_sends_for(m.message_id for m in every)
    for message in every:
        message.cast_sends = len(sends[message.message_id])
        message.statuses = bridge.statuses(message.message_id)


def table(rows: Sequence[tuple[str, ...]]) -> str:
    """`rows` under `HEADER`, each column as wide as its widest cell."""
    everything = [HEADER, *rows]
    widths = [max(len(row[i]) for row in everything) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in everything]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
