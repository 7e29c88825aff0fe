"""The one date rule of the domain: a calendar date is ISO text YYYY-MM-DD that exists.

Used for a patient's birth date and for `date` handover fields, so both accept and refuse the
same values (no week dates, no ordinal dates, no 2026-02-30).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def calendar_date(value: object) -> str | None:
    """The normalised YYYY-MM-DD text of a real calendar date, or None if `value` is not one."""
    if not isinstance(value, str) or not _DATE.match(value):
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        return None


def utc_instant(value: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC when it has no offset), for report periods;
    ValueError when it is neither (OverflowError, an offset past the calendar's ends, included)."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(value) from None
