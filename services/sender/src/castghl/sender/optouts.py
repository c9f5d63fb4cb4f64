"""Opt-outs: a reply of STOP ends SMS from that location to that person until START.

Philippine rules (NTC MC 03-03-2005) require a working opt-out, and no GHL document says
GHL sets DND when a default SMS provider receives STOP, so the bridge does it (docs/
inbound.md, "Opt-outs"). A reply whose whole text, trimmed and in any case, is an opt-out
word still goes into the conversation; before it does, a suppression is recorded for the
location and number and the GHL contact's SMS DND is set. While the suppression stands,
the outbound pipeline fails a message to that number without calling Cast. An opt-in
word undoes both.

The suppression, not GHL's DND, is what stops a send: a GHL user can switch DND off, and
a workflow may ignore it. Replies can be delivered out of order (several workers), so
each number keeps its latest change by the time it was received, and the DND written is
the state in force, not the word of the reply at hand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from prometheus_client import Counter

from castghl.common.phone import PhMobile

log = logging.getLogger(__name__)

Consent = Literal["opted_out", "opted_in"]
OPT_OUT_WORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
OPT_IN_WORDS = ("START", "UNSTOP")
# The failed status of a message to a number that opted out (shown in the conversation).
OPTED_OUT = ("Cast SMS: this person replied STOP; they receive no more SMS from you until "
             "they reply START")

CHANGES = Counter("castghl_consent_changes_total",
                  "Replies that opted a number out of a location's SMS, or back in", ["change"])
DND_NOT_SET = Counter("castghl_dnd_not_set_total",
                      "Opt-outs or opt-ins recorded whose GHL contact DND could not be set")


def normalise(word: str) -> str:
    return word.strip().casefold()


@dataclass(frozen=True)
class ConsentWords:
    """Which whole replies change consent: the standard words plus the operator's."""

    opt_out: frozenset[str]
    opt_in: frozenset[str]

    @classmethod
    def with_extra(cls, opt_out: Iterable[str] = (), opt_in: Iterable[str] = ()
                   ) -> ConsentWords:
        out = frozenset(normalise(w) for w in (*OPT_OUT_WORDS, *opt_out) if w.strip())
        back = frozenset(normalise(w) for w in (*OPT_IN_WORDS, *opt_in) if w.strip())
        if both := sorted(out & back):
            raise ValueError(f"words both opt out and opt in: {', '.join(both)}")
        return cls(out, back)

    def read(self, text: str) -> Consent | None:
        word = normalise(text)
        if word in self.opt_out:
            return "opted_out"
        if word in self.opt_in:
            return "opted_in"
        return None


def dnd_note(consent: Consent, word: str) -> tuple[str, str]:
    """(message, code) for the contact's SMS DND setting, as GHL shows them."""
    code = normalise(word).upper()
    if consent == "opted_out":
        return f"Replied {code} by SMS: no more SMS until they reply START", code
    return f"Replied {code} by SMS: SMS allowed again", code


class Suppressions(Protocol):
    async def record(self, location_id: str, phone: PhMobile, consent: Consent, *,
                     at: float, word: str) -> Consent:
        """Record a change received at `at` unless a later one is already recorded;
        return the consent in force afterwards."""
        ...

    async def opted_out(self, location_id: str, phone: PhMobile) -> bool: ...
