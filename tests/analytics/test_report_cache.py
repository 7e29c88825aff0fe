"""One report cache (activities.analytics.CACHE), used by /api/analytics and the console alike:
an uncached report over real HTTP counts the event log once, a past period's report is served
while no event arrives, a period ending now is rebuilt after the cache's maximum age (an
injected clock, no 30 s sleep), and distinct parameters never grow the cache past its size.

What the database is asked is read from SQLAlchemy's own statement events on the real store
(SQLite and PostgreSQL), not from a stand-in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from temporalio.testing import WorkflowEnvironment

from activities.analytics import CACHE, ReportCache, flow_report
from activities.flow_summary import refresh
from activities.store import EventStore
from api.tokens import TokenStore
from pathways.settings import Settings
from tests.analytics.eventlog import DEFINITION, NOW, SINCE, UNTIL, write_log
from tests.analytics.test_flow_summary import complete_p2_follow_up
from tests.api.conftest import free_port, serve_in_thread

EVENT_COUNT = re.compile(r"count\(\*\).*\bFROM events\s*$", re.I | re.S)
"""The flow summary's refresh: is every event of the log folded?"""
BUILD = re.compile(r"\bFROM flow_summary\b", re.I)
"""A report being built (a served one never reads the summary)."""


class Statements:
    """The SQL statements run on one database while counting."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def counts(self) -> int:
        return sum(1 for s in self.seen if EVENT_COUNT.search(s))

    def builds(self) -> bool:
        return any(BUILD.search(s) for s in self.seen)


@contextmanager
def statements(database: str) -> Iterator[Statements]:
    """Every statement any engine of this process runs on `database` (the API's own store
    included: it runs in a thread of the test process)."""
    found = Statements()

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if conn.engine.url.database == database:
            found.seen.append(statement)

    event.listen(Engine, "before_cursor_execute", note)
    try:
        yield found
    finally:
        event.remove(Engine, "before_cursor_execute", note)


# --- over real HTTP ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(settings: Settings, dev_env: WorkflowEnvironment,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """The API on its own SQLite store holding the hand-worked log: (base, token, store URL)."""
    directory: Path = tmp_path_factory.mktemp("report-cache")
    mine = settings.model_copy(update={
        "api_port": free_port(), "event_store_url": f"sqlite:///{directory / 'events.db'}"})
    store = EventStore(mine.event_store)
    store.migrate()
    write_log(store)
    refresh(store)  # folded, as the worker's catch-up leaves it: a request only checks
    tokens = TokenStore(mine.event_store)
    tokens.migrate()
    coordinator = tokens.issue_coordinator("analyst")
    server = serve_in_thread(mine)
    base = next(server)
    yield base, coordinator, mine.event_store
    server.close()
    store.close()


def report(served: tuple[str, str, str], **params: str) -> dict[str, Any]:
    answer = httpx.get(f"{served[0]}/api/analytics/report", params=params, timeout=30,
                       headers={"Authorization": f"Bearer {served[1]}"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def database(served: tuple[str, str, str]) -> str:
    return served[2].removeprefix("sqlite:///")


def test_an_uncached_report_counts_the_event_log_once(served: tuple[str, str, str]) -> None:
    """The API's report is the engine's cached report: one refresh per request, not one in the
    API and another in the report."""
    params = {"definition": DEFINITION, "since": "2026-01-04", "until": "2026-01-19"}
    with statements(database(served)) as first:
        body = report(served, **params)
    assert body["overall"]["completed"] == 3
    assert first.builds() and first.counts() == 1
    with statements(database(served)) as again:
        assert report(served, **params)["overall"] == body["overall"]
    assert not again.builds() and again.counts() == 1  # served: only the refresh's check


def test_a_report_ending_now_is_rebuilt_after_the_max_age(
        served: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The console asks for the same report several times per page: a period ending now is
    served as built (its generated_at says when) for the cache's maximum age, then rebuilt."""
    assert CACHE.max_age == timedelta(seconds=30)
    shift = [timedelta(0)]
    monkeypatch.setattr(CACHE, "clock", lambda: datetime.now(UTC) + shift[0])
    params = {"definition": DEFINITION, "since": "2026-01-03"}  # until: now
    first = report(served, **params)
    shift[0] = CACHE.max_age - timedelta(seconds=5)
    with statements(database(served)) as kept:
        assert report(served, **params) == first
    assert not kept.builds() and kept.counts() == 1
    shift[0] = CACHE.max_age
    with statements(database(served)) as later:
        rebuilt = report(served, **params)
    assert later.builds() and later.counts() == 1
    assert rebuilt["generated_at"] > first["generated_at"]
    assert rebuilt["overall"]["completed"] == first["overall"]["completed"]  # no new event


def test_a_past_period_is_served_past_the_max_age_until_an_event_arrives(
        served: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"definition": DEFINITION, "since": "2026-01-02", "until": "2026-01-19"}
    shift = [timedelta(0)]
    monkeypatch.setattr(CACHE, "clock", lambda: datetime.now(UTC) + shift[0])
    first = report(served, **params)
    shift[0] = timedelta(days=1)
    with statements(database(served)) as kept:
        again = report(served, **params)
    assert not kept.builds()
    assert again["generated_at"] > first["generated_at"]  # a past period's report is current
    assert {**again, "generated_at": None} == {**first, "generated_at": None}
    ending_now = report(served, definition=DEFINITION, since="2026-01-01")
    writer = EventStore(served[2])
    complete_p2_follow_up(writer)  # the log moves on: neither report is served again
    writer.close()
    with statements(database(served)) as moved:
        moved_on = report(served, **params)
    assert moved_on["overall"]["completed"] == first["overall"]["completed"] + 1
    assert moved.builds() and moved.counts() == 2  # the check, and the fold's own count
    later = report(served, definition=DEFINITION, since="2026-01-01")
    assert later["generated_at"] > ending_now["generated_at"]
    assert later["overall"]["completed"] == ending_now["overall"]["completed"] + 1


# --- on the store, SQLite and PostgreSQL ---------------------------------------------------------


def test_distinct_parameters_never_grow_the_cache_past_its_size(store: EventStore) -> None:
    cache = ReportCache(size=3)
    days = [SINCE + timedelta(days=d) for d in range(5)]
    for since in days:
        flow_report(store, DEFINITION, since=since, until=UNTIL, now=NOW, cache=cache)
    assert len(cache) == 3
    name = store.engine.url.database or ""
    with statements(name) as newest:
        flow_report(store, DEFINITION, since=days[-1], until=UNTIL, now=NOW, cache=cache)
    assert not newest.builds() and newest.counts() == 1
    with statements(name) as oldest:  # the least recently used went first
        flow_report(store, DEFINITION, since=days[0], until=UNTIL, now=NOW, cache=cache)
    assert oldest.builds()
    assert len(cache) == 3


def test_the_max_age_is_the_caches_own_setting(store: EventStore) -> None:
    """A cache made with another maximum age (none at all here) rebuilds a period ending now
    on every request, and still serves a past one."""
    cache = ReportCache(max_age=timedelta(0))
    name = store.engine.url.database or ""
    flow_report(store, DEFINITION, since=SINCE, cache=cache)
    with statements(name) as now_again:
        flow_report(store, DEFINITION, since=SINCE, cache=cache)
    assert now_again.builds() and now_again.counts() == 1
    flow_report(store, DEFINITION, since=SINCE, until=UNTIL, cache=cache)
    with statements(name) as past_again:
        flow_report(store, DEFINITION, since=SINCE, until=UNTIL, cache=cache)
    assert not past_again.builds()
