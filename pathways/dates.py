"""The one date rule of the domain: a calendar date is ISO text YYYY-MM-DD that exists.

Used for a patient's birth date and for `date` handover fields, so both accept and refuse the
same values (no week dates, no ordinal dates, no 2026-02-30).
"""

from __future__ import annotations

import re
from datetime import date

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def calendar_date(value: object) -> str | None:
    """The normalised YYYY-MM-DD text of a real calendar date, or None if `value` is not one."""
    if not isinstance(value, str) or not _DATE.match(value):
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        return None
