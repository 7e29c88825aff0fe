"""Settlement periods: calendar quarters in UK time ('2026-Q4' is October to December 2026).

Quarters start at midnight UK time. 1 January is always in GMT (UTC+0); 1 April, 1 July and
1 October are always in British Summer Time (UTC+1: BST runs from the last Sunday of March to the
last Sunday of October), so those quarters start at 23:00 UTC the evening before. That fixed
rule needs no time-zone database. An entry belongs to the period holding the instant it was
booked at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_PERIOD = re.compile(r"^(?P<year>\d{4})-Q(?P<quarter>[1-4])$")
_BST = timedelta(hours=1)


@dataclass(frozen=True, order=True)
class Period:
    year: int
    quarter: int

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PERIOD.match(text.strip())
        if match is None or not 1970 <= int(match["year"]) <= 2999:
            raise ValueError(f"{text!r} is not a period: expected YYYY-QN, e.g. 2026-Q4")
        return cls(int(match["year"]), int(match["quarter"]))

    @classmethod
    def containing(cls, at: datetime) -> Period:
        utc = at.astimezone(UTC)
        later = utc + _BST  # never earlier than UK local time
        period = cls(later.year, (later.month - 1) // 3 + 1)
        return period.previous() if utc < period.start else period

    @property
    def start(self) -> datetime:
        midnight = datetime(self.year, 3 * self.quarter - 2, 1, tzinfo=UTC)
        return midnight if self.quarter == 1 else midnight - _BST

    @property
    def end(self) -> datetime:
        """First instant after the period (the next period's start)."""
        return self.next().start

    def next(self) -> Period:
        return Period(self.year + 1, 1) if self.quarter == 4 else Period(self.year, self.quarter + 1)

    def previous(self) -> Period:
        return Period(self.year - 1, 4) if self.quarter == 1 else Period(self.year, self.quarter - 1)

    def __str__(self) -> str:
        return f"{self.year}-Q{self.quarter}"


def _last_sunday(year: int, month: int) -> datetime:
    """01:00 UTC on the month's last Sunday: when UK clocks change (March and October)."""
    day = max(d for d in range(25, 32) if datetime(year, month, d).weekday() == 6)
    return datetime(year, month, day, 1, tzinfo=UTC)


def uk_date(at: datetime) -> date:
    """The calendar date in the UK at an instant (BST from the last Sunday of March to the last
    Sunday of October, 01:00 UTC each, the rule since 1996): what a contract's effective_from
    is compared with."""
    utc = at.astimezone(UTC)
    summer = _last_sunday(utc.year, 3) <= utc < _last_sunday(utc.year, 10)
    return (utc + _BST if summer else utc).date()
