"""Requests as Cast checks them — the send body, and the paging parameters of listings —
parsed by hand so each refusal carries Cast's error shape and a sentence naming the
field, never FastAPI's 422.

Where the docs are silent we are strict, so a sloppy request from the bridge fails here
rather than in production: unknown fields, blank messages, a missing JSON content type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from castghl.sandbox.cast.errors import CastError
from castghl.sandbox.cast.knobs import CastKnobs

LOCAL_NUMBER = re.compile(r"09\d{9}")
# The newer doc takes E.164 Philippine mobiles: +639… and DITO's +63895…-+63898…, which
# have no 09 form.
E164_NUMBER = re.compile(r"\+63(?:9\d{9}|89[5-8]\d{7})")
MAX_IDEMPOTENCY_KEY = 255
# Listings (`/sms/logs`, `/account/unsubscribed`): the page bounds their contracts give
# (logs.py, accounts.py); no public Cast doc we hold states them.
MAX_PAGE_LIMIT = 500
DEFAULT_PAGE_LIMIT = 50
WHOLE_NUMBER = re.compile(r"\d{1,9}")
# `scheduled_at` is in the new doc; null for an optional field reads as "absent", as a
# JavaScript `if (body.sender_id)` would.
KNOWN_FIELDS = ("to", "message", "sender_id", "scheduled_at")


@dataclass(frozen=True)
class SendRequest:
    to: str
    message: str
    sender_id: str | None
    scheduled_at: str | None

    def fingerprint(self) -> str:
        """What must match for a retry to be "the same request" under one idempotency key."""
        return json.dumps([self.to, self.message, self.sender_id, self.scheduled_at])


def invalid(error: str) -> CastError:
    return CastError(400, "VALIDATION_ERROR", error)


def malformed(error: str) -> CastError:
    return CastError(400, "INVALID_REQUEST", error)


def parse_send(raw: bytes, content_type: str, knobs: CastKnobs) -> SendRequest:
    if content_type.split(";", maxsplit=1)[0].strip().lower() != "application/json":
        raise malformed("Content-Type must be application/json")
    try:
        data: Any = json.loads(raw)
    except ValueError:
        raise malformed("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise malformed("request body must be a JSON object")
    unknown = sorted(set(data) - set(KNOWN_FIELDS))
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(unknown)}")
    return SendRequest(
        to=_recipient(data.get("to"), knobs),
        message=_message(data.get("message"), knobs),
        sender_id=_sender_id(data.get("sender_id"), knobs),
        scheduled_at=_scheduled_at(data.get("scheduled_at")),
    )


def _recipient(to: Any, knobs: CastKnobs) -> str:
    if to is None:
        raise invalid("to is required")
    if not isinstance(to, str):
        raise invalid("to must be a string")
    if LOCAL_NUMBER.fullmatch(to) or (knobs.accept_e164 and E164_NUMBER.fullmatch(to)):
        return to
    accepted = "09XXXXXXXXX" + (" or E.164 (+639XXXXXXXXX)" if knobs.accept_e164 else "")
    raise invalid(f"to must be a Philippine mobile number in the form {accepted}")


def _message(message: Any, knobs: CastKnobs) -> str:
    if message is None:
        raise invalid("message is required")
    if not isinstance(message, str):
        raise invalid("message must be a string")
    if not message.strip():
        raise invalid("message must not be empty")
    if len(message) > knobs.max_message_chars:
        raise invalid(f"message is {len(message)} characters; the limit is "
                      f"{knobs.max_message_chars}")
    return message


def _sender_id(sender_id: Any, knobs: CastKnobs) -> str | None:
    """Its form only: which sender IDs the account may use, and on which channel, is the
    account's to say (`accounts.py`), once the key is known."""
    if sender_id is None:
        return None
    if not isinstance(sender_id, str) or not sender_id:
        raise invalid("sender_id must be a non-empty string")
    if len(sender_id) > knobs.max_sender_id_chars:
        raise invalid(f"sender_id is {len(sender_id)} characters; the limit is "
                      f"{knobs.max_sender_id_chars}")
    return sender_id


def _scheduled_at(scheduled_at: Any) -> str | None:
    if scheduled_at is None:
        return None
    if isinstance(scheduled_at, str):
        try:
            datetime.fromisoformat(scheduled_at)
        except ValueError:
            pass
        else:
            return scheduled_at
    raise invalid("scheduled_at must be an ISO-8601 date-time string")


def idempotency_key(header: str | None, knobs: CastKnobs) -> str | None:
    """The key to deduplicate on, or None. The old API ignores the header entirely."""
    if header is None or not knobs.idempotency:
        return None
    if not header or len(header) > MAX_IDEMPOTENCY_KEY:
        raise invalid(f"X-Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return header


def local_form(number: str) -> str:
    """`09XXXXXXXXX` for either accepted form, so an opt-out matches both spellings."""
    return "0" + number[3:] if number.startswith("+63") else number


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int
    search: str | None = None


def parse_page(params: Iterable[tuple[str, str]], *, searchable: bool) -> Page:
    """`limit` (1 to 500, default 50), `offset` (default 0) and, where `searchable`,
    `search`. Strict as the send is: an unknown or repeated parameter is refused, so a
    misspelt `ofset` fails here instead of silently listing the first page again."""
    known = ("limit", "offset", "search") if searchable else ("limit", "offset")
    given: dict[str, str] = {}
    for name, value in params:
        if name not in known:
            raise invalid(f"unknown query parameter {name!r}; expected {', '.join(known)}")
        if name in given:
            raise invalid(f"query parameter {name!r} given more than once")
        given[name] = value
    limit = _whole("limit", given.get("limit"), DEFAULT_PAGE_LIMIT)
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise invalid(f"limit must be between 1 and {MAX_PAGE_LIMIT}")
    return Page(limit=limit, offset=_whole("offset", given.get("offset"), 0),
                search=given.get("search") or None)


def _whole(name: str, raw: str | None, default: int) -> int:
    if raw is None:
        return default
    if not WHOLE_NUMBER.fullmatch(raw):
        raise invalid(f"{name} must be a whole number")
    return int(raw)
