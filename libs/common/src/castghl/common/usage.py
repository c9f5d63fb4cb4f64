"""Per-location usage, the record clients are billed by: written and read by the sender
(its `usage` collection), shown by the OAuth service's admin API and console through the
sender's operator API.

One document per location and day — the calendar day in the Philippines (UTC+8, no
daylight saving), where the clients are — counting SMS parts Cast accepted and messages
that ended `delivered` or `failed`. Each is counted when it happens for the first time,
so a redelivered message is never counted twice; a crash between the step and its count
can leave a day one short, never over.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Final

USAGE_COLLECTION: Final = "usage"
# Kept a year and a day, so last year's same day is still there to compare with.
USAGE_RETENTION: Final = timedelta(days=366)
MANILA: Final = timezone(timedelta(hours=8), "Asia/Manila")
COUNTS: Final = ("parts_sent", "delivered", "failed")


def usage_day(at: float) -> str:
    """The Philippine calendar day of epoch second `at`, as YYYY-MM-DD."""
    return datetime.fromtimestamp(at, UTC).astimezone(MANILA).date().isoformat()


def day_row(doc: dict[str, Any]) -> dict[str, Any]:
    return {"day": doc["day"], **{name: int(doc.get(name) or 0) for name in COUNTS}}


def totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {name: sum(int(row[name]) for row in rows) for name in COUNTS}


def parse_day(value: str) -> date:
    return date.fromisoformat(value)


def period(since: str | None, until: str | None, today: date, *, days: int) -> tuple[date, date]:
    """The days asked for: `until` defaults to today, `since` to `days` days up to it. A
    ValueError says what is wrong, for a 400."""
    try:
        last = parse_day(until) if until else today
        first = parse_day(since) if since else last - timedelta(days=days - 1)
    except ValueError:
        raise ValueError("since and until are days: YYYY-MM-DD") from None
    if first > last:
        raise ValueError("since is after until")
    if last - first > USAGE_RETENTION:
        raise ValueError("at most a year and a day at once")
    return first, last
