"""Philippine mobile numbers: the only destinations Cast.ph delivers to, as one type.

`PhMobile.parse` accepts what people and GHL actually store — `+639171234567`,
`639171234567`, `09171234567`, `9171234567`, `0063 917 …`, with spaces, dashes, dots or
parentheses — and validates with `phonenumbers` (country 63, type MOBILE). Anything else
raises `InvalidPhoneNumber`, whose `user_message` says what is wrong in terms a GHL user
understands and whose `reason` is a stable tag for logs and metrics.

A number is parsed once, at the edge where it enters (the gateway for replies, the
sender for a webhook's recipient, the admin API for inbound numbers); from there on it is
a `PhMobile`, which crosses the broker and is stored as E.164. The form Cast's send API
takes is made by the Cast client alone (`castghl.common.cast.client.cast_number`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat, PhoneNumberType
from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

from castghl.common.errors import PermanentError

__all__ = ["InvalidPhoneNumber", "InvalidReason", "PhMobile"]

InvalidReason = Literal[
    "empty", "not_a_number", "not_philippine", "landline", "not_mobile", "invalid"
]

_PH_COUNTRY_CODE = 63
# Digits and the punctuation people type around them. Letters are refused up front
# because phonenumbers would otherwise read vanity numbers ("0917-CALL-NOW") as digits.
_PHONE_CHARS = re.compile(r"[0-9+\s\-.()\u2010-\u2015]+")
# The forms GHL stores most often: +639…, 639…, 09… or 9…, the ten national digits of a
# 9xx mobile, spaced or dashed or not. Such a number needs no general parse (~40 µs of
# CPU per SMS on a 2-core machine): its type alone decides, as it does after a parse.
_COMMON_FORM = re.compile(r"(?:\+?63|0)?(9[0-9]{9})")
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


class PhMobile:
    """A Philippine mobile number, valid by construction. `str()` and JSON give its E.164
    form (`+639171234567`); `national` is the local form (`09171234567`, `08…` for DITO's
    0895–0898). Pydantic fields of this type accept any spelling `parse` does."""

    __slots__ = ("e164",)

    def __init__(self, e164: str) -> None:
        # Only `parse` (and pydantic, through it) should call this with a checked number.
        self.e164 = e164

    @classmethod
    def parse(cls, raw: str) -> PhMobile:
        """Raises `InvalidPhoneNumber` for anything but a valid Philippine mobile number."""
        return cls(phonenumbers.format_number(_parse_ph_mobile(raw), PhoneNumberFormat.E164))

    @property
    def national(self) -> str:
        return "0" + self.e164.removeprefix("+63")

    def __str__(self) -> str:
        return self.e164

    def __repr__(self) -> str:
        return f"PhMobile({self.e164!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PhMobile) and other.e164 == self.e164

    def __hash__(self) -> int:
        return hash(self.e164)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> CoreSchema:
        def validate(value: object) -> PhMobile:
            if isinstance(value, PhMobile):
                return value
            if not isinstance(value, str):
                raise ValueError("must be a phone number (a string)")  # noqa: TRY004
            try:
                return cls.parse(value)
            except InvalidPhoneNumber as exc:
                # The reason only: the number itself stays out of error texts and logs.
                raise ValueError(f"must be a Philippine mobile number ({exc.reason})"
                                 ) from None

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.to_string_ser_schema(),
            json_schema_input_schema=core_schema.str_schema())


def _parse_ph_mobile(raw: str) -> PhoneNumber:
    text = raw.strip()
    common = _COMMON_FORM.fullmatch(text.replace(" ", "").replace("-", ""))
    if common is not None:
        number = PhoneNumber(country_code=_PH_COUNTRY_CODE, national_number=int(common[1]))
        if phonenumbers.number_type(number) in _MOBILE_TYPES:
            return number
        # Not a known mobile prefix: the general parse below says what it is instead.
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
