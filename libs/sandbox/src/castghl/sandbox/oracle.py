"""Which SMS Cast sent for which message, found by content alone.

The oracle shares none of the bridge's conventions: not its idempotency keys, not its ids,
not its way of cutting a long text. It knows what a GHL user wrote and reads Cast's log of
what was really sent; a duplicate sent under no key, or under another one, counts like
any other SMS. So every message must have a text of its own
(`castghl.sandbox.scenarios.unique`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any


def content(text: str) -> str:
    """A text as its reader sees it: the words in order, whatever whitespace is between.
    Where a long text is cut, and the whitespace dropped there, is the sender's choice."""
    return " ".join(text.split())


def written(message: dict[str, Any]) -> str:
    """What must reach Cast for a GHL message (`/_sandbox/messages` row): its text, then
    its links (Cast has no MMS: links travel in the SMS text)."""
    return "\n".join([message.get("message") or "", *(message.get("attachments") or [])])


def sends_by_text(texts: Collection[str], sent: Iterable[dict[str, Any]]
                  ) -> dict[str, list[dict[str, Any]]]:
    """The SMS of Cast's log `sent` (oldest first) that carry each of `texts`.

    An SMS carries a text when it reads as that text or as one piece of it. A long text
    goes out as several SMS whose texts are consecutive pieces of it: the first where the
    text begins, each next one where the one before ended. A piece sent again (all of a
    copy, or only a part the sender retried) counts again, so a text sent twice shows
    twice its SMS. The texts must differ in content, and no SMS may read as a piece of
    two of them (ValueError: the log cannot tell whose it is); a text that begins with a
    tag of its own is safe, unless two long texts also share a later piece.
    """
    copies = {content(text): _Copies(content(text)) for text in texts}
    if len(copies) != len(texts):
        raise ValueError("two messages have the same text: Cast's log cannot tell them apart")
    by_content = {content(text): text for text in texts}
    found: dict[str, list[dict[str, Any]]] = {text: [] for text in texts}
    for entry in sent:
        sms = content(str(entry.get("message") or ""))
        if not sms:
            continue
        # A whole text is that text's, though it may also read as the start of another.
        places = {sms: 0} if sms in copies else {
            key: place for key, copy in copies.items()
            if (place := copy.place(sms)) is not None}
        if len(places) > 1:
            raise ValueError(f"{len(places)} messages hold the piece {sms[:40]!r}…: "
                             "give each message a text of its own")
        for key, place in places.items():
            copies[key].take(sms, place)
            found[by_content[key]].append(entry)
    return found


@dataclass
class _Copies:
    """The copies of one text Cast has sent so far, piece by piece."""

    text: str  # its `content`
    awaited: list[int] = field(default_factory=list)  # where copies under way go on
    seen: dict[str, int] = field(default_factory=dict)  # pieces sent, and where they stand

    def place(self, sms: str) -> int | None:
        """Where in the text `sms` stands: the next piece of a copy under way, the start
        of a new copy, or a piece sent before, again; None when it is no piece of it."""
        for start in self.awaited:
            if self.text.startswith(sms, start):
                return start
        if self.text.startswith(sms):
            return 0
        return self.seen.get(sms)

    def take(self, sms: str, start: int) -> None:
        if start in self.awaited:
            self.awaited.remove(start)
        self.seen[sms] = start
        end = start + len(sms)
        if end < len(self.text):
            # Cut at whitespace (dropped; one space in `content`) or, with none in reach,
            # inside a word.
            self.awaited.append(end + 1 if self.text[end] == " " else end)
