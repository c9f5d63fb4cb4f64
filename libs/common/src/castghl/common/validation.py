"""Saying what is wrong with input, in one way everywhere: pydantic's errors as one line.

Never echoes a value (input may be a secret, or a person's message): each problem names
its field and what is wrong — `messageId is missing; phone: Input should be a valid
string`. A body that is not JSON, or not an object, is said in those words alone.
Request bodies (gateway, oauth), broker messages (workers) and settings (fields named by
their environment variable) all say it this way.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# How a problem names the field it is about (a settings class names environment variables).
Namer = Callable[[ErrorDetails], str]
UNKNOWN_FIELD = "unknown field"


def where(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"])


def problem(error: ErrorDetails, *, name: Namer = where, unknown: str = UNKNOWN_FIELD) -> str:
    """One error as `field: what is wrong` (or `field is missing`)."""
    if error["type"] == "missing":
        return f"{name(error)} is missing"
    if error["type"] == "extra_forbidden":
        return f"{name(error)}: {unknown}"
    return f"{name(error)}: {error['msg'].removeprefix('Value error, ')}"


def whole_body(exc: ValidationError) -> str | None:
    """What is wrong with a JSON body as a whole (not JSON, not an object), if that is it."""
    for error in exc.errors(include_url=False, include_input=False):
        if not error["loc"]:
            return ("body is not valid JSON" if error["type"] == "json_invalid"
                    else "body must be a JSON object")
    return None


def fields(exc: ValidationError, *, name: Namer = where, unknown: str = UNKNOWN_FIELD) -> str:
    """Field by field, the first problem of each, in pydantic's order."""
    problems: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        problems.setdefault(name(error), problem(error, name=name, unknown=unknown))
    return "; ".join(problems.values())


def describe(exc: ValidationError, *, unknown: str = UNKNOWN_FIELD) -> str:
    """A JSON body (a request's, a message's): wrong as a whole, else field by field."""
    return whole_body(exc) or fields(exc, unknown=unknown)
