"""`castghl-demo` (`make demo`): the whole bridge, end to end, against the simulators.

Starts Mongo (MONGO_URI, else the embedded MongoDB-wire emulator with its data under
var/demo/), the GHL and Cast simulators and the three services (RabbitMQ from
RABBITMQ_URL, default the local one); installs a demo location through the real OAuth
redirect flow; has the GHL simulator fire signed webhooks (`cases`, played by
`castghl.sandbox.scenarios`); then prints what Cast received and what status GHL recorded
for each case, with timings; has the recipient reply, then opt out with STOP and back in
with START, a text sent after each. Exits non-zero if any case did
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

from castghl.sandbox import infra, scenarios
from castghl.sandbox.scenarios import PHONE, Case, fire, settle, table
from castghl.sandbox.stack import Bridge, Stack, StackError


def cases() -> list[Case]:
    return [
        Case("plain text", {"phone": PHONE, "message": "Hello from Cast SMS!"}),
        Case("with an attachment", {"phone": PHONE, "message": "Your receipt:",
                                    "attachments": ["https://example.com/receipt.pdf"]}),
        scenarios.long_text(),
        scenarios.us_number(),
        scenarios.carrier_rejected(),
        Case("unsupported type (Email)", {"phone": PHONE, "message": "Hi", "type": "Email"},
             expect_status=None, expect_parts=0),
        scenarios.retried_webhook(),
    ]


@dataclass
class Reply:
    """The recipient answers (Cast's SIM gateway may post a reply more than once); it must
    appear once, in the same GHL conversation, and a STOP or START must set the contact's
    SMS DND as it says."""

    conversation_id: str
    sender: str = PHONE
    message: str = "Salamat! See you tomorrow."
    times: int = 1
    dnd_expected: str | None = None
    posted: list[int] = field(default_factory=list)
    ghl_messages: int = 0
    landed_in: str = ""
    dnd: str | None = None
    after: float | None = None

    @property
    def ok(self) -> bool:
        return (self.ghl_messages == 1 and self.landed_in == self.conversation_id
                and self.dnd == self.dnd_expected)

    def row(self) -> tuple[str, ...]:
        where = ("the same conversation" if self.landed_in == self.conversation_id
                 else self.landed_in or "nowhere")
        shown = f"{self.ghl_messages} inbound message(s) in {where}"
        if self.dnd_expected is not None:
            shown += f"; SMS DND {self.dnd or 'unset'}"
        after = f"{self.after:.1f} s" if self.after is not None else "-"
        return (f"reply {self.message!r}", ",".join(map(str, self.posted)), "-", "-",
                shown, after, "yes" if self.ok else "NO")


def reply(bridge: Bridge, answer: Reply) -> None:
    started = time.monotonic()
    posted = bridge.reply(sender=answer.sender, message=answer.message, times=answer.times)
    answer.posted = [attempt["status_code"] for attempt in posted["attempts"]]
    cast_message_id = posted["sent"]["message_id"]
    found = bridge.wait_for_inbound(cast_message_id)
    if found:
        answer.after = time.monotonic() - started
        bridge.wait_quiet()  # a second post must not become a second message
        found = bridge.inbound_messages(cast_message_id)
        answer.landed_in = found[0].get("conversationId") or ""
    answer.ghl_messages = len(found)
    if answer.dnd_expected is not None:
        answer.dnd = bridge.sms_dnd(PHONE.replace(" ", ""))


def opt_out_exchange(bridge: Bridge, conversation_id: str) -> list[Reply | Case]:
    """STOP, then a message that must fail with no Cast call; START, then one that goes."""
    stop = Reply(conversation_id, message="STOP", dnd_expected="active")
    refused = Case("text after STOP", {"phone": PHONE, "message": "Flash sale today only"},
                   expect_status="failed", expect_parts=0, expect_error="replied STOP")
    start = Reply(conversation_id, message="START", dnd_expected="inactive")
    again = Case("text after START", {"phone": PHONE, "message": "Welcome back!"})
    reply(bridge, stop)
    fire(bridge, refused)
    settle(bridge, [refused])
    reply(bridge, start)
    fire(bridge, again)
    settle(bridge, [again])
    return [stop, refused, start, again]


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
            scenarios.script_carrier(stack, all_cases)
            for case in all_cases:
                fire(stack, case)
            say(f"fired {len(all_cases)} signed webhooks; waiting for final statuses ...")
            settle(stack, all_cases)
            say("the recipient replies (Cast's SIM gateway posts the reply twice) ...")
            conversation_id = all_cases[0].sent[0].conversation_id
            answer = Reply(conversation_id, times=2)
            reply(stack, answer)
            say("the recipient replies STOP, then START; a text is sent after each ...")
            exchange = opt_out_exchange(stack, conversation_id)
            rows = [*all_cases, answer, *exchange]
            say("\n" + table([row.row() for row in rows]) + "\n")
            say(f"logs: {workdir / 'logs'}")
            return all(row.ok for row in rows)
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
