"""A sender ID's channel, as a Cast account lists it (`GET /api/v1/account/sender-ids`,
reference/cast.md): `sms` or `sim`. Read by the sender before it sends, and by the admin
API before a sender ID is set."""

from __future__ import annotations

from typing import Final

from castghl.common.cast.models import CastSenderIds, Channel
from castghl.common.errors import PermanentError

CHANNELS: Final[frozenset[str]] = frozenset({"sms", "sim"})


def unknown_sender_id(sender_id: str) -> PermanentError:
    return PermanentError(f"sender ID {sender_id!r} is not on the Cast account",
                          code="sender_id_unknown",
                          user_message=f"Cast SMS: the sender ID {sender_id!r} is not one of "
                                       "this location's Cast account; please ask your "
                                       "administrator to choose one it has")


def channel_of(listed: CastSenderIds | None, sender_id: str | None) -> Channel | None:
    """The channel Cast lists `sender_id` on; None when it is not listed. No list, an
    empty one, or no sender ID (Cast picks the account's own) mean SMS."""
    if sender_id is None or listed is None or not listed.sender_ids:
        return "sms"
    found = next((s for s in listed.sender_ids if s.sender_id == sender_id), None)
    if found is None:
        return None
    if found.channel not in CHANNELS:
        raise PermanentError(f"sender ID {sender_id!r} is on channel {found.channel!r}",
                             code="channel_unknown",
                             user_message=f"Cast SMS: Cast.ph lists the sender ID "
                                          f"{sender_id!r} on a channel this app cannot send "
                                          f"on ({found.channel[:20]!r}); please contact your "
                                          "administrator")
    return "sim" if found.channel == "sim" else "sms"
