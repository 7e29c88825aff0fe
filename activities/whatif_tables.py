"""The what-if jobs table (the console's simulations, kept across API restarts). Here, apart
from its store (activities/whatif_jobs.py), because the event store's schema steps
(activities/store.py MIGRATIONS, version 9) create it: the store imports this module, and the
jobs' store imports the event store.

Nothing here is about a patient: a job is a scenario's name and description, the variants'
names, replications and seed, its state, and the simulated pathways' aggregate measures.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, MetaData, String, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

whatif_metadata = MetaData()

whatif_jobs = Table(
    "whatif_jobs", whatif_metadata,
    Column("id", String(32), primary_key=True),
    Column("scenario", String(), nullable=False),
    Column("description", String(), nullable=False),
    Column("variants", JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    Column("replications", Integer, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("done", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("problem", String(), nullable=True),
    Column("started_at", String(40), nullable=False),
    Column("ended_at", String(40), nullable=True),
    Column("comparison", JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
    Index("ix_whatif_jobs_started", "started_at"),
)
"""One row per job. Times are ISO 8601 UTC text (one format: sorts in time order, reads back
to the microsecond); the comparison is JSON in lists, not objects (PostgreSQL's JSONB reorders
object keys, and the page lists steps and standards in the simulator's order)."""


def create_whatif_jobs(conn: Connection) -> None:
    """Create the table if missing (schema step 9, and the store's own `migrate`)."""
    whatif_metadata.create_all(conn, tables=[whatif_jobs], checkfirst=True)
