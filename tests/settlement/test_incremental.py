"""Incremental posting on real databases (SQLite file and PostgreSQL): a ledger posted write by
write from the replay kept at the stored watermark equals the whole log replayed from the start,
and the whole-log replay runs only when it must (first use, another writer, a late write)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.ledger import LedgerStore, adjustments
from activities.store import EventStore
from pathways.events import PathwayEvent
from pathways.settlement import Outcome, Period
from tests.settlement.support import CONTRACTS, DAY, HOUR, MINUTE, T0, Scenario, record


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pathways.db'}"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture
def store(url: str) -> Iterator[EventStore]:
    store = EventStore(url)
    store.migrate()
    yield store
    store.close()


def _scenarios() -> list[Scenario]:
    late = Scenario("pw-late", start=T0 + 2 * DAY)
    late.accept("urgent-response", T0 + 2 * DAY + 5 * MINUTE)
    late.refused("urgent-response", T0 + 2 * DAY + 20 * MINUTE)
    late.tick(T0 + 2 * DAY + 3 * HOUR)
    return [Scenario(f"pw-{n}", start=T0 + n * 7 * HOUR).simple() for n in range(4)] + [late]


def _writes(*scenarios: Scenario) -> list[tuple[Scenario, list[PathwayEvent]]]:
    ordered = sorted(((b[0].at, s.run.state.pathway_id, i, s, b) for s in scenarios
                      for i, b in enumerate(s.batches)), key=lambda w: w[:3])
    return [(s, b) for _, _, _, s, b in ordered]


def test_posted_write_by_write_equals_the_whole_replay(store: EventStore) -> None:
    ledger = LedgerStore(store, CONTRACTS)
    ledger.migrate()
    scenarios = _scenarios()
    for scenario, batch in _writes(*scenarios):
        record(store, scenario, batch)
        ledger.post(batch[-1].at)
    ledger.record_outcome("pw-1", Outcome.VERY_POOR, "coordinator:test", T0 + 5 * DAY)
    ledger.post(T0 + 30 * DAY)  # outcome deadlines pass: defaults booked
    q4 = Period.parse("2026-Q4")
    ledger.close(q4, q4.end + DAY, "coordinator:test")
    assert ledger.full_replays == 1  # the first posting only
    stored = ledger.entries()
    assert stored == ledger.rebuild(q4.end + DAY)
    assert {e.rule.value for e in stored} >= {"base", "top-up", "withhold", "withhold-release",
                                               "alliance-share"}

    # another process posts (its own replay from the start); this one notices the watermark
    # moved and replays from the start too, rather than booking twice
    other = LedgerStore(store, CONTRACTS)
    more = Scenario("pw-next", start=q4.end + 2 * DAY).simple()
    for batch in more.batches:
        record(store, more, batch)
    other.post(q4.end + 5 * DAY)
    assert ledger.post(q4.end + 6 * DAY) == []
    assert ledger.full_replays == 2
    assert ledger.entries() == ledger.rebuild(q4.end + 6 * DAY)


def test_a_late_write_is_trued_up_then_posting_goes_on_incrementally(store: EventStore) -> None:
    ledger = LedgerStore(store, CONTRACTS)
    ledger.migrate()
    early = Scenario("pw-a").simple()
    later = Scenario("pw-b", start=T0 + 2 * DAY).simple()
    for batch in early.batches[:-1] + later.batches:
        record(store, early if batch in early.batches else later, batch)
    ledger.post(T0 + 5 * DAY)
    record(store, early, early.batches[-1])  # written after a posting that passed its time
    trued = ledger.post(T0 + 6 * DAY)
    assert {(e.pathway_id, e.rule.value) for e in trued} == {
        ("pw-a", "base"), ("pw-a", "top-up"), ("pw-a", "withhold")}
    assert ledger.full_replays == 2
    third = Scenario("pw-c", start=T0 + 7 * DAY).simple()
    for batch in third.batches:
        record(store, third, batch)
        ledger.post(batch[-1].at)
    ledger.post(T0 + 40 * DAY)
    assert ledger.full_replays == 2  # back on top of the watermark
    stored = ledger.entries()
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert len({e.entry_id for e in stored}) == len(stored)
    replayed = ledger.rebuild(T0 + 40 * DAY)
    assert adjustments(stored, replayed, T0 + 40 * DAY, set()) == []  # every total matches
