"""Philippine mobile numbers: every accepted spelling, every kind of refusal and its text."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType
from pydantic import BaseModel, ValidationError

from castghl.common.cast.client import cast_number
from castghl.common.errors import PermanentError
from castghl.common.phone import InvalidPhoneNumber, PhMobile

ACCEPTED = [
    pytest.param("+639171234567", id="e164"),
    pytest.param("639171234567", id="country-code-no-plus"),
    pytest.param("09171234567", id="national"),
    pytest.param("9171234567", id="national-no-trunk-zero"),
    pytest.param("00639171234567", id="international-prefix-00"),
    pytest.param("0063 917 123 4567", id="international-prefix-spaced"),
    pytest.param("+63 917 123 4567", id="e164-spaced"),
    pytest.param("+63 (917) 123-4567", id="parentheses-and-dash"),
    pytest.param("+63-917-123-4567", id="dashes"),
    pytest.param("0917.123.4567", id="dots"),
    pytest.param("0917-123-4567", id="national-dashes"),
    pytest.param(" 0917 123 4567 ", id="surrounding-spaces"),
    pytest.param("\t0917 123 4567\n", id="tab-and-newline"),
    pytest.param("+63 0917 123 4567", id="country-code-and-trunk-zero"),
    pytest.param("63 917 123 4567", id="country-code-spaced"),
    pytest.param("(0917) 123 4567", id="parenthesised-prefix"),
    pytest.param("0917\u00a0123\u00a04567", id="no-break-spaces"),
    pytest.param("0917\u2013123\u20134567", id="en-dashes"),
]


@pytest.mark.parametrize("raw", ACCEPTED)
def test_accepted_forms_become_one_number(raw: str) -> None:
    number = PhMobile.parse(raw)
    assert (number.e164, str(number), number.national) == (
        "+639171234567", "+639171234567", "09171234567")
    assert number == PhMobile.parse("+639171234567")


# A spread of Globe, Smart/TNT/Sun and DITO prefixes; phonenumbers (9.0.x) reports every
# one of them as MOBILE, never FIXED_LINE_OR_MOBILE.
MOBILE_PREFIXES = [
    pytest.param("0905", id="globe-0905"),
    pytest.param("0906", id="globe-0906"),
    pytest.param("0915", id="globe-0915"),
    pytest.param("0917", id="globe-0917"),
    pytest.param("0927", id="globe-0927"),
    pytest.param("0935", id="globe-0935"),
    pytest.param("0945", id="globe-0945"),
    pytest.param("0953", id="globe-0953"),
    pytest.param("0956", id="globe-0956"),
    pytest.param("0966", id="globe-0966"),
    pytest.param("0977", id="globe-0977"),
    pytest.param("0995", id="globe-0995"),
    pytest.param("0997", id="globe-0997"),
    pytest.param("0908", id="smart-0908"),
    pytest.param("0918", id="smart-0918"),
    pytest.param("0919", id="smart-0919"),
    pytest.param("0920", id="smart-0920"),
    pytest.param("0921", id="smart-0921"),
    pytest.param("0928", id="smart-0928"),
    pytest.param("0939", id="smart-0939"),
    pytest.param("0947", id="smart-0947"),
    pytest.param("0951", id="smart-0951"),
    pytest.param("0961", id="smart-0961"),
    pytest.param("0998", id="smart-0998"),
    pytest.param("0999", id="smart-0999"),
    pytest.param("0922", id="sun-0922"),
    pytest.param("0932", id="sun-0932"),
    pytest.param("0991", id="dito-0991"),
    pytest.param("0992", id="dito-0992"),
    pytest.param("0993", id="dito-0993"),
    pytest.param("0994", id="dito-0994"),
    pytest.param("0895", id="dito-0895"),
    pytest.param("0896", id="dito-0896"),
    pytest.param("0897", id="dito-0897"),
    pytest.param("0898", id="dito-0898"),
]


@pytest.mark.parametrize("prefix", MOBILE_PREFIXES)
def test_network_prefixes_are_mobile(prefix: str) -> None:
    national = prefix + "1234567"
    assert PhMobile.parse(national).e164 == "+63" + national[1:]
    assert PhMobile.parse("+63" + national[1:]).national == national


@pytest.mark.parametrize(("raw", "sent_as"), [
    ("0917 123 4567", "09171234567"),
    # DITO's 0895-0898 have no 09 form: E.164 is the only form Cast documents for them
    # (its newer API; the older one refuses it with its reason).
    ("0895 123 4567", "+638951234567"),
], ids=["globe", "dito"])
def test_cast_gets_the_form_its_documentation_names(raw: str, sent_as: str) -> None:
    assert cast_number(PhMobile.parse(raw)) == sent_as


def test_a_pydantic_field_parses_any_spelling_and_writes_e164() -> None:
    class Reply(BaseModel):
        sender: PhMobile

    reply = Reply.model_validate_json('{"sender": "0917-123-4567"}')
    assert reply.sender == PhMobile.parse("+639171234567")
    assert reply.model_dump_json() == '{"sender":"+639171234567"}'
    with pytest.raises(ValidationError) as refused:
        Reply.model_validate({"sender": "+1 202 555 0123"})
    assert "not_philippine" in str(refused.value)
    assert "555" not in str(refused.value.errors(include_input=False))


@pytest.mark.parametrize(
    ("raw", "reason", "user_message"),
    [
        pytest.param("", "empty", "Cast SMS: the recipient's phone number is empty",
                     id="empty"),
        pytest.param("   \t\n ", "empty", "Cast SMS: the recipient's phone number is empty",
                     id="whitespace-only"),
        pytest.param("+1 555 123 4567", "not_philippine",
                     "Cast SMS: +1 555-123-4567 is not a Philippine mobile number",
                     id="us-fictional"),
        pytest.param("+1 202 555 0123", "not_philippine",
                     "Cast SMS: +1 202-555-0123 is not a Philippine mobile number",
                     id="us-valid"),
        pytest.param("+44 7911 123456", "not_philippine",
                     "Cast SMS: +44 7911 123456 is not a Philippine mobile number",
                     id="uk-mobile"),
        pytest.param("0065 9123 4567", "not_philippine",
                     "Cast SMS: +65 9123 4567 is not a Philippine mobile number",
                     id="singapore-via-00"),
        pytest.param("02 8123 4567", "landline",
                     "Cast SMS: +63 2 8123 4567 is a Philippine landline, not a mobile number",
                     id="manila-landline"),
        pytest.param("+63 2 8123 4567", "landline",
                     "Cast SMS: +63 2 8123 4567 is a Philippine landline, not a mobile number",
                     id="manila-landline-e164"),
        pytest.param("(032) 123 4567", "landline",
                     "Cast SMS: +63 32 123 4567 is a Philippine landline, not a mobile number",
                     id="cebu-landline"),
        pytest.param("1800 1 888 8888", "not_mobile",
                     "Cast SMS: +63 1800 1 888 8888 is not a Philippine mobile number",
                     id="toll-free"),
        pytest.param("0917123456", "invalid",
                     "Cast SMS: 0917123456 is not a valid Philippine mobile number",
                     id="too-short"),
        pytest.param("091712345678", "invalid",
                     "Cast SMS: 091712345678 is not a valid Philippine mobile number",
                     id="too-long"),
        pytest.param("12", "invalid",
                     "Cast SMS: 12 is not a valid Philippine mobile number",
                     id="two-digits"),
        pytest.param("0917-ABC-DEFG", "not_a_number",
                     'Cast SMS: "0917-ABC-DEFG" is not a phone number',
                     id="vanity-letters"),
        pytest.param("call me", "not_a_number",
                     'Cast SMS: "call me" is not a phone number',
                     id="words"),
        pytest.param("09171234567 ext 5", "not_a_number",
                     'Cast SMS: "09171234567 ext 5" is not a phone number',
                     id="extension"),
        pytest.param("+", "not_a_number", 'Cast SMS: "+" is not a phone number',
                     id="plus-only"),
        pytest.param("--", "not_a_number", 'Cast SMS: "--" is not a phone number',
                     id="punctuation-only"),
        pytest.param("x" * 100, "not_a_number",
                     'Cast SMS: "' + "x" * 31 + '…" is not a phone number',
                     id="long-garbage-truncated"),
        pytest.param("abc\x00def", "not_a_number", 'Cast SMS: "abc def" is not a phone number',
                     id="control-character-hidden"),
    ],
)
def test_rejected_numbers_say_why(raw: str, reason: str, user_message: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        PhMobile.parse(raw)
    assert caught.value.reason == reason
    assert caught.value.user_message == user_message
    assert caught.value.code == "invalid_number"


def test_invalid_number_is_permanent_and_keeps_the_number_out_of_logs() -> None:
    with pytest.raises(PermanentError) as caught:
        PhMobile.parse("+1 202 555 0123")
    assert str(caught.value) == "invalid phone number: not_philippine"
    assert "555" not in str(caught.value)


def _general_parse(raw: str) -> str | None:
    """What phonenumbers alone makes of `raw`: its E.164 form if a PH mobile, else None."""
    try:
        number = phonenumbers.parse(raw, "PH")
    except phonenumbers.NumberParseException:
        return None
    if number.country_code != 63 or not phonenumbers.is_valid_number(number) or (
            phonenumbers.number_type(number) not in {PhoneNumberType.MOBILE,
                                                     PhoneNumberType.FIXED_LINE_OR_MOBILE}):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@pytest.mark.parametrize("form", ["+63{}", "63{}", "0{}", "{}", "+63 {} {} {}", "0{}-{}-{}"])
def test_the_common_forms_read_as_a_general_parse_does(form: str) -> None:
    """`parse` skips the general parse for the forms GHL stores most (its fast path): for
    every 9xx prefix, known to be mobile or not, both must say the same."""
    rng = random.Random(form)
    for prefix in range(900, 1000):
        digits = f"{prefix}{rng.randrange(10**7):07d}"
        raw = form.format(*([digits] if form.count("{}") == 1 else
                            [digits[:3], digits[3:6], digits[6:]]))
        try:
            ours: str | None = PhMobile.parse(raw).e164
        except InvalidPhoneNumber:
            ours = None
        assert ours == _general_parse(raw), raw
