"""Opt-outs: a reply of STOP ends SMS from that location to that person until START.

Philippine rules (NTC MC 03-03-2005) require a working opt-out, and no GHL document says
GHL sets DND when a default SMS provider receives STOP, so the bridge does it (docs/
inbound.md, "Opt-outs"). A reply whose whole text, trimmed and in any case, is an opt-out
word still goes into the conversation; before it does, a suppression is recorded for the
location and number and the GHL contact's SMS DND is set. While the suppression stands,
the outbound pipeline fails a message to that number without calling Cast. An opt-in
word undoes both. Cast's own opt-out list (people who used the link in Cast's messages)
is copied per Cast account with each account check (credits.py), and holds the same way
for every location sending on that account.

The suppression, not GHL's DND, is what stops a send: a GHL user can switch DND off, and
a workflow may ignore it. Replies can be delivered out of order (several workers), so
each number keeps its latest change by the time it was received, and the DND written is
the state in force, not the word of the reply at hand.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from prometheus_client import Counter

from castghl.common.cast.models import CastUnsubscribed
from castghl.common.phone import InvalidPhoneNumber, PhMobile

log = logging.getLogger(__name__)

Consent = Literal["opted_out", "opted_in"]
# Why a send is suppressed: the person replied STOP to this location, or unsubscribed
# through Cast's opt-out link from the Cast account (or sender ID) it sends with.
Suppressed = Literal["reply", "cast"]
# Pages read per sync are bounded: a list this long is not a list of opt-outs.
MAX_CAST_OPT_OUTS = 100_000
OPT_OUT_WORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
OPT_IN_WORDS = ("START", "UNSTOP")
# The failed status of a message to a number that opted out (shown in the conversation).
OPTED_OUT = ("Cast SMS: this person replied STOP; they receive no more SMS from you until "
             "they reply START")
CAST_UNSUBSCRIBED = ("Cast SMS: this person unsubscribed through Cast's opt-out link; Cast "
                     "sends them no more SMS from this sender")

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

    async def why_suppressed(self, location_id: str, phone: PhMobile, *, account: str,
                             sender_id: str | None) -> Suppressed | None:
        """Why a send from the location, on Cast account `account` (a key fingerprint)
        with `sender_id`, to `phone` must not happen, if it must not."""
        ...

    async def replace_cast_opt_outs(self, account: str,
                                    numbers: set[tuple[PhMobile, str | None]],
                                    now: float) -> None:
        """Make the account's Cast opt-outs exactly `numbers` (phone, sender ID or None
        for all of the account's sender IDs)."""
        ...


class CastOptOutSource(Protocol):
    async def unsubscribed(self, *, api_key: str, offset: int = 0,
                           limit: int = 500) -> CastUnsubscribed | None: ...


async def sync_cast_opt_outs(cast: CastOptOutSource, suppressions: Suppressions,
                             api_key: str, account: str, now: float) -> int:
    """Copy the account's opt-out list from Cast (every page); return how many numbers.
    Numbers Cast no longer lists are lifted. A number that is not a Philippine mobile
    cannot be texted anyway and is skipped."""
    numbers: set[tuple[PhMobile, str | None]] = set()
    offset = 0
    while True:
        page = await cast.unsubscribed(api_key=api_key, offset=offset)
        if page is None:
            return 0  # an older Cast API without the list
        for entry in page.unsubscribed:
            with contextlib.suppress(InvalidPhoneNumber):
                numbers.add((PhMobile.parse(entry.number), entry.sender_id))
        offset += len(page.unsubscribed)
        if not page.unsubscribed or offset >= page.total or offset >= MAX_CAST_OPT_OUTS:
            break
    await suppressions.replace_cast_opt_outs(account, numbers, now)
    log.info("Cast opt-out list copied", extra={"account": account, "numbers": len(numbers)})
    return len(numbers)
