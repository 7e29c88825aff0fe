"""The flow summary: each handover's time in each state per provider, kept beside the event log.

Folding events into states needs a window over every event of a handover; done per report over
a quarter's half a million events it takes seconds on SQLite. So the fold is kept in a table,
brought up to date incrementally before each report: a pathway whose newest event `seq` is past
the one folded is folded again, from its own events only (an index range). Writes stay
idempotent and order-free like the store's: the fold is a pure function of a pathway's events.

One row per (pathway, handover, provider that held it): closed time in each state, the state it
is in now if still open (and since when), completion and end, counts of rejections, hand-offs
away (reassignments), refused deliveries and coordinator escalations, and the handover gap.
Instants are seconds since 1970 (floats), so reports do arithmetic without dialect functions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    distinct,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from activities.flow_tables import (
    BLOCKED,
    COUNTS,
    QUEUED,
    STATES,
    TRANSIT,
    WORKING,
    flow_marks,
    flow_rows,
    folded_columns,
    summary_rows,
)
from activities.store import EventStore, event_rows, handover_rows
from pathways.events import EventKind

log = structlog.get_logger("pathways.flow_summary")

DAY = 86400.0
CHUNK_PAUSE = 0.05
"""Seconds a chunked fold sleeps between chunks, so waiting writers take the lock."""
ENTERS = {
    EventKind.READY: TRANSIT,
    EventKind.DISPATCHED: TRANSIT,
    EventKind.REASSIGNED: TRANSIT,
    EventKind.REJECTED: TRANSIT,
    EventKind.FAILED: TRANSIT,
    EventKind.ACCEPTED: QUEUED,
    EventKind.STARTED: WORKING,
    EventKind.RESUMED: WORKING,
    EventKind.HELD: BLOCKED,
}
"""The state a lifecycle event puts its handover in. An acceptance followed by no start and
straight to completion counts as working, as the pathway detail's work time does (the provider
did not say when it began)."""
FINAL = tuple(k.value for k in (EventKind.COMPLETED, EventKind.CANCELLED, EventKind.REJECTED,
                                EventKind.FAILED))
"""Kinds that end a handover when nothing follows them (the broker's next offer follows a
rejection in the same batch, so a rejection last in the log ends it)."""
LIFECYCLE = tuple(k.value for k in (*ENTERS, EventKind.COMPLETED, EventKind.CANCELLED))
REMINDER_LEVEL = "remind-provider"
SCHEMA_VERSION = 7
"""The event-store schema version that gave the summary tables their current shape."""
ANALYZE_AFTER = 1000
"""Pathways folded at once after which the summary tables' statistics are refreshed."""
_FOLD_LOCK = 724_170_002
"""PostgreSQL advisory lock id that serialises concurrent folds (next to the store's 001)."""


_staging = Table(
    "flow_staging", MetaData(),
    Column("pathway_id", String()), Column("handover_id", String()),
    Column("provider_id", String()), *folded_columns(),
    *(Column(name, Integer) for name in COUNTS), Column("inputs_at", Float),
    Index("ix_flow_staging_inputs", "pathway_id", "inputs_at"),
    Index("ix_flow_staging_completed", "pathway_id", "completed_at"),
    prefixes=["TEMPORARY"],
)
"""The fold's raw rows (lifecycle, counted events and gaps apart), summed into the tables below."""

_changed = Table(
    "flow_changed", MetaData(), Column("pathway_id", String(), primary_key=True),
    Column("last_seq", Integer), prefixes=["TEMPORARY"],
)


def epoch(conn: Connection, column: Any) -> ColumnElement[float]:
    """Seconds since 1970 of a stored instant, as a float, on either dialect."""
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", column)  # type: ignore[return-value]
    return (func.julianday(column) - 2440587.5) * DAY


def refresh(store: EventStore, chunk: int | None = None,
            stop: threading.Event | None = None) -> int:
    """Fold the pathways with events not yet folded; return how many (0: nothing to write).

    `chunk`: first fold the pathways stale now (listed once, read only) that many per write
    transaction, so a large first fold (the whole log of an existing store) never holds
    SQLite's write lock for long: the engine's own writes get in between chunks. Then one last
    fold takes whatever arrived meanwhile and marks the summary up to date. `stop` ends a
    chunked fold early (the next one resumes)."""
    if store.schema_version() < SCHEMA_VERSION:
        store.migrate()  # an API started before the worker brought the schema up
    with store.engine.connect() as conn:
        if _folded_count(conn) == _event_count(conn):
            return 0  # read only: no write lock taken when nothing changed
        stale = list(conn.execute(_stale(conn).order_by("pathway_id")).all()) if chunk else []
    folded = 0
    for start in range(0, len(stale), chunk or 1):
        if stop is not None and stop.is_set():
            return folded
        with store.write() as conn:  # one writer at a time; BEGIN IMMEDIATE on SQLite
            folded += _fold(conn, [(r[0], r[1]) for r in stale[start:start + (chunk or 1)]])
        time.sleep(CHUNK_PAUSE)
    with store.write() as conn:
        folded += _fold(conn, None)
    if folded >= ANALYZE_AFTER:  # the planner's statistics, after a large fold
        with store.write() as conn:
            for table in (summary_rows, flow_rows):
                conn.execute(text(f"ANALYZE {table.name}"))
    return folded


def catch_up(store: EventStore, stop: threading.Event, chunk: int = 250) -> int:
    """The worker's fold at start, on a thread beside the workflows: the summary of a large
    existing store is ready before the first report asks for it, and no engine write waits
    behind the fold for more than one chunk. A failure is logged by kind; the next report folds
    what is left."""
    try:
        folded = refresh(store, chunk=chunk, stop=stop)
    except Exception as error:  # the store unreachable: the report's own refresh tries again
        log.warning("flow summary catch-up failed", error=type(error).__name__)
        return 0
    if folded:
        log.info("flow summary caught up", pathways=folded)
    return folded


def _fold(conn: Connection, pathways: list[tuple[str, int]] | None) -> int:
    """Fold the given (pathway, newest seq) pairs, or (None) every stale pathway and then mark
    the whole log folded; return how many pathways."""
    _changed.drop(conn, checkfirst=True)
    if conn.dialect.name == "postgresql":  # one fold at a time (SQLite: BEGIN IMMEDIATE)
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _FOLD_LOCK})
    _changed.create(conn)
    try:
        # Count first: an event landing after the count but before the snapshot is folded
        # now and seen as new next time; one landing after the snapshot is not counted.
        total = _event_count(conn)
        if pathways is None:
            conn.execute(insert(_changed).from_select(["pathway_id", "last_seq"], _stale(conn)))
        elif pathways:
            conn.execute(insert(_changed), [{"pathway_id": p, "last_seq": seq}
                                             for p, seq in pathways])
        count = int(conn.execute(select(func.count()).select_from(_changed)).scalar_one())
        changed = select(_changed.c.pathway_id)
        for table in (flow_rows, summary_rows, flow_marks):
            conn.execute(delete(table).where(table.c.pathway_id.in_(changed)))
        conn.execute(delete(flow_marks).where(flow_marks.c.pathway_id == ""))
        _staging.drop(conn, checkfirst=True)
        _staging.create(conn)
        _fold_states(conn, changed)
        _fold_counted(conn, changed)
        _fold_gaps(conn, changed)
        _fold_handovers(conn)
        _fold_pairs(conn)
        _staging.drop(conn)
        conn.execute(insert(flow_marks).from_select(
            ["pathway_id", "last_seq"], select(_changed.c.pathway_id, _changed.c.last_seq)))
        if pathways is None:
            conn.execute(insert(flow_marks).values(pathway_id="", last_seq=total))
        return count
    finally:
        _changed.drop(conn)


def folded_events(store: EventStore) -> int | None:
    """How many events the summary has folded: a version of it (events are append-only)."""
    with store.engine.connect() as conn:
        return _folded_count(conn)


def _event_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(event_rows)).scalar_one())


def folded_count(conn: Connection) -> int | None:
    """The events folded (on a caller's connection); None while a fold is under way."""
    return _folded_count(conn)


def _folded_count(conn: Connection) -> int | None:
    mark = select(flow_marks.c.last_seq).where(flow_marks.c.pathway_id == "")
    return conn.execute(mark).scalar()


def _stale(conn: Connection) -> Any:
    """(pathway, newest seq) of the pathways whose newest event is not folded yet."""
    e = event_rows.c
    newest = select(e.pathway_id, func.max(e.seq).label("last_seq")).group_by(
        e.pathway_id).subquery("newest")
    return select(newest.c.pathway_id, newest.c.last_seq).select_from(
        newest.outerjoin(flow_marks, flow_marks.c.pathway_id == newest.c.pathway_id)
    ).where(newest.c.last_seq > func.coalesce(flow_marks.c.last_seq, 0), newest.c.pathway_id != "")


def _fold_states(conn: Connection, changed: Any) -> None:
    e = event_rows.c
    by_handover: dict[str, Any] = {"partition_by": (e.pathway_id, e.handover_id)}
    ordered: dict[str, Any] = {**by_handover, "order_by": e.seq}
    at = epoch(conn, e.at)
    started = func.max(case((e.kind == EventKind.STARTED.value, 1), else_=0)).over(**by_handover)
    rows = select(
        e.pathway_id, e.handover_id, e.definition_id, e.kind, e.seq, at.label("at"),
        func.lead(at).over(**ordered).label("next_at"),
        func.lead(e.kind).over(**ordered).label("next_kind"),
        case((e.kind == EventKind.REASSIGNED.value, func.lag(e.provider_id).over(**ordered)),
             else_=e.provider_id).label("who"),
        started.label("started"),
    ).where(
        e.pathway_id.in_(changed), e.kind.in_(LIFECYCLE), e.handover_id.is_not(None)
    ).subquery("lifecycle")
    r = rows.c
    state = case(
        *((r.kind == kind.value, literal(name)) for kind, name in ENTERS.items()
          if kind is not EventKind.ACCEPTED),
        (and_(r.kind == EventKind.ACCEPTED.value, r.started == 0,
              r.next_kind == EventKind.COMPLETED.value), literal(WORKING)),
        (r.kind == EventKind.ACCEPTED.value, literal(QUEUED)),
        else_=null(),
    )
    last = r.next_at.is_(None)
    still_open = and_(last, r.kind.not_in(FINAL))

    def total(name: str) -> Any:
        return func.sum(case((and_(state == name, r.next_at.is_not(None)), r.next_at - r.at),
                             else_=0.0))

    def count(kind: EventKind) -> Any:
        return func.sum(case((r.kind == kind.value, 1), else_=0))

    query = select(
        r.pathway_id, r.handover_id, r.who, *(total(name) for name in STATES),
        func.max(case((still_open, state))), func.max(case((still_open, r.at))),
        func.max(case((r.kind == EventKind.COMPLETED.value, r.at))),
        func.max(case((and_(last, r.kind.in_(FINAL)), r.at))),
        null(),
        count(EventKind.REJECTED), count(EventKind.REASSIGNED), literal(0), literal(0), null(),
    ).group_by(r.pathway_id, r.handover_id, r.who)
    conn.execute(insert(_staging).from_select([c.name for c in _staging.columns], query))


def _zeros(conn: Connection) -> list[Any]:
    return [*(literal(0.0) for _ in STATES), null(), null(), null(), null()]


def _fold_counted(conn: Connection, changed: Any) -> None:
    """Refused deliveries and coordinator escalations (distinct escalation ids: a later rung
    raises the same one; reminders are the provider's, not coordinator work)."""
    e = event_rows.c
    level = e.detail["level"].as_string()
    escalation = case((and_(e.kind == EventKind.ESCALATED.value, level != REMINDER_LEVEL),
                       e.detail["escalation_id"].as_string()))
    query = select(
        e.pathway_id, e.handover_id, e.provider_id, *_zeros(conn),
        null(), literal(0), literal(0),
        func.sum(case((e.kind == EventKind.REFUSED_DELIVERY.value, 1), else_=0)),
        func.count(distinct(escalation)), null(),
    ).where(
        e.pathway_id.in_(changed), e.handover_id.is_not(None),
        e.kind.in_([EventKind.REFUSED_DELIVERY.value, EventKind.ESCALATED.value]),
    ).group_by(e.pathway_id, e.handover_id, e.provider_id)
    conn.execute(insert(_staging).from_select([c.name for c in _staging.columns], query))


def _fold_gaps(conn: Connection, changed: Any) -> None:
    """Handover gap: from the latest completion in the pathway before a handover became ready
    (its inputs complete) to it becoming ready and dispatched (the engine does both at once)."""
    e = event_rows.c
    at = epoch(conn, e.at)
    latest = func.max(case((e.kind == EventKind.COMPLETED.value, at))).over(
        partition_by=e.pathway_id, order_by=e.seq, rows=(None, 0))
    rows = select(
        e.pathway_id, e.handover_id, e.provider_id, e.kind, (at - latest).label("gap"),
        latest.label("inputs_at"),
    ).where(
        e.pathway_id.in_(changed),
        e.kind.in_([EventKind.READY.value, EventKind.COMPLETED.value]),
    ).subquery("gaps")
    g = rows.c
    query = select(
        g.pathway_id, g.handover_id, g.provider_id, *_zeros(conn), g.gap,
        *(literal(0) for _ in COUNTS), g.inputs_at,
    ).where(g.kind == EventKind.READY.value, g.gap.is_not(None))
    conn.execute(insert(_staging).from_select([c.name for c in _staging.columns], query))


def _summed(keys: Sequence[Any]) -> Any:
    f = _staging.c
    return select(
        *keys, *(func.sum(f[name]).label(name) for name in STATES),
        func.max(f.open_state).label("open_state"), func.max(f.open_since).label("open_since"),
        func.max(f.completed_at).label("completed_at"), func.max(f.ended_at).label("ended_at"),
        func.max(f.gap).label("gap"), *(func.sum(f[name]).label(name) for name in COUNTS),
    ).group_by(*keys)


def _fold_handovers(conn: Connection) -> None:
    """The summary rows of the staged pathways, with the read model's row of each handover."""
    f = _staging.c
    per = _summed([f.pathway_id, f.handover_id]).subquery("per")
    h, p = handover_rows.c, per.c
    ready = epoch(conn, h.ready_at)
    lead = p.completed_at - ready
    waiting = p[TRANSIT] + p[QUEUED] + p[BLOCKED]
    done = p.completed_at.is_not(None)
    query = select(
        h.pathway_id, h.handover_id, h.definition_id, h.step_id, h.provider_id, ready,
        epoch(conn, h.complete_by), *(p[name] for name in STATES), p.open_state, p.open_since,
        p.completed_at, p.ended_at, p.gap, *(p[name] for name in COUNTS),
        case((done, lead)), case((done, waiting)), case((done, p[WORKING])),
        case((done, case((p.completed_at > epoch(conn, h.complete_by), 1), else_=0))),
        case((_critical(p), 1), else_=0),
        case((done, bucket(conn, lead))), case((done, bucket(conn, waiting))),
        case((done, bucket(conn, p[WORKING]))), case((p.gap.is_not(None), bucket(conn, p.gap))),
    ).select_from(handover_rows.join(per, and_(p.pathway_id == h.pathway_id,
                                               p.handover_id == h.handover_id)))
    conn.execute(insert(summary_rows).from_select([c.name for c in summary_rows.columns], query))


def _critical(p: Any) -> Any:
    """On the pathway's critical path: its completion is what a later handover waited for (the
    latest completion before that one became ready), or the pathway's last completion."""
    g = _staging.alias("triggered")
    m = _staging.alias("last")
    triggered = exists().where(g.c.pathway_id == p.pathway_id, g.c.inputs_at == p.completed_at)
    last = select(func.max(m.c.completed_at)).where(m.c.pathway_id == p.pathway_id)
    return and_(p.completed_at.is_not(None),
                or_(triggered, p.completed_at == last.scalar_subquery()))


def _fold_pairs(conn: Connection) -> None:
    """Per handover and provider, with the handover's filter columns from its summary row."""
    f = _staging.c
    pair = _summed([f.pathway_id, f.handover_id, f.provider_id]).subquery("pair")
    s, p = summary_rows.c, pair.c
    query = select(
        p.pathway_id, p.handover_id, p.provider_id, s.definition_id, s.provider_id, s.ready,
        s.ended_at, *(p[name] for name in STATES), p.open_state, p.open_since, p.completed_at,
        p.ended_at, p.gap, *(p[name] for name in COUNTS),
    ).select_from(summary_rows.join(pair, and_(p.pathway_id == s.pathway_id,
                                               p.handover_id == s.handover_id))).where(
        p.provider_id.is_not(None), s.pathway_id.in_(select(_changed.c.pathway_id)))
    conn.execute(insert(flow_rows).from_select([c.name for c in flow_rows.columns], query))


def bucket(conn: Connection, value: Any) -> Any:
    """Histogram bucket of a duration in seconds: a minute wide under 2 hours, 10 minutes under
    a day, an hour under 30 days, a day beyond (increasing with the value)."""
    return case(
        (value < 0, -1),
        (value < 7200, _floor(conn, value / 60)),
        (value < DAY, 120 + _floor(conn, value / 600)),
        (value < 30 * DAY, 1000 + _floor(conn, value / 3600)),
        else_=2000 + _floor(conn, value / DAY),
    )


def _floor(conn: Connection, value: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return cast(func.floor(value), Integer)
    return cast(value, Integer)  # SQLite truncates; callers pass values that are not negative
