"""Philippine mobile numbers: the only destinations Cast.ph delivers to.

Both functions accept what people and GHL actually store — `+639171234567`,
`639171234567`, `09171234567`, `9171234567`, `0063 917 …`, with spaces, dashes, dots or
parentheses — and validate with `phonenumbers` (country 63, type MOBILE). Anything else
raises `InvalidPhoneNumber`, whose `user_message` says what is wrong in terms a GHL user
understands and whose `reason` is a stable tag for logs and metrics.
"""

from __future__ import annotations

import re
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat, PhoneNumberType

from castghl.common.errors import PermanentError

__all__ = ["InvalidPhoneNumber", "InvalidReason", "to_cast_number", "to_e164"]

InvalidReason = Literal[
    "empty", "not_a_number", "not_philippine", "landline", "not_mobile", "invalid"
]

_PH_COUNTRY_CODE = 63
# Digits and the punctuation people type around them. Letters are refused up front
# because phonenumbers would otherwise read vanity numbers ("0917-CALL-NOW") as digits.
_PHONE_CHARS = re.compile(r"[0-9+\s\-.()\u2010-\u2015]+")
_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
_LANDLINE_TYPES = frozenset({PhoneNumberType.FIXED_LINE})
_MAX_SHOWN = 32


class InvalidPhoneNumber(PermanentError):
    """The recipient is not a Philippine mobile number; retrying cannot help.

    `reason` says which rule failed; the message never carries the number (logs stay
    free of it), while `user_message` shows it so the GHL user can fix the contact.
    """

    code = "invalid_number"

    def __init__(self, reason: InvalidReason, user_message: str) -> None:
        super().__init__(f"invalid phone number: {reason}", user_message=user_message)
        self.reason: InvalidReason = reason


def to_cast_number(raw: str) -> str:
    """Return the national form Cast's send API wants, `09XXXXXXXXX`.

    DITO's 0895–0898 ranges are mobile too and come back as `08XXXXXXXXX`.
    Raises `InvalidPhoneNumber` for anything but a valid Philippine mobile number.
    """
    return "0" + str(_parse_ph_mobile(raw).national_number)


def to_e164(raw: str) -> str:
    """Return the E.164 form `+639XXXXXXXXX` (`+638…` for DITO 0895–0898).

    Used for inbound SMS and GHL contact upserts. Accepts the same inputs as
    `to_cast_number`, E.164 included; raises the same errors.
    """
    return phonenumbers.format_number(_parse_ph_mobile(raw), PhoneNumberFormat.E164)


def _parse_ph_mobile(raw: str) -> PhoneNumber:
    text = raw.strip()
    if not text:
        raise InvalidPhoneNumber("empty", "Cast SMS: the recipient's phone number is empty")
    if not _PHONE_CHARS.fullmatch(text) or not any(c.isdigit() for c in text):
        raise _not_a_number(text)
    try:
        # Region PH makes `09…` and `9…` national numbers; phonenumbers itself recognises
        # `+63`, `0063` (PH's international prefix) and a bare leading `63`.
        number = phonenumbers.parse(text, "PH")
    except NumberParseException:
        raise _not_a_number(text) from None

    if number.country_code != _PH_COUNTRY_CODE:
        shown = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
        raise InvalidPhoneNumber(
            "not_philippine", f"Cast SMS: {shown} is not a Philippine mobile number"
        )
    if not phonenumbers.is_valid_number(number):
        # Too short, too long, or a prefix phonenumbers does not know: its formatting of
        # such a number is ungrouped and unhelpful, so show what the user typed.
        raise InvalidPhoneNumber(
            "invalid", f"Cast SMS: {_shown_as_given(text)} is not a valid Philippine mobile number"
        )
    kind = phonenumbers.number_type(number)
    if kind in _MOBILE_TYPES:
        return number
    shown = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    if kind in _LANDLINE_TYPES:
        raise InvalidPhoneNumber(
            "landline", f"Cast SMS: {shown} is a Philippine landline, not a mobile number"
        )
    raise InvalidPhoneNumber("not_mobile", f"Cast SMS: {shown} is not a Philippine mobile number")


def _not_a_number(text: str) -> InvalidPhoneNumber:
    return InvalidPhoneNumber(
        "not_a_number", f'Cast SMS: "{_shown_as_given(text)}" is not a phone number'
    )


def _shown_as_given(text: str) -> str:
    """The input as typed, made safe to show: one line, printable, bounded in length."""
    printable = "".join(c if c.isprintable() else " " for c in text)
    if len(printable) <= _MAX_SHOWN:
        return printable
    return printable[: _MAX_SHOWN - 1] + "…"
