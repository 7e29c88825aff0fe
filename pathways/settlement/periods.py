"""Settlement periods: calendar quarters in UK time ('2026-Q4' is October to December 2026).

Quarter boundaries are midnight Europe/London (1 April, 1 July and 1 October fall in British
Summer Time, so they are 23:00 UTC the evening before). An entry belongs to the period holding
the instant it was booked at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

UK = ZoneInfo("Europe/London")
_PERIOD = re.compile(r"^(?P<year>\d{4})-Q(?P<quarter>[1-4])$")


@dataclass(frozen=True, order=True)
class Period:
    year: int
    quarter: int

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PERIOD.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a period: expected YYYY-QN, e.g. 2026-Q4")
        return cls(int(match["year"]), int(match["quarter"]))

    @classmethod
    def containing(cls, at: datetime) -> Period:
        local = at.astimezone(UK)
        return cls(local.year, (local.month - 1) // 3 + 1)

    @property
    def start(self) -> datetime:
        return datetime(self.year, 3 * self.quarter - 2, 1, tzinfo=UK).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """First instant after the period (the next period's start)."""
        return self.next().start

    def next(self) -> Period:
        return Period(self.year + 1, 1) if self.quarter == 4 else Period(self.year, self.quarter + 1)

    def __str__(self) -> str:
        return f"{self.year}-Q{self.quarter}"
