"""UK quarters: boundaries at midnight UK time, checked against the time-zone database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathways.settlement import Period
from pathways.settlement.periods import uk_date

UK = ZoneInfo("Europe/London")


def test_quarter_boundaries() -> None:
    assert Period.parse("2026-Q4").start == datetime(2026, 9, 30, 23, tzinfo=UTC)
    assert Period.parse("2026-Q4").end == datetime(2027, 1, 1, tzinfo=UTC)
    assert Period.containing(datetime(2026, 9, 30, 23, 30, tzinfo=UTC)) == Period(2026, 4)
    assert Period.containing(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == Period(2026, 4)
    assert str(Period.parse(" 2027-Q1 ").previous()) == "2026-Q4"
    with pytest.raises(ValueError, match="not a period"):
        Period.parse("2026-Q5")
    with pytest.raises(ValueError, match="not a period"):
        Period.parse("0000-Q1")


@settings(max_examples=300)
@given(st.datetimes(min_value=datetime(1997, 1, 1), max_value=datetime(2998, 1, 1)))
def test_same_quarter_as_uk_local_time(naive: datetime) -> None:
    at = naive.replace(tzinfo=UTC)
    local = at.astimezone(UK)
    assert Period.containing(at) == Period(local.year, (local.month - 1) // 3 + 1)
    period = Period.containing(at)
    assert period.start <= at < period.end
    assert period.start.astimezone(UK).replace(tzinfo=None) == datetime(
        period.year, 3 * period.quarter - 2, 1)
    assert period.end - period.start > timedelta(days=89)
    assert uk_date(at) == local.date()
