"""The Cast account behind an API key: its balance, sender IDs, profile and opt-outs.

A key named in a `*_by_key` knob is an account of its own; every other key belongs to the
default account the plain knob describes, and shares its balance (knobs.py). The balance
lives in the knobs themselves, so `GET /_sandbox/config` shows it and a reset keeps it.

The account endpoints (each also under the legacy `/api`; a `cast_test_` key's answers
also carry `"sandbox": true`):
- `GET /api/v1/account/balance` → `{success, credits, currency: "PHP"}`, credits being
  parts (reference/cast.md). One credit per part sent, on either channel; a failed
  submission gives its credits back when its receipt arrives.
- `GET /api/v1/account/sender-ids` → `{success, sender_ids: [{sender_id, label,
  channel: "sms"|"sim"}]}` (reference/cast.md).
- `GET /api/v1/account/profile` → `{success, name, email}`: the simulator's contract
  (no doc we hold describes it), so the bridge can label a key without showing it.
- `GET /api/v1/account/unsubscribed?limit&offset` → `{success, total, unsubscribed:
  [{number, sender_id, unsubscribed_at}]}`: the simulator's contract. `number` in Cast's
  `09XXXXXXXXX` form; `sender_id` null when the number left every sender ID of the
  account; `unsubscribed_at` ISO-8601 UTC or null when unknown; listed in the knob's
  order; `limit` 1 to 500 (default 50), `offset` ≥ 0, anything else 400 VALIDATION_ERROR.
A send to an unsubscribed number (from that sender ID, or from all) is 422
ALREADY_UNSUBSCRIBED. A sender ID the account lacks is 400 VALIDATION_ERROR; one of the
other channel is 403 CHANNEL_NOT_ALLOWED (reference/cast.md, "Errors").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

from castghl.sandbox.cast.errors import CastError
from castghl.sandbox.cast.knobs import AccountProfile, CastKnobs, Channel, OptOut, SenderId
from castghl.sandbox.cast.validation import Page, invalid, local_form

# reference/cast.md, "Basics": these keys get mock answers carrying `"sandbox": true`.
SANDBOX_KEY_PREFIX = "cast_test_"
# Real balances are numbers; an unlimited sandbox account shows this one.
UNLIMITED_CREDITS_SHOWN = 1_000_000


def is_sandbox_key(api_key: str) -> bool:
    return api_key.startswith(SANDBOX_KEY_PREFIX)


def channel_not_allowed(error: str) -> CastError:
    return CastError(403, "CHANNEL_NOT_ALLOWED", error)


@dataclass(frozen=True)
class Account:
    """A view over the knobs for one key: built per request, so a knob changed live
    applies from the next request on."""

    knobs: CastKnobs
    api_key: str

    # --- credits ---------------------------------------------------------------------

    def credits(self) -> int | None:
        """The live balance; None is unlimited."""
        if self.api_key in self.knobs.credits_by_key:
            return self.knobs.credits_by_key[self.api_key]
        return self.knobs.credits

    def price(self, parts: int) -> int:
        """What a send of `parts` parts costs this account."""
        if is_sandbox_key(self.api_key) and not self.knobs.charge_sandbox_keys:
            return 0
        return parts

    def charge(self, amount: int) -> None:
        """Take `amount` (the caller checked the balance covers it) or give it back
        when negative; an unlimited balance stays unlimited."""
        balance = self.credits()
        if balance is None or amount == 0:
            return
        left = balance - amount
        knobs = self.knobs
        # Replaced, never mutated: a test may still hold the dict it set.
        if self.api_key in knobs.credits_by_key:
            knobs.credits_by_key = {**knobs.credits_by_key, self.api_key: left}
        else:
            knobs.credits = left

    def balance(self) -> dict[str, Any]:
        credits = self.credits()
        return {"success": True, "currency": "PHP",
                "credits": UNLIMITED_CREDITS_SHOWN if credits is None else credits}

    # --- sender IDs ------------------------------------------------------------------

    def sender_ids(self) -> list[SenderId]:
        knobs = self.knobs
        listed = knobs.sender_ids_by_key.get(self.api_key, knobs.sender_ids)
        return [SenderId(sender_id=entry) if isinstance(entry, str) else entry
                for entry in listed]

    def sender_ids_body(self) -> dict[str, Any]:
        return {"success": True, "sender_ids": [
            {"sender_id": s.sender_id, "label": s.label or s.sender_id, "channel": s.channel}
            for s in self.sender_ids()]}

    def sender_for(self, requested: str | None, channel: Channel) -> str | None:
        """The sender ID a send on `channel` goes out with, or Cast's refusal.

        Absent, it defaults to the account's first sender ID of that channel. An account
        with no sender IDs listed approves any sender ID on SMS and has no SIM channel.
        """
        senders = self.sender_ids()
        on_channel = [s for s in senders if s.channel == channel]
        if requested is None:
            if on_channel:
                return on_channel[0].sender_id
            if not senders and channel == "sms":
                return None
            raise channel_not_allowed(f"This account has no {channel.upper()} sender ID")
        if not senders:
            if channel == "sms":
                return requested
            raise channel_not_allowed(f"This account has no {channel.upper()} sender ID")
        if any(s.sender_id == requested for s in on_channel):
            return requested
        found = next((s for s in senders if s.sender_id == requested), None)
        if found is None:
            raise invalid(f"sender_id {requested!r} is not an approved sender ID of this "
                          "account")
        raise channel_not_allowed(
            f"sender_id {requested!r} is a {found.channel.upper()} sender ID; send it "
            f"through /{found.channel}/send")

    # --- profile ---------------------------------------------------------------------

    def profile(self) -> AccountProfile:
        return self.knobs.profile_by_key.get(self.api_key, self.knobs.profile)

    def profile_body(self) -> dict[str, Any]:
        profile = self.profile()
        return {"success": True, "name": profile.name, "email": profile.email}

    # --- opt-outs --------------------------------------------------------------------

    def opt_outs(self) -> list[OptOut]:
        knobs = self.knobs
        listed = knobs.opted_out_by_key.get(self.api_key, knobs.opted_out)
        return [OptOut(number=entry) if isinstance(entry, str) else entry
                for entry in listed]

    def opted_out(self, to: str, sender_id: str | None) -> bool:
        number = local_form(to)
        return any(local_form(out.number) == number
                   and (out.sender_id is None or out.sender_id == sender_id)
                   for out in self.opt_outs())

    def unsubscribed_body(self, page: Page) -> dict[str, Any]:
        everyone = self.opt_outs()
        return {"success": True, "total": len(everyone), "unsubscribed": [
            {"number": local_form(out.number), "sender_id": out.sender_id,
             "unsubscribed_at": _iso(out)}
            for out in everyone[page.offset:page.offset + page.limit]]}


def _iso(out: OptOut) -> str | None:
    at = out.unsubscribed_at
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
