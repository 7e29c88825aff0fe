"""The event store: the append-only handover event log plus the read models the API queries.

The workflow is the source of truth; this store is what it tells the outside world, written by a
local activity that Temporal may retry. Every write is therefore idempotent (events keyed by
event_id) and monotonic (read-model rows never go back to an older version), so a retried or
reordered batch changes nothing. SQLAlchemy Core keeps one code path for SQLite and PostgreSQL.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    and_,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    inspect,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.sql import Select

from activities.flow_tables import create_summary, reshape_summary
from activities.whatif_tables import create_whatif_jobs
from pathways.events import (
    EventKind,
    HandoverRow,
    PathwayEvent,
    PathwayRow,
    RecordBatch,
    TaskVersion,
)
from pathways.fhir import ACCEPT_BY_EXTENSION


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes in, UTC datetimes out, on every dialect.

    SQLite has no timezone type, so instants are stored as naive UTC text (which also sorts in
    time order); PostgreSQL stores timestamptz. Naive datetimes are refused: their instant is
    unknown.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = _utc(value, "datetime")
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json = JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = MetaData()

schema_versions = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UtcDateTime, nullable=False),
)

event_rows = Table(
    "events",
    metadata,
    Column("event_id", String(), primary_key=True),
    Column("pathway_id", String(), nullable=False),
    Column("definition_id", String(), nullable=False),
    Column("definition_version", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("handover_id", String()),
    Column("step_id", String()),
    Column("provider_id", String()),
    Column("actor", String()),
    Column("detail", Json, nullable=False),
    Index("ix_events_pathway_seq", "pathway_id", "seq"),
    Index("ix_events_at", "at"),
    Index("ix_events_kind_pathway", "kind", "pathway_id"),
)

handover_rows = Table(
    "handovers",
    metadata,
    Column("task_id", String(), primary_key=True),
    Column("pathway_id", String(), nullable=False),
    Column("definition_id", String(), nullable=False),
    Column("handover_id", String(), nullable=False),
    Column("step_id", String(), nullable=False),
    Column("occurrence", Integer, nullable=False),
    Column("provider_id", String(), nullable=False),
    Column("status", String(), nullable=False),
    Column("business_status", String(), nullable=False),
    Column("version", Integer, nullable=False),
    Column("ready_at", UtcDateTime, nullable=False),
    Column("complete_by", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("task", Json),
    Column("accept_by", UtcDateTime),
    Index("ix_handovers_provider_updated", "provider_id", "updated_at"),
    Index("ix_handovers_pathway", "pathway_id"),
    Index("ix_handovers_provider_step_updated", "provider_id", "step_id", "updated_at", "task_id"),
    Index("ix_handovers_status_definition", "status", "definition_id", "provider_id"),
)

pathway_rows = Table(
    "pathways",
    metadata,
    Column("pathway_id", String(), primary_key=True),
    Column("definition_id", String(), nullable=False),
    Column("definition_version", Integer, nullable=False),
    Column("lead_provider", String(), nullable=False),
    Column("status", String(), nullable=False),
    Column("sla_state", String(), nullable=False),
    Column("open_steps", Json, nullable=False),
    Column("open_providers", Json, nullable=False),
    Column("open_step_titles", Json, nullable=False),
    Column("patient_key", String()),
    Column("started_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),
    Index("ix_pathways_definition", "definition_id"),
    Index("ix_pathways_status_sla", "status", "sla_state"),
    Index("ix_pathways_sla", "sla_state"),
    Index("ix_pathways_patient_key", "patient_key"),
    Index("ix_pathways_updated", "updated_at"),
)

pathway_open = Table(
    "pathway_open",
    metadata,
    Column("pathway_id", String(), primary_key=True),
    Column("kind", String(), primary_key=True),
    Column("value", String(), primary_key=True),
    Index("ix_pathway_open_kind_value", "kind", "value"),
)
"""What a pathway has open, one row per step, provider and (lower-cased) step title: the
indexed side of the JSON lists on `pathways`, rewritten whenever the pathway row is."""

OPEN_STEP, OPEN_PROVIDER, OPEN_TITLE = "step", "provider", "title"

patient_index = Table(
    "patient_index",
    metadata,
    Column("pathway_id", String(), primary_key=True),
    Column("term", String(), primary_key=True),
    Index("ix_patient_index_term", "term", "pathway_id"),
)
"""The keyed blind index of each pathway's patient (pathways/patient_search.py): HMACs of the
name's tokens and of the NHS number, never the values, so a coordinator finds "smith" or an
NHS number by equality on a hash. Written by the worker, which holds the key."""

task_versions = Table(
    "task_versions",
    metadata,
    Column("task_id", String(), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("task", Json, nullable=False),
)
"""Each handover's FHIR Task as rendered at each version the workflow saw: webhook bodies are
loaded from here by (task_id, version), so the workflow history holds ids only."""

store_writes = Table(
    "store_writes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pathway_id", String(), nullable=False),
    Column("provider_id", String(), nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index("ix_store_writes_provider_recorded", "provider_id", "recorded_at"),
    Index("ix_store_writes_recorded_at", "recorded_at"),
)
"""When each batch was written: one row per provider whose handovers it changes or names,
in the batch's own transaction, stamped by the database's clock. Readers that must see every
change (FHIR Subscription delivery) find a provider's changes by when they were recorded, not by
when they happened, so a batch written late (the worker held it through an event store outage)
is found all the same. Pruned by those readers."""

HANDOVER_COLUMNS = [c for c in handover_rows.columns if c.name not in ("task", "accept_by")]

RUNNING_STATUSES = ["active", "on-hold"]
CLOSED_OUTSIDE = {EventKind.PATHWAY_TERMINATED: "terminated", EventKind.PATHWAY_FAILED: "failed"}
"""Read-model status of a pathway whose workflow Temporal closed before it finished."""

ESCALATION_KINDS = (
    EventKind.ESCALATED,
    EventKind.ESCALATION_ACKNOWLEDGED,
    EventKind.ESCALATION_RESOLVED,
)


def _create_v1(conn: Connection) -> None:
    """The first released schema. Later steps must alter tables, since create_all is checkfirst.

    (On a fresh database it creates today's tables, so later steps check before altering.)
    """
    tables = [event_rows, handover_rows, pathway_rows, pathway_open]
    metadata.create_all(conn, tables=tables, checkfirst=True)


def _index_event_kinds(conn: Connection) -> None:
    """v2: the escalation inbox reads events by kind."""
    index = next(i for i in event_rows.indexes if i.name == "ix_events_kind_pathway")
    index.create(conn, checkfirst=True)


def _add_task_bodies(conn: Connection) -> None:
    """v3: rendered Tasks, per version (webhook bodies) and the latest on the handover row."""
    task_versions.create(conn, checkfirst=True)
    columns = {c["name"] for c in inspect(conn).get_columns(handover_rows.name)}
    if "task" not in columns:
        kind = "JSONB" if conn.dialect.name == "postgresql" else "JSON"
        conn.execute(text(f"ALTER TABLE {handover_rows.name} ADD COLUMN task {kind}"))


def _flow_summary(conn: Connection) -> None:
    """v4: the flow summary tables the analytics report folds events into."""
    create_summary(conn)


def _index_task_codes(conn: Connection) -> None:
    """v5: FHIR Task search by `code` (a provider's handovers of some steps, by last change)."""
    index = next(i for i in handover_rows.indexes if i.name == "ix_handovers_provider_step_updated")
    index.create(conn, checkfirst=True)


RECENT_ON_UPGRADE = timedelta(hours=1)


def _add_store_writes(conn: Connection) -> None:
    """v6: when batches were recorded. What changed in the last hour counts as recorded now,
    so a reader moving from event times to recorded times misses nothing written before."""
    store_writes.create(conn, checkfirst=True)
    since = datetime.now(UTC) - RECENT_ON_UPGRADE
    ev, h = event_rows.c, handover_rows.c
    events = conn.execute(
        select(ev.pathway_id, ev.kind, ev.provider_id, ev.detail).where(
            ev.at >= since, ev.handover_id.is_not(None)
        )
    ).all()
    handovers = conn.execute(
        select(h.pathway_id, h.provider_id).where(h.updated_at >= since)
    ).all()
    named = {(row.pathway_id, row.provider_id) for row in handovers}
    for row in events:
        named |= {(row.pathway_id, p) for p in _providers_named(row.kind, row.provider_id, row.detail)}
    _insert_writes(conn, sorted(named))
def _flow_summary_in_report_order(conn: Connection) -> None:
    """v7: the flow summary tables clustered in the order a report reads them (refolded)."""
    reshape_summary(conn)


def _worklist_search(conn: Connection) -> None:
    """v8: the handover's accept-by time as a column (the worklist's urgency order), filled
    from the rendered Tasks already stored; the patient blind index, empty (the worker fills it
    at start: only it holds the key); open handovers by status and definition (the report's
    work in progress now)."""
    patient_index.create(conn, checkfirst=True)
    open_work = next(i for i in handover_rows.indexes if i.name == "ix_handovers_status_definition")
    open_work.create(conn, checkfirst=True)  # work in progress now, by definition and provider
    columns = {c["name"] for c in inspect(conn).get_columns(handover_rows.name)}
    if "accept_by" not in columns:
        kind = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"
        conn.execute(text(f"ALTER TABLE {handover_rows.name} ADD COLUMN accept_by {kind}"))
    h = handover_rows.c
    waiting = conn.execute(
        select(h.task_id, h.task).where(h.status == "requested", h.task.is_not(None))
    ).all()
    for task_id, task in waiting:
        accept_by = task_accept_by(task)
        if accept_by is not None:
            conn.execute(
                handover_rows.update().where(h.task_id == task_id).values(accept_by=accept_by)
            )


def _whatif_jobs(conn: Connection) -> None:
    """v9: the console's what-if jobs and their answers, kept across API restarts."""
    create_whatif_jobs(conn)


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _create_v1),
    (2, _index_event_kinds),
    (3, _add_task_bodies),
    (4, _flow_summary),
    (5, _index_task_codes),
    (6, _add_store_writes),
    (7, _flow_summary_in_report_order),
    (8, _worklist_search),
    (9, _whatif_jobs),
]
"""Versioned schema steps, applied in order once each; append new steps, never edit old ones."""

_PG_MIGRATION_LOCK = 724_170_001
"""Advisory lock id that serialises concurrent `migrate()` calls on PostgreSQL."""


class EventStore:
    """Event log and read models behind one SQLAlchemy engine (SQLite file or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.engine = _engine(url)
        self._writing = _writer_lock(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def migrate(self) -> int:
        """Bring the schema to the latest version (safe to run on every deploy); return it."""
        with self.write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
            schema_versions.create(conn, checkfirst=True)
            current = _current_version(conn)
            for version, step in MIGRATIONS:
                if version > current:
                    step(conn)
                    applied = {"version": version, "applied_at": datetime.now(UTC)}
                    conn.execute(insert(schema_versions).values(applied))
                    current = version
            return current

    def schema_version(self) -> int:
        """The applied schema version; 0 on an empty database."""
        with self.engine.connect() as conn:
            if not self.engine.dialect.has_table(conn, schema_versions.name):
                return 0
            return _current_version(conn)

    def record(self, batch: RecordBatch, patient_terms: Collection[str] = ()) -> None:
        """Write a batch in one transaction; retrying it, or an older one, changes nothing.
        `patient_terms`: the pathway's patient blind-index hashes (a patient never changes, so
        they are only ever added)."""
        _check_aware(batch)
        with self.write() as conn:
            self._insert_events(conn, batch.events)
            self._insert_tasks(conn, batch.tasks)
            self._upsert_handovers(conn, batch.handovers, batch.tasks)
            if self._upsert_pathway(conn, batch.pathway):
                _rewrite_open(conn, batch.pathway)
            _index_patient(conn, batch.pathway.pathway_id, patient_terms)
            # Last, so its time is as close to the commit as the transaction allows.
            pathway_id = batch.pathway.pathway_id
            _insert_writes(conn, [(pathway_id, p) for p in sorted(_batch_providers(batch))])

    def unindexed_patients(self, limit: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        """Pathways with a rendered Task but no patient index terms (stores from before the
        index), each with one of its Tasks: what the worker indexes at start."""
        h = handover_rows.c
        indexed = select(patient_index.c.pathway_id)
        first = (
            select(h.pathway_id, func.min(h.task_id).label("task_id"))
            .where(h.task.is_not(None), h.pathway_id.not_in(indexed))
            .group_by(h.pathway_id)
            .order_by(h.pathway_id)
            .limit(limit)
            .subquery("first")
        )
        query = select(h.pathway_id, h.task).join(first, first.c.task_id == h.task_id)
        with self.engine.connect() as conn:
            return [(row[0], dict(row[1])) for row in conn.execute(query)]

    def index_patients(self, terms: Mapping[str, Collection[str]]) -> None:
        """Add blind-index terms per pathway (idempotent)."""
        with self.write() as conn:
            for pathway_id, found in terms.items():
                _index_patient(conn, pathway_id, found)

    def search_tasks(
        self,
        provider_id: str,
        statuses: Sequence[str] | None,
        updated_after: datetime | None,
        limit: int,
        offset: int,
        updated: Sequence[tuple[str, datetime]] = (),
    ) -> tuple[list[HandoverRow], int]:
        """A provider's handovers, oldest change first (ties by Task id, so pages never skip or
        repeat a row), and the total matching (Task search). `updated`: (gt|ge|lt|le, instant)
        bounds on the last change, all applied."""
        if updated_after is not None:
            updated = [*updated, ("gt", updated_after)]
        rows, total = self._task_page(provider_id, statuses, updated, limit, offset, False)
        return [HandoverRow.model_validate(row) for row in rows], total

    def search_task_resources(
        self,
        provider_id: str,
        statuses: Sequence[str] | None,
        updated: Sequence[tuple[str, datetime]],
        limit: int,
        offset: int,
        after: tuple[datetime, str] | None = None,
        *,
        steps: Sequence[str] | None = None,
        task_ids: Sequence[str] | None = None,
        newest_first: bool = False,
    ) -> tuple[list[tuple[HandoverRow, dict[str, Any] | None]], int]:
        """As `search_tasks`, each row with its latest rendered Task (None where none was
        recorded): a FHIR search page served from the read model alone. `after` (last change,
        Task id) continues from the previous page's last row, so a page never skips or repeats
        a row even when rows change between pages; `total` counts the whole search. `steps`
        and `task_ids` restrict to those step ids (Task code) and Task ids (_id);
        `newest_first` reverses the order (_sort=-_lastUpdated)."""
        rows, total = self._task_page(
            provider_id, statuses, updated, limit, offset, True, after,
            steps=steps, task_ids=task_ids, newest_first=newest_first,
        )
        found = []
        for row in rows:
            task = row.pop("task", None)
            found.append((HandoverRow.model_validate(row), dict(task) if task else None))
        return found, total

    def _task_page(
        self,
        provider_id: str,
        statuses: Sequence[str] | None,
        updated: Sequence[tuple[str, datetime]],
        limit: int,
        offset: int,
        with_tasks: bool,
        after: tuple[datetime, str] | None = None,
        *,
        steps: Sequence[str] | None = None,
        task_ids: Sequence[str] | None = None,
        newest_first: bool = False,
    ) -> tuple[list[dict[str, Any]], int]:
        _check_page(limit, offset)
        h = handover_rows.c
        where = [h.provider_id == provider_id]
        if statuses is not None:
            where.append(h.status.in_(list(statuses)))
        if steps is not None:
            where.append(h.step_id.in_(list(steps)))
        if task_ids is not None:
            where.append(h.task_id.in_(list(task_ids)))
        for prefix, moment in updated:
            compare = _COMPARISONS[prefix]
            where.append(compare(h.updated_at, _utc(moment, "_lastUpdated")))
        columns = [*HANDOVER_COLUMNS, h.task] if with_tasks else HANDOVER_COLUMNS
        query = select(*columns).where(*where)
        order = (h.updated_at.desc(), h.task_id.desc()) if newest_first else (h.updated_at, h.task_id)
        if after is None:
            return self._page(query, order, limit, offset)
        moment, task_id = _utc(after[0], "after"), after[1]
        beyond = operator.lt if newest_first else operator.gt
        later = or_(
            beyond(h.updated_at, moment), and_(h.updated_at == moment, beyond(h.task_id, task_id))
        )
        counted = select(func.count()).select_from(query.subquery())
        with self.engine.connect() as conn:
            total = conn.execute(counted).scalar_one()
            page = conn.execute(query.where(later).order_by(*order).limit(limit).offset(offset))
            return [dict(row._mapping) for row in page], total

    def get_task_row(self, task_id: str) -> HandoverRow | None:
        with self.engine.connect() as conn:
            query = select(*HANDOVER_COLUMNS).where(handover_rows.c.task_id == task_id)
            row = conn.execute(query).first()
        return None if row is None else HandoverRow.model_validate(dict(row._mapping))

    def task_at(self, task_id: str, version: int) -> dict[str, Any] | None:
        """The Task as rendered at `version`, else at the latest earlier version recorded
        (an engine step that changed a handover twice is rendered once, at its end); None if
        nothing that old is recorded."""
        query = (
            select(task_versions.c.task)
            .where(task_versions.c.task_id == task_id, task_versions.c.version <= version)
            .order_by(task_versions.c.version.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            task = conn.execute(query).scalar()
        return None if task is None else dict(task)

    def task_history(self, task_id: str, limit: int = 1000) -> list[tuple[int, dict[str, Any]]]:
        """(version, Task) of every recorded version of one handover's Task, newest first (at
        most `limit`, by the primary key: no scan): what its FHIR history is served from."""
        query = (
            select(task_versions.c.version, task_versions.c.task)
            .where(task_versions.c.task_id == task_id)
            .order_by(task_versions.c.version.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(row.version, dict(row.task)) for row in conn.execute(query)]

    def latest_task(self, task_id: str) -> dict[str, Any] | None:
        """The handover's Task at its latest recorded version (what FHIR search can serve)."""
        query = select(handover_rows.c.task).where(handover_rows.c.task_id == task_id)
        with self.engine.connect() as conn:
            task = conn.execute(query).scalar()
        return None if task is None else dict(task)

    def list_pathways(
        self,
        definition_id: str | Sequence[str] | None = None,
        sla_state: str | Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
        open_provider: str | None = None,
        open_step: str | None = None,
        breached: bool | None = None,
        step_title_contains: str | None = None,
        patient_key: str | None = None,
        limit: int = 50,
        offset: int = 0,
        sort: str = "updated",
    ) -> tuple[list[PathwayRow], int]:
        """Pathways matching every given filter (a sequence: any of its values), and the total.

        `sort`: "updated" (most recently changed first), "due" (soonest open handover due time
        first), "age" (oldest first) or "sla" (breached, at-risk, on-track); ties by id.
        """
        _check_page(limit, offset)
        c = pathway_rows.c
        where: list[Any] = [
            _one_of(column, value)
            for column, value in (
                (c.definition_id, definition_id),
                (c.sla_state, sla_state),
                (c.status, status),
                (c.patient_key, patient_key),
            )
            if value is not None
        ]
        if breached is not None:
            where.append(c.sla_state == "breached" if breached else c.sla_state != "breached")
        if open_provider is not None:
            where.append(_has_open(OPEN_PROVIDER, pathway_open.c.value == open_provider))
        if open_step is not None:
            where.append(_has_open(OPEN_STEP, pathway_open.c.value == open_step))
        if step_title_contains is not None:
            pattern = f"%{_escape_like(step_title_contains.lower())}%"
            where.append(_has_open(OPEN_TITLE, pathway_open.c.value.like(pattern, escape="\\")))
        query = select(pathway_rows).where(*where)
        rows, total = self._page(query, _pathway_order(sort), limit, offset)
        return [PathwayRow.model_validate(row) for row in rows], total

    def open_times(self, pathway_ids: Sequence[str]) -> dict[str, tuple[datetime, datetime]]:
        """Per pathway with open handovers: the soonest due time and the earliest ready time
        among them (what a coordinator sorts and waits by)."""
        if not pathway_ids:
            return {}
        h = handover_rows.c
        query = (
            select(h.pathway_id, func.min(h.complete_by), func.min(h.ready_at))
            .where(h.pathway_id.in_(list(pathway_ids)), h.status.in_(OPEN_TASK_STATUSES))
            .group_by(h.pathway_id)
        )
        with self.engine.connect() as conn:
            return {
                row[0]: (_aware(row[1]), _aware(row[2])) for row in conn.execute(query)
            }

    def events(self, pathway_id: str) -> list[PathwayEvent]:
        """One pathway's events in the order they happened."""
        query = select(event_rows).where(event_rows.c.pathway_id == pathway_id)
        return self._events(query.order_by(event_rows.c.seq))

    def event_log(self, since: datetime | None = None, limit: int = 10000) -> list[PathwayEvent]:
        """Events at or after `since` in process-mining order: by pathway (case), time, seq."""
        _check_page(limit, 0)
        query = select(event_rows)
        if since is not None:
            query = query.where(event_rows.c.at >= _utc(since, "since"))
        order = (event_rows.c.pathway_id, event_rows.c.at, event_rows.c.seq)
        return self._events(query.order_by(*order).limit(limit))

    def escalation_events(self, pathway_statuses: Sequence[str]) -> list[PathwayEvent]:
        """Escalation records' events (raised, acknowledged, resolved) of the pathways in the
        given statuses, in order: what the escalation inbox is folded from."""
        kinds = [k.value for k in ESCALATION_KINDS]
        running = select(pathway_rows.c.pathway_id).where(
            pathway_rows.c.status.in_(list(pathway_statuses))
        )
        query = select(event_rows).where(
            event_rows.c.kind.in_(kinds), event_rows.c.pathway_id.in_(running)
        )
        return self._events(query.order_by(event_rows.c.pathway_id, event_rows.c.seq))

    def still_open(self, pathway_ids: Sequence[str]) -> list[str]:
        """Those of the pathways the read model still shows as running (active or on hold)."""
        if not pathway_ids:
            return []
        query = select(pathway_rows.c.pathway_id).where(
            pathway_rows.c.pathway_id.in_(list(pathway_ids)),
            pathway_rows.c.status.in_(RUNNING_STATUSES),
        )
        with self.engine.connect() as conn:
            return sorted(conn.execute(query).scalars())

    def record_closed_outside(
        self, pathway_id: str, kind: EventKind, at: datetime, detail: dict[str, Any]
    ) -> bool:
        """Record that Temporal closed a pathway's workflow without the pathway finishing
        (terminated, failed, timed out): an event, the pathway row closed with that status,
        its open handovers no longer listed. Each open handover is cancelled as the engine's own
        cancel would (a `cancelled` event with the reason; the row and its Task `cancelled` with
        a statusReason, at a new version), so the worklist, FHIR search and the flow analytics
        read it as ended, not as still waiting with a provider. Idempotent; False if nothing
        was open."""
        status = CLOSED_OUTSIDE[kind]
        with self.write() as conn:
            row = conn.execute(
                select(pathway_rows).where(pathway_rows.c.pathway_id == pathway_id)
            ).first()
            if row is None or row.status not in RUNNING_STATUSES:
                return False
            seq = (
                conn.execute(
                    select(func.max(event_rows.c.seq)).where(event_rows.c.pathway_id == pathway_id)
                ).scalar()
                or 0
            ) + 1
            cancelled = _close_handovers(conn, row, seq, at, f"pathway {status} in Temporal")
            last = seq + len(cancelled)
            event = PathwayEvent(
                event_id=f"{pathway_id}:{last}",
                pathway_id=pathway_id,
                definition_id=row.definition_id,
                definition_version=row.definition_version,
                seq=last,
                kind=kind,
                at=at,
                actor="ops:temporal",
                detail=detail,
            )
            self._insert_events(conn, [*cancelled, event])
            conn.execute(  # changed now (the live feed's cursor), ended when Temporal closed it
                pathway_rows.update()
                .where(pathway_rows.c.pathway_id == pathway_id)
                .values(status=status, updated_at=max(datetime.now(UTC), at), ended_at=at,
                        open_steps=[], open_providers=[], open_step_titles=[])
            )
            conn.execute(delete(pathway_open).where(pathway_open.c.pathway_id == pathway_id))
            # the cancelled Tasks are changes FHIR Subscriptions must notify, like record()'s
            named = {(pathway_id, e.provider_id) for e in cancelled if e.provider_id is not None}
            _insert_writes(conn, sorted(named))
            return True

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock up front (BEGIN IMMEDIATE). Shared
        by the ledger and the flow summary so every writer queues on the same lock.

        On SQLite the writers of one process queue on a lock in the process first: SQLite's
        own wait for its lock polls with growing sleeps (up to 100 ms), which under a burst of
        concurrent writes made the slowest handovers wait far longer than the lock was held.
        """
        with self._writing, self.engine.connect() as conn:
            conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def create_tables(self, tables: Sequence[Table]) -> None:
        """Create whichever of `tables` are missing, under the write lock (and on PostgreSQL the
        migration lock), so an API and a worker starting together never race on DDL (a
        deferred SQLite transaction that reads the schema then creates a table fails with
        "database is locked" when another process wrote in between)."""
        with self.write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
            for table in tables:
                table.create(conn, checkfirst=True)

    def _page(
        self, query: Select[Any], order: Iterable[Any], limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        counted = select(func.count()).select_from(query.subquery())
        with self.engine.connect() as conn:
            total = conn.execute(counted).scalar_one()
            page = conn.execute(query.order_by(*order).limit(limit).offset(offset))
            return [dict(row._mapping) for row in page], total

    def _events(self, query: Select[Any]) -> list[PathwayEvent]:
        with self.engine.connect() as conn:
            return [PathwayEvent.model_validate(dict(row._mapping)) for row in conn.execute(query)]

    def _insert_events(self, conn: Connection, new: list[PathwayEvent]) -> None:
        if new:
            stmt = _insert(conn, event_rows).on_conflict_do_nothing(index_elements=["event_id"])
            conn.execute(stmt, [_values(e) for e in new])

    def _insert_tasks(self, conn: Connection, tasks: list[TaskVersion]) -> None:
        if tasks:
            stmt = _insert(conn, task_versions).on_conflict_do_nothing(
                index_elements=["task_id", "version"]
            )
            conn.execute(stmt, [_values(t) for t in tasks])

    def _upsert_handovers(
        self, conn: Connection, rows: list[HandoverRow], tasks: list[TaskVersion]
    ) -> None:
        """Newer-wins rows, each with its Task as rendered at the row's version (if sent)."""
        if rows:
            rendered = {(t.task_id, t.version): t.task for t in tasks}
            stmt = _newer_wins(conn, handover_rows, "task_id", "version")
            values = []
            for row in rows:
                task = rendered.get((row.task_id, row.version))
                accept_by = task_accept_by(task) if row.status == "requested" else None
                values.append({**_values(row), "task": task, "accept_by": accept_by})
            conn.execute(stmt, values)

    def _upsert_pathway(self, conn: Connection, row: PathwayRow) -> bool:
        """Upsert the pathway row; True if it was written (not older than the stored one)."""
        stmt = _newer_wins(conn, pathway_rows, "pathway_id", "updated_at")
        written = conn.execute(stmt.returning(pathway_rows.c.pathway_id), _values(row))
        return written.first() is not None


def _batch_providers(batch: RecordBatch) -> set[str]:
    """The providers whose handovers a batch changes or names (see `_providers_named`)."""
    named = {row.provider_id for row in batch.handovers}
    for e in batch.events:
        if e.handover_id is not None:
            named |= _providers_named(e.kind, e.provider_id, e.detail)
    return named


def _providers_named(kind: str, provider_id: str | None, detail: Any) -> set[str]:
    """A handover event's provider, and for a reassignment the provider it was taken from."""
    named = set() if provider_id is None else {provider_id}
    if kind == EventKind.REASSIGNED and isinstance(detail, dict):
        if isinstance(taken_from := detail.get("from"), str):
            named.add(taken_from)
    return named


def _insert_writes(conn: Connection, named: Sequence[tuple[str, str]]) -> None:
    """Stamp (pathway, provider) pairs as recorded now, by the database's clock."""
    if named:
        stamped = insert(store_writes).values(recorded_at=database_now(conn))
        conn.execute(stamped, [{"pathway_id": w, "provider_id": p} for w, p in named])


def database_now(conn: Connection) -> Any:
    """The database server's clock as a SQL expression, in the form `UtcDateTime` stores
    (SQLite: naive UTC text with microseconds), so every writer stamps by one clock."""
    if conn.dialect.name == "postgresql":
        return literal_column("clock_timestamp()", UtcDateTime)
    return literal_column("strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'", UtcDateTime)


def _engine(url: str) -> Engine:
    """An engine with sensible pooling; SQLite gets WAL, a busy timeout and real transactions."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported event store database {backend!r}: use SQLite or PostgreSQL")
    if backend == "postgresql":
        # A server that does not answer must fail a write attempt, not hang it.
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 5})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


_SQLITE_WRITERS: dict[str, threading.RLock] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()


def _writer_lock(engine: Engine) -> AbstractContextManager[Any]:
    """The process's lock for writes to this SQLite file (one per file, shared by every store
    on it); none for PostgreSQL, whose row locks queue writers without polling."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    database = engine.url.database or ":memory:"
    key = database if database == ":memory:" else str(Path(database).resolve())
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(key, threading.RLock())


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, issue BEGIN, so DDL and reads are transactional too.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "busy_timeout=5000", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def _newer_wins(conn: Connection, table: Table, key: str, order_column: str) -> Any:
    """Upsert that replaces a stored row only when the incoming one is not older."""
    stmt = _insert(conn, table)
    return stmt.on_conflict_do_update(
        index_elements=[key],
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name != key},
        where=table.c[order_column] <= stmt.excluded[order_column],
    )


def _rewrite_open(conn: Connection, row: PathwayRow) -> None:
    conn.execute(delete(pathway_open).where(pathway_open.c.pathway_id == row.pathway_id))
    values = (
        {(OPEN_STEP, v) for v in row.open_steps}
        | {(OPEN_PROVIDER, v) for v in row.open_providers}
        | {(OPEN_TITLE, v.lower()) for v in row.open_step_titles}
    )
    if values:
        conn.execute(
            insert(pathway_open),
            [{"pathway_id": row.pathway_id, "kind": k, "value": v} for k, v in sorted(values)],
        )


def _close_handovers(conn: Connection, pathway: Any, seq: int, at: datetime,
                     reason: str) -> list[PathwayEvent]:
    """Cancel a closed pathway's open handovers in the read model (see record_closed_outside);
    return their events, numbered from `seq`. The rows' last change is the time of this write
    (not the workflow's close), so a provider polling `_lastUpdated=gt` after the close still
    sees it."""
    h = handover_rows.c
    rows = conn.execute(
        select(handover_rows)
        .where(h.pathway_id == pathway.pathway_id, h.status.in_(OPEN_TASK_STATUSES))
        .order_by(h.task_id)
    ).all()
    written = max(datetime.now(UTC), at)
    events = []
    for number, row in enumerate(rows, start=seq):
        version = row.version + 1
        task = _cancelled_task(row.task, version, written, reason)
        conn.execute(
            handover_rows.update()
            .where(h.task_id == row.task_id)
            .values(status="cancelled", version=version, updated_at=written, task=task,
                    accept_by=None)
        )
        if task is not None:
            stmt = _insert(conn, task_versions).on_conflict_do_nothing(
                index_elements=["task_id", "version"]
            )
            conn.execute(stmt, {"task_id": row.task_id, "version": version, "task": task})
        events.append(PathwayEvent(
            event_id=f"{pathway.pathway_id}:{number}", pathway_id=pathway.pathway_id,
            definition_id=pathway.definition_id, definition_version=pathway.definition_version,
            seq=number, kind=EventKind.CANCELLED, at=at, handover_id=row.handover_id,
            step_id=row.step_id, provider_id=row.provider_id, actor="ops:temporal",
            detail={"reason": reason},
        ))
    return events


def _cancelled_task(task: dict[str, Any] | None, version: int, at: datetime,
                    reason: str) -> dict[str, Any] | None:
    """The stored Task as its provider must now read it: cancelled, with the reason."""
    if not task:
        return None
    stamp = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    restriction = {k: v for k, v in (task.get("restriction") or {}).items() if k != "extension"}
    changed = {
        **task,
        "status": "cancelled",
        "statusReason": {"text": reason},
        "meta": {**(task.get("meta") or {}), "versionId": str(version), "lastUpdated": stamp},
        "lastModified": stamp,
    }
    if restriction:
        changed["restriction"] = restriction
    return changed


def _index_patient(conn: Connection, pathway_id: str, terms: Collection[str]) -> None:
    if terms:
        stmt = _insert(conn, patient_index).on_conflict_do_nothing(
            index_elements=["pathway_id", "term"]
        )
        conn.execute(stmt, [{"pathway_id": pathway_id, "term": t} for t in sorted(terms)])


def task_accept_by(task: dict[str, Any] | None) -> datetime | None:
    """The accept-by time a rendered Task carries (its restriction extension, present while the
    handover waits for acceptance), or None."""
    if not task:
        return None
    extensions = (task.get("restriction") or {}).get("extension") or []
    for extension in extensions:
        if isinstance(extension, dict) and extension.get("url") == ACCEPT_BY_EXTENSION:
            value = extension.get("valueDateTime")
            if isinstance(value, str):
                return _aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return None


def _has_open(kind: str, condition: Any) -> Any:
    return exists().where(
        and_(
            pathway_open.c.pathway_id == pathway_rows.c.pathway_id,
            pathway_open.c.kind == kind,
            condition,
        )
    )


_COMPARISONS: dict[str, Callable[[Any, datetime], Any]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}

OPEN_TASK_STATUSES = ("requested", "accepted", "in-progress", "on-hold")
"""Task statuses of handovers still to be delivered."""


def _one_of(column: Any, value: str | Sequence[str]) -> Any:
    return column == value if isinstance(value, str) else column.in_(list(value))


def _pathway_order(sort: str) -> tuple[Any, ...]:
    c = pathway_rows.c
    if sort == "due":
        h = handover_rows.c
        due = (
            select(func.min(h.complete_by))
            .where(h.pathway_id == c.pathway_id, h.status.in_(OPEN_TASK_STATUSES))
            .scalar_subquery()
        )
        return (due.is_(None), due, c.pathway_id)
    if sort == "age":
        return (c.started_at, c.pathway_id)
    if sort == "sla":
        rank = case({"breached": 0, "at-risk": 1}, value=c.sla_state, else_=2)
        return (rank, c.updated_at.desc(), c.pathway_id)
    if sort != "updated":
        raise ValueError(f"unknown sort {sort!r}")
    return (c.updated_at.desc(), c.pathway_id)


def _aware(value: datetime) -> datetime:
    """A value read through an aggregate skips the column type: make it UTC-aware."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _current_version(conn: Connection) -> int:
    return conn.execute(select(func.max(schema_versions.c.version))).scalar() or 0


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got a naive datetime")
    return value.astimezone(UTC)


def _check_aware(batch: RecordBatch) -> None:
    """Refuse the whole batch before writing anything if any instant lacks a timezone."""
    for model in (*batch.events, *batch.handovers, batch.pathway):
        for name, value in model:
            if isinstance(value, datetime):
                _utc(value, f"{type(model).__name__}.{name}")


def _values(model: BaseModel) -> dict[str, Any]:
    """Column values of a row model; enums become their plain values for every driver."""
    return {k: v.value if isinstance(v, Enum) else v for k, v in model.model_dump().items()}


def _check_page(limit: int, offset: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")
