"""`castghl-demo` (`make demo`): the whole bridge, end to end, against the simulators.

Starts Mongo (MONGO_URI, else the embedded MongoDB-wire emulator with its data under
var/demo/), the GHL and Cast simulators and the three services (RabbitMQ from
RABBITMQ_URL, default the local one); installs a demo location through the real OAuth
redirect flow; has the GHL simulator fire signed webhooks; then prints what Cast received
and what status GHL recorded for each case, with timings. Exits non-zero if any case did
not end as it should.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from castghl.sandbox import infra
from castghl.sandbox.stack import Stack, StackError

PHONE = "+63 917 123 4567"
LONG_TEXT = " ".join(["Paalala: ang inyong appointment ay bukas ng 10:00 ng umaga."] * 10)
SETTLE_TIMEOUT_SECONDS = 180.0  # a bound on a run gone wrong; settling returns sooner


@dataclass
class Case:
    name: str
    payload: dict[str, Any]
    expect_status: str | None  # None: GHL must record no status (nothing to send)
    expect_parts: int
    expect_error: str = ""
    times: int = 1
    message_id: str = ""
    conversation_id: str = ""
    webhook_answers: list[int] = field(default_factory=list)
    fired_at: float = 0.0
    status: str | None = None
    status_writes: int = 0
    error: str = ""
    settled_after: float | None = None
    cast_parts: int = 0

    @property
    def ok(self) -> bool:
        return (self.status == self.expect_status and self.cast_parts == self.expect_parts
                and self.status_writes == (1 if self.expect_status else 0)
                and self.expect_error in self.error)


def cases() -> list[Case]:
    return [
        Case("plain text", {"phone": PHONE, "message": "Hello from Cast SMS!"}, "delivered", 1),
        Case("with an attachment", {"phone": PHONE, "message": "Your receipt:",
                                    "attachments": ["https://example.com/receipt.pdf"]},
             "delivered", 1),
        Case(f"{len(LONG_TEXT)}-character text", {"phone": PHONE, "message": LONG_TEXT},
             "delivered", 2),
        Case("US number", {"phone": "+1 555 123 4567", "message": "Hi"}, "failed", 0,
             expect_error="not a Philippine mobile number"),
        Case("unsupported type (Email)", {"phone": PHONE, "message": "Hi", "type": "Email"},
             None, 0),
        Case("same webhook 3 times", {"phone": PHONE, "message": "Sent once, retried twice"},
             "delivered", 1, times=3),
    ]


def fire(stack: Stack, case: Case) -> None:
    case.fired_at = time.monotonic()
    answer = stack.send(times=case.times, **case.payload)
    case.message_id = answer["messageId"]
    case.conversation_id = answer.get("conversationId") or ""
    case.webhook_answers = [d["status_code"] for d in answer["deliveries"]]


def observe(stack: Stack, all_cases: list[Case]) -> None:
    """Poll the simulators until every case has its final status (or time runs out)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while True:
        sends = stack.cast_sends()
        for case in all_cases:
            case.cast_parts = len(sends.get(case.message_id, []))
            statuses = stack.statuses(case.message_id)
            case.status_writes = len(statuses)
            if statuses and case.status is None:
                case.status = statuses[-1]["status"]
                case.error = ((statuses[-1].get("error") or {}).get("message")) or ""
                case.settled_after = time.monotonic() - case.fired_at
        pending = [c for c in all_cases if c.expect_status and c.status is None]
        if not pending or time.monotonic() > deadline:
            return
        time.sleep(0.25)  # a poll interval: the loop ends when every status is in


@dataclass
class Reply:
    """The recipient answers the first text (Cast's SIM gateway posts it twice); it must
    appear once, in the same GHL conversation."""

    conversation_id: str
    sender: str = PHONE
    message: str = "Salamat! See you tomorrow."
    posted: list[int] = field(default_factory=list)
    ghl_messages: int = 0
    landed_in: str = ""
    after: float | None = None

    @property
    def ok(self) -> bool:
        return self.ghl_messages == 1 and self.landed_in == self.conversation_id

    def row(self) -> tuple[str, ...]:
        where = ("the same conversation" if self.landed_in == self.conversation_id
                 else self.landed_in or "nowhere")
        after = f"{self.after:.1f} s" if self.after is not None else "-"
        return (f"reply from {self.sender}", ",".join(map(str, self.posted)), "-", "-",
                f"{self.ghl_messages} inbound message(s) in {where}", after,
                "yes" if self.ok else "NO")


def reply(stack: Stack, answer: Reply) -> None:
    started = time.monotonic()
    posted = stack.reply(sender=answer.sender, message=answer.message, times=2)
    answer.posted = [attempt["status_code"] for attempt in posted["attempts"]]
    cast_message_id = posted["sent"]["message_id"]
    found = stack.wait_for_inbound(cast_message_id)
    if found:
        answer.after = time.monotonic() - started
        stack.wait_quiet()  # the second post must not become a second message
        found = stack.inbound_messages(cast_message_id)
        answer.landed_in = found[0].get("conversationId") or ""
    answer.ghl_messages = len(found)


def table(all_cases: list[Case], answer: Reply) -> str:
    rows: list[tuple[str, ...]] = [("case", "webhook answers", "Cast sends", "GHL statuses",
                                    "GHL status", "after", "ok")]
    for c in all_cases:
        status = c.status or "(none)"
        if c.error:
            status += f": {c.error}"
        after = f"{c.settled_after:.1f} s" if c.settled_after is not None else "-"
        rows.append((c.name, ",".join(map(str, c.webhook_answers)), str(c.cast_parts),
                     str(c.status_writes), status, after, "yes" if c.ok else "NO"))
    rows.append(answer.row())
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _say(text: str) -> None:
    print(text, flush=True)


def run(workdir: Path, say: Callable[[str], None] = _say) -> bool:
    rabbit = infra.rabbitmq(os.environ | {"CASTGHL_INFRA": "local"})
    mongo = infra.mongo(workdir / "mongo", os.environ | {"CASTGHL_INFRA": "local"})
    say(f"RabbitMQ: {rabbit.description}\nMongo:    {mongo.description}")
    stack = Stack(rabbit.url, mongo.url.rstrip("/") + "/cast-ghl-demo", workdir, senders=1)
    try:
        say("starting the GHL and Cast simulators, gateway, oauth and sender ...")
        with stack.running():
            page = stack.install()
            connected = re.findall(r"loc_[A-Za-z0-9_]+", page.text)
            say(f"installed through the OAuth redirect flow: {sorted(set(connected))}")
            all_cases = cases()
            for case in all_cases:
                fire(stack, case)
            say(f"fired {len(all_cases)} signed webhooks; waiting for final statuses ...")
            observe(stack, all_cases)
            stack.wait_quiet()
            observe(stack, all_cases)  # the counts again, now that nothing more can arrive
            say("the recipient replies (Cast's SIM gateway posts the reply twice) ...")
            answer = Reply(conversation_id=all_cases[0].conversation_id)
            reply(stack, answer)
            say("\n" + table(all_cases, answer) + "\n")
            say(f"logs: {workdir / 'logs'}")
            return all(c.ok for c in all_cases) and answer.ok
    finally:
        mongo.stop()


def main() -> None:
    workdir = Path(os.environ.get("CASTGHL_DEMO_DIR", "var/demo")).resolve()
    try:
        ok = run(workdir)
    except (StackError, infra.InfraUnavailable) as exc:
        print(f"castghl-demo: {exc}", file=sys.stderr)
        sys.exit(1)
    print("every case ended as expected" if ok else "SOME CASES DID NOT END AS EXPECTED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
