"""The event store: the append-only handover event log plus the read models the API queries.

The workflow is the source of truth; this store is what it tells the outside world, written by a
local activity that Temporal may retry. Every write is therefore idempotent (events keyed by
event_id) and monotonic (read-model rows never go back to an older version), so a retried or
reordered batch changes nothing. SQLAlchemy Core keeps one code path for SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
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
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.sql import Select

from pathways.events import EventKind, HandoverRow, PathwayEvent, PathwayRow, RecordBatch


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
    Index("ix_handovers_provider_updated", "provider_id", "updated_at"),
    Index("ix_handovers_pathway", "pathway_id"),
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

ESCALATION_KINDS = (
    EventKind.ESCALATED,
    EventKind.ESCALATION_ACKNOWLEDGED,
    EventKind.ESCALATION_RESOLVED,
)


def _create_v1(conn: Connection) -> None:
    """The first released schema. Later steps must alter tables, since create_all is checkfirst."""
    tables = [event_rows, handover_rows, pathway_rows, pathway_open]
    metadata.create_all(conn, tables=tables, checkfirst=True)


def _index_event_kinds(conn: Connection) -> None:
    """v2: the escalation inbox reads events by kind."""
    index = next(i for i in event_rows.indexes if i.name == "ix_events_kind_pathway")
    index.create(conn, checkfirst=True)


def _flow_summary(conn: Connection) -> None:
    """v3: the flow summary tables the analytics report folds events into."""
    from activities.flow_summary import create_summary  # owns them; imports this module

    create_summary(conn)


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _create_v1),
    (2, _index_event_kinds),
    (3, _flow_summary),
]
"""Versioned schema steps, applied in order once each; append new steps, never edit old ones."""

_PG_MIGRATION_LOCK = 724_170_001
"""Advisory lock id that serialises concurrent `migrate()` calls on PostgreSQL."""


class EventStore:
    """Event log and read models behind one SQLAlchemy engine (SQLite file or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.engine = _engine(url)

    def close(self) -> None:
        self.engine.dispose()

    def migrate(self) -> int:
        """Bring the schema to the latest version (safe to run on every deploy); return it."""
        with self._write() as conn:
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

    def record(self, batch: RecordBatch) -> None:
        """Write a batch in one transaction; retrying it, or an older one, changes nothing."""
        _check_aware(batch)
        with self._write() as conn:
            self._insert_events(conn, batch.events)
            self._upsert_handovers(conn, batch.handovers)
            if self._upsert_pathway(conn, batch.pathway):
                _rewrite_open(conn, batch.pathway)

    def search_tasks(
        self,
        provider_id: str,
        statuses: Sequence[str] | None,
        updated_after: datetime | None,
        limit: int,
        offset: int,
    ) -> tuple[list[HandoverRow], int]:
        """A provider's handovers, oldest change first, and the total matching (Task search)."""
        _check_page(limit, offset)
        where = [handover_rows.c.provider_id == provider_id]
        if statuses is not None:
            where.append(handover_rows.c.status.in_(list(statuses)))
        if updated_after is not None:
            where.append(handover_rows.c.updated_at > _utc(updated_after, "updated_after"))
        query = select(handover_rows).where(*where)
        order = (handover_rows.c.updated_at, handover_rows.c.task_id)
        rows, total = self._page(query, order, limit, offset)
        return [HandoverRow.model_validate(row) for row in rows], total

    def get_task_row(self, task_id: str) -> HandoverRow | None:
        with self.engine.connect() as conn:
            query = select(handover_rows).where(handover_rows.c.task_id == task_id)
            row = conn.execute(query).first()
        return None if row is None else HandoverRow.model_validate(dict(row._mapping))

    def list_pathways(
        self,
        definition_id: str | None = None,
        sla_state: str | None = None,
        status: str | None = None,
        open_provider: str | None = None,
        open_step: str | None = None,
        breached: bool | None = None,
        step_title_contains: str | None = None,
        patient_key: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[PathwayRow], int]:
        """Pathways matching every given filter, most recently changed first, and the total."""
        _check_page(limit, offset)
        c = pathway_rows.c
        where: list[Any] = [
            column == value
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
        rows, total = self._page(query, (c.updated_at.desc(), c.pathway_id), limit, offset)
        return [PathwayRow.model_validate(row) for row in rows], total

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

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock up front (BEGIN IMMEDIATE)."""
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

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

    def _upsert_handovers(self, conn: Connection, rows: list[HandoverRow]) -> None:
        if rows:
            stmt = _newer_wins(conn, handover_rows, "task_id", "version")
            conn.execute(stmt, [_values(row) for row in rows])

    def _upsert_pathway(self, conn: Connection, row: PathwayRow) -> bool:
        """Upsert the pathway row; True if it was written (not older than the stored one)."""
        stmt = _newer_wins(conn, pathway_rows, "pathway_id", "updated_at")
        written = conn.execute(stmt.returning(pathway_rows.c.pathway_id), _values(row))
        return written.first() is not None


def _engine(url: str) -> Engine:
    """An engine with sensible pooling; SQLite gets WAL, a busy timeout and real transactions."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported event store database {backend!r}: use SQLite or PostgreSQL")
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, issue BEGIN, so DDL and reads are transactional too.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "busy_timeout=30000", "synchronous=NORMAL"):
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


def _has_open(kind: str, condition: Any) -> Any:
    return exists().where(
        and_(
            pathway_open.c.pathway_id == pathway_rows.c.pathway_id,
            pathway_open.c.kind == kind,
            condition,
        )
    )


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
