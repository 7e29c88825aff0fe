"""The flow summary's tables: each handover's time in each state per provider, folded from
the event log by activities/flow_summary.py. Here, apart from the fold, because the event
store's schema steps (activities/store.py MIGRATIONS) create and reshape them: the store
imports this module, and the fold imports the store.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Float, Index, Integer, MetaData, PrimaryKeyConstraint, String, Table
from sqlalchemy.engine import Connection

TRANSIT, QUEUED, WORKING, BLOCKED = "in_transit", "queued", "working", "blocked"
STATES = (TRANSIT, QUEUED, WORKING, BLOCKED)
COUNTS = ("rejections", "reassigned", "refused", "escalations")

summary_metadata = MetaData()


def folded_columns() -> list[Column[Any]]:
    """The folded columns every summary table shares."""
    return [
        *(Column(name, Float, nullable=False) for name in STATES),
        Column("open_state", String()),
        Column("open_since", Float),
        Column("completed_at", Float),
        Column("ended_at", Float),
        Column("gap", Float),
    ]


flow_rows = Table(
    "flow_handovers", summary_metadata,
    Column("pathway_id", String(), nullable=False),
    Column("handover_id", String(), nullable=False),
    Column("provider_id", String(), nullable=False),
    Column("definition_id", String(), nullable=False),
    Column("final_provider", String(), nullable=False),
    Column("ready", Float, nullable=False),
    Column("handover_ended", Float),
    *folded_columns(),
    *(Column(name, Integer, nullable=False) for name in COUNTS),
    PrimaryKeyConstraint("definition_id", "provider_id", "pathway_id", "handover_id"),
    Index("ix_flow_handovers_pathway", "pathway_id"),
    Index("ix_flow_handovers_report", "definition_id", "provider_id",
          postgresql_include=["ready", "handover_ended", "final_provider", *STATES, "open_state",
                              "open_since", "completed_at", *COUNTS]).ddl_if(
        dialect="postgresql"),
    sqlite_with_rowid=False,
)
"""One row per handover and provider that held it; the handover's definition, current (final)
provider, ready and end time repeated so a report filters without a join. Stored in the order a
report reads it (definition, provider): on SQLite the table is its primary key (WITHOUT ROWID),
so the scorecard's GROUP BY reads one range with no row lookups. PostgreSQL has a covering
index for the same read (index-only), which its planner takes when one definition is a small
part of the table (for most of it, a sequential scan is cheaper and it takes that)."""

BUCKETED = ("lead", "waiting", "worked", "gap")
summary_rows = Table(
    "flow_summary", summary_metadata,
    Column("pathway_id", String(), nullable=False),
    Column("handover_id", String(), nullable=False),
    Column("definition_id", String(), nullable=False),
    Column("step_id", String(), nullable=False),
    Column("provider_id", String(), nullable=False),
    Column("ready", Float, nullable=False),
    Column("due", Float, nullable=False),
    *folded_columns(),
    *(Column(name, Integer, nullable=False) for name in COUNTS),
    Column("lead", Float), Column("waiting", Float), Column("worked", Float),
    Column("late", Integer),
    Column("critical", Integer),
    *(Column(f"{name}_bucket", Integer) for name in BUCKETED),
    *(Index(f"ix_flow_summary_{name}", "definition_id", "step_id", "provider_id",
            f"{name}_bucket", name, "completed_at", "ready", "ended_at", "late")
      for name in BUCKETED),
    Index("ix_flow_summary_pathway", "pathway_id"),
    Index("ix_flow_summary_completed", "definition_id", "completed_at", "lead", "late", "ready",
          "ended_at"),
    Index("ix_flow_summary_ready", "definition_id", "ready", "ended_at"),
    PrimaryKeyConstraint("definition_id", "step_id", "provider_id", "pathway_id", "handover_id"),
    Index("ix_flow_summary_report", "definition_id", "step_id", "provider_id",
          postgresql_include=["ready", "due", *STATES, "open_state", "open_since",
                              "completed_at", "ended_at", "gap", *COUNTS, "lead", "waiting",
                              "worked", "critical"]).ddl_if(dialect="postgresql"),
    sqlite_with_rowid=False,
)
"""One row per handover: the read model's step, current provider, ready and due time, its
folded states and counts summed over providers, and (once completed) its lead, waiting and
working time with their histogram buckets: what a report scans. Stored in the order a report
groups it (definition, step, provider): on SQLite the table is its primary key (WITHOUT ROWID),
so the report's main GROUP BY is one range read with no row lookups (a secondary index would
cost a lookup per row: 0.4 s per 100,000 handovers); PostgreSQL has a covering index. One
covering index per histogram, in GROUP BY order, so a histogram reads an index without
sorting; one by completion time for the weekly (SPC) series, one by ready time for arrivals
and the work in progress at the period's start."""
flow_marks = Table(
    "flow_pathways", summary_metadata,
    Column("pathway_id", String(), primary_key=True),
    Column("last_seq", Integer, nullable=False),
)
"""The newest event seq folded per pathway; pathway '' holds the events folded in all (events
are append-only, so an unchanged count means nothing to fold)."""

def create_summary(conn: Connection) -> None:
    """Schema step (activities/store.py MIGRATIONS, v4): the summary tables, empty; the first
    report folds the existing log."""
    summary_metadata.create_all(conn, checkfirst=True)


def reshape_summary(conn: Connection) -> None:
    """Schema step (v7): the summary tables stored in report order (see `summary_rows`). They
    hold nothing the event log does not, so they are dropped and made again, empty; the
    worker folds the log again at start (`refresh`), in the background."""
    summary_metadata.drop_all(conn, checkfirst=True)
    summary_metadata.create_all(conn, checkfirst=True)
