"""The stored ledger on real databases (SQLite file and PostgreSQL): posted as an engine run is
written, it equals the ledger rebuilt from the event log; closed periods are never edited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from activities.ledger import LedgerRefused, LedgerStore, adjustments
from activities.store import EventStore
from pathways.settlement import Outcome, Period
from tests.settlement.support import (
    CONTRACTS,
    DAY,
    HOUR,
    MINUTE,
    T0,
    Scenario,
    gp_output,
    record,
    response_output,
)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'pathways.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    store = EventStore(url)
    store.migrate()
    ledger = LedgerStore(store, CONTRACTS)
    assert ledger.migrate() == 2
    assert ledger.migrate() == 2  # idempotent
    yield ledger
    store.close()


def _run_and_post(ledger: LedgerStore, *scenarios: Scenario) -> None:
    """Write each engine step's events in time order as the workflows would, posting the ledger
    after each write."""
    writes = sorted(((b[0].at, s.run.state.pathway_id, i, s, b) for s in scenarios
                     for i, b in enumerate(s.batches)), key=lambda w: w[:3])
    for _, _, _, scenario, batch in writes:
        record(ledger.store, scenario, batch)
        ledger.post(batch[-1].at)


def test_ledger_posted_during_a_run_equals_the_rebuilt_one(ledger: LedgerStore) -> None:
    one = Scenario("pw-1").simple()
    two = Scenario("pw-2", start=T0 + DAY)
    two.accept("urgent-response", T0 + DAY + 5 * MINUTE)
    two.refused("urgent-response", T0 + DAY + 30 * MINUTE)
    done = T0 + DAY + 3 * HOUR
    two.complete("urgent-response", done, response_output(done))
    two.accept("gp-follow-up", done + HOUR)
    two.complete("gp-follow-up", done + DAY, gp_output(done + DAY))
    _run_and_post(ledger, one, two)
    ledger.record_outcome("pw-1", Outcome.GOOD, "coordinator:test", T0 + 4 * DAY)
    ledger.post(T0 + 30 * DAY)
    closed = ledger.close(Period.parse("2026-Q4"), Period.parse("2026-Q4").end + DAY,
                          "coordinator:test")
    assert {e.rule.value for e in closed} == {"alliance-share"}
    stored = ledger.entries()
    assert stored == ledger.rebuild(Period.parse("2026-Q4").end + DAY)
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    pw1 = sum(e.amount for e in stored if e.pathway_id == "pw-1")
    pw2 = sum(e.amount for e in stored if e.pathway_id == "pw-2")
    assert (pw1, pw2) == (18000 + 2500 + 3500 + 1000, 18000 - 900 + 3500 + 1000 - 350)
    assert ledger.closed_periods() == {"2026-Q4"}


def test_close_refused_before_the_period_ends_and_twice(ledger: LedgerStore) -> None:
    q4 = Period.parse("2026-Q4")
    with pytest.raises(LedgerRefused, match="not over"):
        ledger.close(q4, q4.end - MINUTE, "coordinator:test")
    ledger.close(q4, q4.end, "coordinator:test")
    with pytest.raises(LedgerRefused, match="already closed"):
        ledger.close(q4, q4.end + DAY, "coordinator:test")
    with pytest.raises(LedgerRefused, match="no pathway"):
        ledger.record_outcome("pw-unknown", Outcome.GOOD, "coordinator:test", q4.end)


def test_event_written_after_the_close_trues_up_the_next_period(ledger: LedgerStore) -> None:
    """The GP's completion happened in Q4 but its store write arrived after Q4 closed: Q4's
    stored lines stay as they were; the base, top-up and withhold land in 2027-Q1 as adjusting
    entries naming 2026-Q4, and so does the change it makes to Q4's alliance share."""
    start = T0 + 80 * DAY  # 24 Dec 2026
    s = Scenario("pw-9", start=start).simple(gp_after=5 * HOUR)
    *early, last = s.batches
    for batch in early:
        record(ledger.store, s, batch)
    q4 = Period.parse("2026-Q4")
    ledger.close(q4, q4.end + DAY, "coordinator:test")
    q4_lines = ledger.entries(period="2026-Q4")
    record(ledger.store, s, last)
    adjusting = ledger.post(q4.end + 2 * DAY)
    assert ledger.entries(period="2026-Q4") == q4_lines
    gp = [(e.rule.value, e.amount, e.period, e.adjusts) for e in adjusting
          if e.provider_id == "elmshire-central-pcn" and e.pathway_id]
    assert gp == [("base", 3500, "2027-Q1", "2026-Q4"), ("top-up", 1000, "2027-Q1", "2026-Q4"),
                  ("withhold", -700, "2027-Q1", "2026-Q4")]
    # the pathway now counts as completed in Q4, so Q4's alliance share is trued up too
    shares = {(e.period, e.adjusts) for e in adjusting if e.rule.value == "alliance-share"}
    assert shares == {("2027-Q1", "2026-Q4")}
    # no longer a line-for-line replay, but every total matches it (what `verify` checks)
    replayed = ledger.rebuild(q4.end + 2 * DAY)
    assert ledger.entries() != replayed
    assert adjustments(ledger.entries(), replayed, q4.end + 2 * DAY, {"2026-Q4"}) == []
    assert ledger.post(q4.end + 3 * DAY) == []  # nothing trued up twice
    with ledger.store.engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one()
    assert count == len(ledger.entries())


def test_event_written_late_into_an_open_period_is_booked_at_its_own_time(
    ledger: LedgerStore
) -> None:
    """A store write that arrives after a later posting, while its quarter is still open: the
    stored lines are kept, and the missing ones are booked in that quarter at the event's time."""
    early = Scenario("pw-a").simple()
    later = Scenario("pw-b", start=T0 + 2 * DAY).simple()
    for batch in early.batches[:-1]:
        record(ledger.store, early, batch)
    for batch in later.batches:
        record(ledger.store, later, batch)
    ledger.post(T0 + 5 * DAY)
    kept = ledger.entries()
    record(ledger.store, early, early.batches[-1])  # the GP's completion, written late
    booked = ledger.post(T0 + 6 * DAY)
    assert ledger.entries()[: len(kept)] == kept
    completion = early.batches[-1][0].at
    assert {(e.pathway_id, e.rule.value, e.amount, e.period, e.adjusts, e.at) for e in booked} == {
        ("pw-a", "base", 3500, "2026-Q4", None, completion),
        ("pw-a", "top-up", 1000, "2026-Q4", None, completion),
        ("pw-a", "withhold", -700, "2026-Q4", None, completion),
    }
