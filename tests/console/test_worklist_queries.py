"""The worklist's read queries on both event store databases (SQLite file and PostgreSQL): the
urgency order, queues, counts, the escalation fold, names and accept-by from rendered Tasks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.store import EventStore
from api.console import worklist
from bench.console_worklist import fill

COUNT = 40


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'pathways.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    events = EventStore(url)
    events.migrate()
    fill(events, COUNT)
    yield events
    events.close()


def test_urgency_order_queues_and_counts(store: EventStore) -> None:
    escalated = worklist.escalated(store)
    assert sorted(escalated) == [f"pw-{i:016x}" for i in range(0, COUNT, 10)]
    assert escalated == {
        item.pathway_id: 1 for item in worklist.escalation_items(store)
    }  # the same fold as the inbox's
    rows, total = worklist.query(store, worklist.View(), escalated)
    assert total == COUNT and len(rows) == worklist.PAGE_SIZE
    states = [r.sla_state for r in rows]
    assert states[: states.count("breached")] == ["breached"] * states.count("breached")
    breached = [r for r in rows if r.sla_state == "breached"]
    assert [r.next_due for r in breached] == sorted(r.next_due for r in breached)  # type: ignore[type-var]
    counts = worklist.counts(store, escalated)
    assert (counts.open, counts.breached, counts.at_risk, counts.escalations) == (40, 4, 8, 4)
    for queue, expected in (("breached", 4), ("at-risk", 8), ("escalated", 4), ("finished", 0)):
        assert worklist.query(store, worklist.View(queue=queue), escalated)[1] == expected, queue
    _, found = worklist.query(store, worklist.View(q="REVIEW"), escalated)
    assert 0 < found < COUNT
    _, by_provider = worklist.query(store, worklist.View(provider="gp-north"), escalated)
    assert by_provider == COUNT // 4
    last = worklist.View(page=2)
    assert len(worklist.query(store, last, escalated)[0]) == COUNT - worklist.PAGE_SIZE


def test_names_accept_by_and_the_live_feed(store: EventStore) -> None:
    ids = [f"pw-{i:016x}" for i in range(3)]
    facts = worklist.task_facts(store, ids)
    assert [facts[i][0] for i in ids] == ["Patient 0", "Patient 1", "Patient 2"]
    assert all(isinstance(facts[i][1], datetime) for i in ids)
    since = datetime.now(UTC) - timedelta(days=30)
    assert len(worklist.changed_since(store, since)) == COUNT
    assert worklist.changed_since(store, datetime.now(UTC) + timedelta(minutes=1)) == []
    options = worklist.options(store)
    assert "hip-replacement-d2a" in options["definition"] and "gp-north" in options["provider"]
