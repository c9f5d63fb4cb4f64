"""SMS text: composing the body, and splitting it for Cast's size cap.

Cast's request cap (450 characters in the old doc) counts Python characters; `split` cuts
a long text into several Cast sends. What each send costs in carrier segments (one Cast
credit each) is Cast's to count: it answers `parts` for every send.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from castghl.common.errors import PermanentError

__all__ = ["EmptyMessage", "MessageTooLong", "compose", "split"]


class EmptyMessage(PermanentError):
    """Neither text nor attachments: there is nothing to send."""

    code = "empty_message"
    user_message = "Cast SMS: the message is empty"


class MessageTooLong(PermanentError):
    """The text needs more Cast sends than the configured cap allows."""

    code = "message_too_long"


_LEADING_BLANK_LINES = re.compile(r"\A(?:[^\S\n]*\n)+")


def compose(message: str, attachments: Sequence[str]) -> str:
    """The SMS body: the text, then each attachment URL on its own line (Cast has no MMS).

    Line endings become `\\n` (a `\\r` would cost a character in Cast's cap); leading
    blank lines and trailing whitespace of the text are dropped, and blank attachment
    entries ignored. Raises `EmptyMessage` when nothing remains.
    """
    text = message.replace("\r\n", "\n").replace("\r", "\n").rstrip()
    # Blank lines in front cost characters and show nothing; the first line's own
    # indentation is the user's choice and stays.
    text = _LEADING_BLANK_LINES.sub("", text)
    urls = [url.strip() for url in attachments if url.strip()]
    lines = ([text] if text.strip() else []) + urls
    if not lines:
        raise EmptyMessage("message text and attachments are empty")
    return "\n".join(lines)


# --- splitting for Cast's character cap -----------------------------------------------

# Marks that belong to the character before them: a hard split in front of one would
# detach an accent or break an emoji sequence.
_JOINERS = frozenset("\u200d\ufe0e\ufe0f")
_MAX_BACKOFF = 16


def split(text: str, limit: int, max_parts: int) -> list[str]:
    """Cut `text` into ordered chunks of at most `limit` characters each.

    A text that fits is returned as is (`[text]`, even when empty). A longer one loses
    its surrounding whitespace; then each chunk ends at a whitespace run found at or
    before index `limit` of what remains — the last newline when it lies in the second
    half of that window, else the last whitespace of any kind — and the whole run is
    dropped, so no chunk starts or ends with break whitespace and none is empty. With no
    whitespace in reach the chunk is cut hard at `limit` characters (moved back a little,
    when that keeps an accent or emoji sequence whole) and nothing is dropped. So the
    chunks are the text's characters in order, minus exactly its surrounding whitespace
    and the whitespace runs at the breaks.

    Raises `MessageTooLong` when more than `max_parts` chunks are needed, and
    `ValueError` when `limit` or `max_parts` is below 1.
    """
    if limit < 1 or max_parts < 1:
        raise ValueError(f"limit and max_parts must be at least 1, got {limit}, {max_parts}")
    if len(text) <= limit:
        return [text]
    text = text.strip()
    if len(text) <= limit:
        return [text]
    if len(text) > limit * max_parts:
        raise _too_long(text, limit, max_parts)

    chunks: list[str] = []
    start = 0
    while len(text) - start > limit:
        end, next_start = _break(text, start, limit)
        chunks.append(text[start:end])
        start = next_start
        if len(chunks) >= max_parts and start < len(text):
            raise _too_long(text, limit, max_parts)
    if start < len(text):
        chunks.append(text[start:])
    return chunks


def _break(text: str, start: int, limit: int) -> tuple[int, int]:
    """End of the chunk beginning at `start`, and where the next chunk begins."""
    stop = start + limit  # whitespace here still leaves a chunk of exactly `limit`
    cut = text.rfind("\n", start + 1, stop + 1)
    if cut < start + limit // 2:
        cut = next((i for i in range(stop, start, -1) if text[i].isspace()), -1)
    if cut > start:
        # Every chunk begins with a non-space character, so the run stops short of `start`.
        run_start, run_end = cut, cut
        while text[run_start - 1].isspace():
            run_start -= 1
        while run_end < len(text) and text[run_end].isspace():
            run_end += 1
        return run_start, run_end
    cut = _hard_cut(text, start, stop)
    return cut, cut


def _hard_cut(text: str, start: int, stop: int) -> int:
    for cut in range(stop, max(start, stop - _MAX_BACKOFF), -1):
        if not _clings(text[cut]) and text[cut - 1] not in _JOINERS:
            return cut
    return stop


def _clings(char: str) -> bool:
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or char in _JOINERS
        or 0x1F3FB <= ord(char) <= 0x1F3FF  # emoji skin-tone modifiers
    )


def _too_long(text: str, limit: int, max_parts: int) -> MessageTooLong:
    parts = "part" if max_parts == 1 else "parts"
    return MessageTooLong(
        f"{len(text)} characters exceed {max_parts} x {limit}",
        user_message=(
            f"Cast SMS: the message is too long ({len(text):,} characters; "
            f"the limit is {limit * max_parts:,} in {max_parts} {parts})"
        ),
    )
