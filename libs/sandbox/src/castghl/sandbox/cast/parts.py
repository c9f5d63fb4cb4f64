"""How many SMS parts (and so credits) a text costs, counted the way carriers do.

Written here on purpose rather than imported from `castghl.common.sms`: the simulator is
the oracle the bridge's own counting is tested against, so it must not share its code.
"""

from __future__ import annotations

from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet (ESC excluded: it is not a character a text can contain).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each costs two septets (ESC + the character).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PER_PART = 160, 153
UCS2_SINGLE, UCS2_PER_PART = 70, 67


def encoding_of(text: str) -> Encoding:
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        return "GSM-7"
    return "UCS-2"


def count_parts(text: str) -> tuple[Encoding, int]:
    """(encoding, parts). A two-unit character (GSM escape, UTF-16 surrogate pair) is
    never split across parts, so a long text can need one part more than length / 153."""
    encoding = encoding_of(text)
    if encoding == "GSM-7":
        units = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        single, per_part = GSM7_SINGLE, GSM7_PER_PART
    else:
        units = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        single, per_part = UCS2_SINGLE, UCS2_PER_PART
    if sum(units) <= single:
        return encoding, 1
    parts, used = 1, 0
    for unit in units:
        if used + unit > per_part:
            parts, used = parts + 1, 0
        used += unit
    return encoding, parts
