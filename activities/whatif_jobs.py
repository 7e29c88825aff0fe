"""The console's what-if jobs in the event store database, so an API restart (a deploy) forgets
none: the `Keeper` of pathways.simulation.background. A job is saved at each change of state
(started, finished, failed, cancelled, interrupted), with its comparison once finished; the
`keep` newest are kept (running ones are never dropped). The table is created by `pathways
setup` (schema 9) and again on first use (`migrate`, idempotent, under the write lock).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from activities.store import EventStore
from activities.whatif_tables import whatif_jobs
from pathways.simulation.background import Job, JobState
from pathways.simulation.metrics import Estimate
from pathways.simulation.runner import Column, Comparison

__all__ = ["WhatifJobStore", "whatif_jobs"]

KEEP = 20
"""Jobs kept, as many as the console's `Jobs` keeps in memory."""


class WhatifJobStore:
    """What-if jobs on the event store's engine and write lock."""

    def __init__(self, store: EventStore, keep: int = KEEP) -> None:
        self.store = store
        self.keep = keep

    def migrate(self) -> None:
        """Create the table if it is missing (idempotent; safe when processes start together)."""
        self.store.create_tables([whatif_jobs])

    def save(self, job: Job) -> None:
        """Write the job as it is now (one row per job), then drop all but the newest `keep`."""
        row = _row(job)
        with self.store.write() as conn:
            changed = conn.execute(
                update(whatif_jobs).where(whatif_jobs.c.id == job.id).values(row))
            if not changed.rowcount:
                conn.execute(insert(whatif_jobs).values(id=job.id, **row))
            _prune(conn, self.keep)

    def recent(self, limit: int) -> list[Job]:
        """The newest `limit` jobs, newest first."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(whatif_jobs).order_by(
                whatif_jobs.c.started_at.desc(), whatif_jobs.c.id).limit(limit)).mappings()
            return [_job(row) for row in rows]

    def interrupt_running(self, now: datetime) -> int:
        """Jobs still saved as running belonged to an API that stopped without a word (killed):
        their processes ended with it. Called as an API starts; returns how many."""
        with self.store.write() as conn:
            done = conn.execute(
                update(whatif_jobs).where(whatif_jobs.c.state == JobState.RUNNING.value)
                .values(state=JobState.INTERRUPTED.value, ended_at=_instant(now)))
            return done.rowcount or 0


def _prune(conn: Connection, keep: int) -> None:
    c = whatif_jobs.c
    newest = select(c.id).order_by(c.started_at.desc(), c.id).limit(keep).subquery()
    conn.execute(delete(whatif_jobs).where(
        c.state != JobState.RUNNING.value, c.id.not_in(select(newest.c.id))))


def _row(job: Job) -> dict[str, Any]:
    return {
        "scenario": job.scenario, "description": job.description, "variants": job.variants,
        "replications": job.replications, "seed": job.seed, "state": job.state.value,
        "done": job.done, "total": job.total, "problem": job.problem,
        "started_at": _instant(job.started_at),
        "ended_at": None if job.ended_at is None else _instant(job.ended_at),
        "comparison": None if job.comparison is None else _comparison(job.comparison),
    }


def _job(row: RowMapping) -> Job:
    return Job(row["id"], row["scenario"], row["description"], list(row["variants"]),
               row["replications"], row["seed"], datetime.fromisoformat(row["started_at"]),
               done=row["done"], total=row["total"], state=JobState(row["state"]),
               comparison=None if row["comparison"] is None else _read(row["comparison"]),
               problem=row["problem"],
               ended_at=None if row["ended_at"] is None else datetime.fromisoformat(
                   row["ended_at"]))


def _instant(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("a naive datetime: its instant is unknown")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


# --- the comparison as JSON: pairs in order, NaN as null (JSONB has neither order nor NaN) ---
def _comparison(answer: Comparison) -> dict[str, Any]:
    return {
        "scenario": answer.scenario, "replications": answer.replications, "seed": answer.seed,
        "targets": list(answer.targets.items()),
        "columns": [
            {"name": c.name, "description": c.description,
             "estimates": _estimates(c.estimates), "differences": _estimates(c.differences),
             "series": [[k, [_number(x) for x in v]] for k, v in c.series.items()]}
            for c in answer.columns
        ],
    }


def _read(data: dict[str, Any]) -> Comparison:
    return Comparison(
        data["scenario"], data["replications"], data["seed"],
        [Column(c["name"], c["description"], _read_estimates(c["estimates"]),
                _read_estimates(c["differences"]),
                {k: [_float(x) for x in v] for k, v in c["series"]})
         for c in data["columns"]],
        {k: v for k, v in data["targets"]},
    )


def _estimates(estimates: dict[str, Estimate]) -> list[list[Any]]:
    return [[k, _number(e.mean), None if e.half_width is None else _number(e.half_width), e.n]
            for k, e in estimates.items()]


def _read_estimates(pairs: list[list[Any]]) -> dict[str, Estimate]:
    return {k: Estimate(_float(mean), None if half is None else _float(half), n)
            for k, mean, half, n in pairs}


def _number(x: float) -> float | str:
    """JSON has no NaN or infinity (PostgreSQL refuses them): those as text."""
    return x if math.isfinite(x) else str(x)


def _float(x: float | int | str | None) -> float:
    return math.nan if x is None else float(x)
