"""The worked event log (tests/analytics/eventlog.py) in a fresh event store, on SQLite and on
PostgreSQL: what the report, flow summary and cache tests read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.store import EventStore
from tests.analytics.eventlog import write_log


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    events = EventStore(url)
    events.migrate()
    write_log(events)
    yield events
    events.close()
