"""What is wrong with input, said one way everywhere, and never with the input's values."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from castghl.common.validation import describe, fields, whole_body

SECRET = "cast_live_0123456789abcdef"


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(alias="messageId")
    count: int = 0
    key: str = ""

    @field_validator("key")
    @classmethod
    def _looks_like_a_key(cls, value: str) -> str:
        if value and not value.startswith("ok_"):
            raise ValueError("must start with ok_")
        return value


def refusal(raw: str) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Payload.model_validate_json(raw)
    return caught.value


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        pytest.param("not json", "body is not valid JSON", id="not-json"),
        pytest.param("[1, 2]", "body must be a JSON object", id="array"),
        pytest.param('"text"', "body must be a JSON object", id="string"),
        pytest.param("{}", "messageId is missing", id="missing"),
        pytest.param('{"messageId": null}', "messageId: Input should be a valid string",
                     id="wrong-type"),
        pytest.param('{"messageId": "m", "count": "x", "colour": 1}',
                     "count: Input should be a valid integer, unable to parse string as an "
                     "integer; colour: unknown field", id="two-problems-in-order"),
        pytest.param(f'{{"messageId": "m", "key": "{SECRET}"}}', "key: must start with ok_",
                     id="value-error-without-its-prefix"),
    ],
)
def test_a_body_is_described_field_by_field_or_as_a_whole(raw: str, said: str) -> None:
    assert describe(refusal(raw)) == said


def test_no_value_is_ever_echoed() -> None:
    text = describe(refusal(f'{{"messageId": 7, "count": "{SECRET}", "key": "{SECRET}", '
                            f'"extra": "{SECRET}"}}'))
    assert SECRET not in text
    assert text.count(";") == 3  # four problems, each named


def test_a_caller_names_fields_and_unknown_ones_in_its_own_words() -> None:
    exc = refusal('{"count": "x", "colour": 1}')
    assert whole_body(exc) is None
    said = fields(exc, name=lambda error: str(error["loc"][0]).upper(),
                  unknown="unknown setting")
    assert said == ("MESSAGEID is missing; COUNT: Input should be a valid integer, unable to "
                    "parse string as an integer; COLOUR: unknown setting")


def test_one_problem_per_field() -> None:
    class Either(BaseModel):
        value: int | bool

    with pytest.raises(ValidationError) as caught:
        Either.model_validate({"value": "neither"})
    assert fields(caught.value, name=lambda error: str(error["loc"][0])).count("value") == 1
