"""What-if jobs in the event store database (SQLite and PostgreSQL): a job and its comparison
read back as they were (measure order, NaN estimates and all), at most the 20 newest are kept,
and jobs the store still holds as running when an API starts are interrupted ones."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from activities.store import EventStore
from activities.whatif_jobs import WhatifJobStore, whatif_jobs
from pathways.simulation.background import Job, Jobs, JobState
from pathways.simulation.metrics import Estimate
from pathways.simulation.runner import Column, Comparison

T0 = datetime(2026, 11, 23, 9, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EventStore:
    url = (f"sqlite:///{tmp_path}/kept.db" if request.param == "sqlite"
           else request.getfixturevalue("postgres_database"))
    events = EventStore(url)
    assert events.migrate() >= 9
    return events


def _comparison() -> Comparison:
    """Keys out of alphabetical order (the page lists steps and standards in this order)."""
    estimates = {"step|urgent-response|handovers": Estimate(40.5, 2.25, 3),
                 "step|assess|handovers": Estimate(12.0, None, 1),
                 "standard|UCR 2-hour response|attainment_pct": Estimate(math.nan, None, 0)}
    changed = {k: Estimate(e.mean + 1.0 / 3, e.half_width, e.n) for k, e in estimates.items()}
    return Comparison("ucr-small", 2, 1, [
        Column("baseline", "as today", estimates, {}, {"pathways|all|open": [1.5, math.nan]}),
        Column("add-team", "a second team", changed,
               {"step|urgent-response|handovers": Estimate(0.1 + 0.2, 0.05, 2)},
               {"pathways|all|open": [0.25, 3.0]}),
    ], {"UCR 2-hour response": 70.0, "A first": 95.5})


def _job(n: int, state: JobState = JobState.FINISHED) -> Job:
    return Job(f"job-{n:02d}", "ucr-small", "Two weeks", ["baseline", "add-team"], 2, 1,
               T0 + timedelta(minutes=n), done=4, total=4, state=state,
               comparison=_comparison() if state is JobState.FINISHED else None,
               ended_at=None if state is JobState.RUNNING else T0 + timedelta(minutes=n, seconds=9))


def test_a_job_and_its_comparison_read_back_as_they_were(store: EventStore) -> None:
    kept = WhatifJobStore(store)
    kept.migrate()  # again: idempotent
    job = _job(1)
    kept.save(job)
    kept.save(job)  # saved twice (each change of state): one row
    [back] = kept.recent(20)
    assert repr(back) == repr(job)  # repr: NaN != NaN, but prints the same
    assert list(back.comparison.columns[0].estimates) == list(job.comparison.columns[0].estimates)  # type: ignore[union-attr]
    failed = _job(2, JobState.FAILED)
    failed.problem = "the simulation stopped: MemoryError"
    kept.save(failed)
    assert [j.id for j in kept.recent(20)] == ["job-02", "job-01"]
    assert kept.recent(20)[0].problem == failed.problem


def test_only_the_newest_are_kept_and_running_ones_are_interrupted_at_start(
    store: EventStore,
) -> None:
    kept = WhatifJobStore(store, keep=20)
    kept.save(_job(0, JobState.RUNNING))  # the oldest, but running: never dropped while it runs
    for n in range(1, 26):
        kept.save(_job(n))
    assert _count(store) == 21
    assert [j.id for j in kept.recent(20)] == [f"job-{n:02d}" for n in range(25, 5, -1)]
    kept.save(_job(30, JobState.RUNNING))
    # The API stopped without a word (killed): the next one finds both still "running".
    later = T0 + timedelta(hours=2)
    assert kept.interrupt_running(later) == 2
    assert _count(store) == 21  # job-00 interrupted is history now: dropped at the next save
    jobs = Jobs(lambda: later, keeper=kept)
    shown = jobs.recent()
    assert len(shown) == 20 and shown[0].id == "job-30"
    assert shown[0].state is JobState.INTERRUPTED and not shown[0].running
    assert shown[0].ended_at == later
    assert jobs.get("job-25") is not None and jobs.get("job-25").comparison is not None  # type: ignore[union-attr]
    kept.save(_job(31))
    assert _count(store) == 20 and "job-00" not in [j.id for j in kept.recent(30)]
    assert "whatif_jobs" in inspect(store.engine).get_table_names()


def _count(store: EventStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(whatif_jobs)).scalar_one())
