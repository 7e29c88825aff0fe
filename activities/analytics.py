"""Flow analytics computed in the event store's database (SQLite or PostgreSQL, SQLAlchemy Core).

One report is a handful of set-based queries, never a Python loop over events:

1. `_STATES`: each handover's lifecycle events in order, with a window function giving the time
   to the next one; the interval belongs to the state the event entered (in transit, queued,
   working, blocked) and to the provider that held the handover then. Summed per handover and
   provider into a temporary table, with escalations and refused deliveries counted alongside.
2. Per handover (temporary table): ready and due time from the read model, completion, the
   handover gap (ready after the latest completion in the pathway), time in each state.
3. GROUP BY queries over those tables for counts, sums and means, and one window query per
   grouping for nearest-rank percentiles.

The period's population: handovers that were ready before `until` and not finished before
`since` (everything in flow during the period). Lead times are those of the handovers completed
in the period; arrivals are handovers ready in it; nothing after `until` is counted, so a
report of a past quarter does not change as later events arrive.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    distinct,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from activities.store import EventStore, event_rows, handover_rows, pathway_rows
from pathways.analytics.measures import (
    Distribution,
    flow_efficiency,
    little_check,
    per_hundred,
    rank_by_waiting,
    ratio,
)
from pathways.analytics.report import (
    Bottlenecks,
    Flow,
    Measures,
    PathwayMeasures,
    Report,
    Spc,
    States,
    Weekly,
    WipPoint,
)
from pathways.analytics.spc import Direction, xmr
from pathways.analytics.standards import attainment, standards_for
from pathways.events import EventKind, PathwayEvent

DAY, WEEK = 86400.0, 7 * 86400.0
DEFAULT_PERIOD = timedelta(weeks=13)
"""A quarter, when the report is given no `since`."""

TRANSIT, QUEUED, WORKING, BLOCKED = "in_transit", "queued", "working", "blocked"
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
FINAL = (EventKind.COMPLETED, EventKind.CANCELLED, EventKind.REJECTED, EventKind.FAILED)
"""Kinds that end a handover when nothing follows them (an alternate may follow a rejection)."""
LIFECYCLE = tuple(k.value for k in (*ENTERS, EventKind.COMPLETED, EventKind.CANCELLED))
REMINDER_LEVEL = "remind-provider"

_temp = MetaData()
hp = Table(
    "analytics_hp", _temp,
    Column("pathway_id", String), Column("handover_id", String), Column("provider_id", String),
    *(Column(name, Float) for name in (TRANSIT, QUEUED, WORKING, BLOCKED)),
    Column("completed_at", Float), Column("ended_at", Float), Column("last_seq", Integer),
    *(Column(name, Integer) for name in ("rejections", "reassigned", "refused", "escalations")),
    prefixes=["TEMPORARY"],
)
"""Per handover and provider: time in each state, outcomes and counts (several rows may hold
one pair: the lifecycle and the counted events are inserted separately, then summed)."""
hf = Table(
    "analytics_hf", _temp,
    Column("pathway_id", String), Column("handover_id", String), Column("step_id", String),
    Column("provider_id", String), Column("ready", Float), Column("due", Float),
    Column("completed_at", Float), Column("ended_at", Float), Column("gap", Float),
    *(Column(name, Float) for name in (TRANSIT, QUEUED, WORKING, BLOCKED)),
    Column("lead", Float), Column("waiting", Float), Column("worked", Float),
    Column("done", Integer),
    Column("breached", Integer),
    *(Column(name, Integer) for name in ("rejections", "reassigned", "refused", "escalations")),
    prefixes=["TEMPORARY"],
)
"""Per handover of the period: `done` = completed in the period (`lead`, `waiting` and `worked`
are set only then; the state columns run to the end of the period for open ones); `breached` = completed after
the patient's due time, or still open past it at the end of the period."""


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime
    cap: datetime  # min(now, until): open intervals run to here

    @property
    def days(self) -> float:
        return (self.cap - self.since).total_seconds() / DAY


def period(since: datetime | None, until: datetime | None, now: datetime) -> Period:
    """[since, until) in UTC; until defaults to now and since to a quarter before until."""
    end = _aware(until) if until is not None else now
    start = _aware(since) if since is not None else end - DEFAULT_PERIOD
    if start >= end:
        raise ValueError("since must be before until")
    return Period(start, end, min(now, end))


def flow_report(
    store: EventStore,
    definition_id: str | None = None,
    provider_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> Report:
    """The lean flow report of one definition (or all) over a period, from the event store."""
    moment = _aware(now) if now is not None else datetime.now(UTC)
    span = period(since, until, moment)
    with store.engine.connect() as conn:
        sql = _Sql(conn)
        try:
            sql.build(definition_id, provider_id, span)
            return _assemble(sql, definition_id, provider_id, span, moment)
        finally:
            sql.drop()
            conn.rollback()


class _Sql:
    """The report's queries on one connection (temporary tables live per connection)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"

    def epoch(self, column: Any) -> ColumnElement[float]:
        """Seconds since 1970 of a stored instant, as a float, on either dialect."""
        if self.pg:
            return func.extract("epoch", column)
        return (func.julianday(column) - 2440587.5) * DAY

    def build(self, definition_id: str | None, provider_id: str | None, span: Period) -> None:
        hp.create(self.conn)
        hf.create(self.conn)
        self.cap = span.cap.timestamp()
        self.since = span.since.timestamp()
        cohort = self._cohort(definition_id, provider_id, span)
        self._states(cohort, definition_id, span)
        self._counted(cohort, definition_id, span)
        self._handovers(cohort, definition_id, span)

    def drop(self) -> None:
        for table in (hf, hp):
            table.drop(self.conn, checkfirst=True)

    def _cohort(self, definition_id: str | None, provider_id: str | None, span: Period) -> Any:
        """Handovers in flow during the period, by the read model."""
        h = handover_rows.c
        where: list[Any] = [
            h.ready_at < span.until,
            or_(h.status.in_(["requested", "accepted", "in-progress", "on-hold"]),
                h.updated_at >= span.since),
        ]
        if definition_id is not None:
            where.append(h.definition_id == definition_id)
        if provider_id is not None:
            where.append(h.provider_id == provider_id)
        return select(h.pathway_id, h.handover_id, h.step_id, h.provider_id, h.ready_at,
                      h.complete_by).where(*where).subquery("cohort")

    def _events(self, cohort: Any, definition_id: str | None, span: Period,
                kinds: Sequence[str]) -> Any:
        e = event_rows.c
        where = [e.kind.in_(list(kinds)), e.at < span.until, e.handover_id.is_not(None)]
        if definition_id is not None:
            where.append(e.definition_id == definition_id)
        joined = event_rows.join(cohort, and_(cohort.c.pathway_id == e.pathway_id,
                                              cohort.c.handover_id == e.handover_id))
        return joined, where

    def _states(self, cohort: Any, definition_id: str | None, span: Period) -> None:
        e = event_rows.c
        joined, where = self._events(cohort, definition_id, span, LIFECYCLE)
        by_handover = {"partition_by": (e.pathway_id, e.handover_id)}
        ordered = {**by_handover, "order_by": e.seq}
        at = self.epoch(e.at)
        started = func.max(case((e.kind == EventKind.STARTED.value, 1), else_=0)).over(
            **by_handover)
        rows = select(
            e.pathway_id, e.handover_id, e.kind, e.seq, at.label("at"),
            func.lead(at).over(**ordered).label("next_at"),
            func.lead(e.kind).over(**ordered).label("next_kind"),
            case((e.kind == EventKind.REASSIGNED.value,
                  func.lag(e.provider_id).over(**ordered)), else_=e.provider_id).label("who"),
            started.label("started"),
        ).select_from(joined).where(*where).subquery("lifecycle")
        r = rows.c
        final = [k.value for k in FINAL]
        until = func.coalesce(r.next_at, case((r.kind.in_(final), r.at), else_=self.cap))
        length = until - r.at
        state = case(
            *((r.kind == kind.value, literal(name)) for kind, name in ENTERS.items()
              if kind is not EventKind.ACCEPTED),
            (and_(r.kind == EventKind.ACCEPTED.value, r.started == 0,
                  r.next_kind == EventKind.COMPLETED.value), literal(WORKING)),
            (r.kind == EventKind.ACCEPTED.value, literal(QUEUED)),
            else_=null(),
        )

        def total(name: str) -> Any:
            return func.sum(case((state == name, length), else_=0.0))

        def count(kind: EventKind) -> Any:
            return func.sum(case((r.kind == kind.value, 1), else_=0))

        last = r.next_at.is_(None)
        query = select(
            r.pathway_id, r.handover_id, r.who,
            *(total(name) for name in (TRANSIT, QUEUED, WORKING, BLOCKED)),
            func.max(case((r.kind == EventKind.COMPLETED.value, r.at))),
            func.max(case((and_(last, r.kind.in_(final)), r.at))),
            func.max(r.seq),
            count(EventKind.REJECTED), count(EventKind.REASSIGNED),
            literal(0), literal(0),
        ).group_by(r.pathway_id, r.handover_id, r.who)
        columns = ["pathway_id", "handover_id", "provider_id", TRANSIT, QUEUED, WORKING, BLOCKED,
                   "completed_at", "ended_at", "last_seq", "rejections", "reassigned", "refused",
                   "escalations"]
        self.conn.execute(insert(hp).from_select(columns, query))

    def _counted(self, cohort: Any, definition_id: str | None, span: Period) -> None:
        """Refused deliveries and coordinator escalations (distinct escalation ids; reminders
        are the provider's, not coordinator work) per handover and provider."""
        e = event_rows.c
        kinds = [EventKind.REFUSED_DELIVERY.value, EventKind.ESCALATED.value]
        joined, where = self._events(cohort, definition_id, span, kinds)
        level = e.detail["level"].as_string()
        escalation = case(
            (and_(e.kind == EventKind.ESCALATED.value, level != REMINDER_LEVEL),
             e.detail["escalation_id"].as_string()))
        zero = literal(0.0)
        query = select(
            e.pathway_id, e.handover_id, e.provider_id, zero, zero, zero, zero,
            null(), null(), null(), literal(0), literal(0),
            func.sum(case((e.kind == EventKind.REFUSED_DELIVERY.value, 1), else_=0)),
            func.count(distinct(escalation)),
        ).select_from(joined).where(*where).group_by(e.pathway_id, e.handover_id, e.provider_id)
        columns = [c.name for c in hp.columns]
        self.conn.execute(insert(hp).from_select(columns, query))

    def _gaps(self, definition_id: str | None, span: Period) -> Any:
        """Per ready event: seconds since the latest completion in its pathway before it."""
        e = event_rows.c
        kinds = [EventKind.READY.value, EventKind.COMPLETED.value]
        where = [e.kind.in_(kinds), e.at < span.until]
        if definition_id is not None:
            where.append(e.definition_id == definition_id)
        at = self.epoch(e.at)
        latest = func.max(case((e.kind == EventKind.COMPLETED.value, at))).over(
            partition_by=e.pathway_id, order_by=e.seq, rows=(None, 0))
        rows = select(e.pathway_id, e.handover_id, e.kind, (at - latest).label("gap")).where(
            *where).subquery("gaps_all")
        return select(rows.c.pathway_id, rows.c.handover_id, rows.c.gap).where(
            rows.c.kind == EventKind.READY.value).subquery("gaps")

    def _handovers(self, cohort: Any, definition_id: str | None, span: Period) -> None:
        p = select(
            hp.c.pathway_id, hp.c.handover_id,
            *(func.sum(hp.c[name]).label(name) for name in (TRANSIT, QUEUED, WORKING, BLOCKED)),
            func.max(hp.c.completed_at).label("completed_at"),
            func.max(hp.c.ended_at).label("ended_at"),
            *(func.sum(hp.c[name]).label(name)
              for name in ("rejections", "reassigned", "refused", "escalations")),
        ).group_by(hp.c.pathway_id, hp.c.handover_id).subquery("per_handover")
        gaps = self._gaps(definition_id, span)
        ready, due = self.epoch(cohort.c.ready_at), self.epoch(cohort.c.complete_by)
        since = span.since.timestamp()
        done = and_(p.c.completed_at.is_not(None), p.c.completed_at >= since)
        lead = case((done, p.c.completed_at - ready))
        breached = case(
            (done, case((p.c.completed_at > due, 1), else_=0)),
            (and_(p.c.ended_at.is_(None), due < self.cap), 1),
            else_=0,
        )
        query = select(
            cohort.c.pathway_id, cohort.c.handover_id, cohort.c.step_id, cohort.c.provider_id,
            ready, due, p.c.completed_at, p.c.ended_at, gaps.c.gap,
            *(p.c[name] for name in (TRANSIT, QUEUED, WORKING, BLOCKED)),
            lead, case((done, p.c[TRANSIT] + p.c[QUEUED] + p.c[BLOCKED])),
            case((done, p.c[WORKING])), case((done, 1), else_=0), breached,
            *(p.c[name] for name in ("rejections", "reassigned", "refused", "escalations")),
        ).select_from(
            cohort.join(p, and_(p.c.pathway_id == cohort.c.pathway_id,
                                p.c.handover_id == cohort.c.handover_id))
            .outerjoin(gaps, and_(gaps.c.pathway_id == cohort.c.pathway_id,
                                  gaps.c.handover_id == cohort.c.handover_id))
        )
        self.conn.execute(insert(hf).from_select([c.name for c in hf.columns], query))

    # --- reading -----------------------------------------------------------------------------
    def measures(self, key: Any) -> dict[str, dict[str, Any]]:
        """Handover-level sums and counts per group key (`key` is a column of hf or a literal)."""
        c = hf.c
        waiting_all = c[TRANSIT] + c[QUEUED] + c[BLOCKED]
        query = select(
            key.label("key"), func.count().label("handovers"),
            func.sum(c.done).label("completed"),
            func.sum(case((c.ended_at.is_(None), 1), else_=0)).label("open"),
            *(func.avg(case((c.done == 1, c[name]))).label(name)
              for name in (TRANSIT, QUEUED, WORKING, BLOCKED)),
            func.sum(c.worked).label("sum_working"), func.sum(c.lead).label("sum_lead"),
            func.sum(waiting_all).label("waiting_seconds"),
            func.sum(case((and_(c.done == 1, c.breached == 0), 1), else_=0)).label("attained"),
            func.sum(c.breached).label("breached"),
            func.sum(case((c.done == 1, 1), else_=0) + case(
                (and_(c.done == 0, c.ended_at.is_(None)), 1), else_=0)).label("judged"),
            func.sum(c.escalations).label("escalations"),
            func.sum(c.reassigned).label("reassignments"),
            func.sum(c.rejections).label("rejections"),
            func.sum(c.refused).label("refused"),
            func.sum(case((and_(c.done == 1, c.refused == 0), 1), else_=0)).label("right"),
        ).group_by(key)
        return {str(row.key): dict(row._mapping) for row in self.conn.execute(query)}

    def provider_measures(self) -> dict[str, dict[str, Any]]:
        """What each provider did while it held handovers (a handover reassigned from A to B
        counts its waiting with A for A, with B for B): the provider scorecard's counts."""
        pair = select(
            hp.c.pathway_id, hp.c.handover_id, hp.c.provider_id,
            *(func.sum(hp.c[name]).label(name) for name in (TRANSIT, QUEUED, WORKING, BLOCKED)),
            func.max(hp.c.completed_at).label("completed_at"),
            *(func.sum(hp.c[name]).label(name)
              for name in ("rejections", "reassigned", "refused", "escalations")),
        ).group_by(hp.c.pathway_id, hp.c.handover_id, hp.c.provider_id).subquery("pair")
        c = pair.c
        done = and_(c.completed_at.is_not(None), c.completed_at >= self.since)
        query = select(
            c.provider_id.label("key"),
            func.sum(c[TRANSIT] + c[QUEUED] + c[BLOCKED]).label("waiting_seconds"),
            func.sum(c.escalations).label("escalations"),
            func.sum(c.reassigned).label("reassignments"),
            func.sum(c.rejections).label("rejections"),
            func.sum(c.refused).label("refused"),
            func.sum(case((and_(done, c.refused == 0), 1), else_=0)).label("right"),
            func.sum(case((done, 1), else_=0)).label("delivered"),
            func.count().label("held"),
        ).where(c.provider_id.is_not(None)).group_by(c.provider_id)
        return {str(row.key): dict(row._mapping) for row in self.conn.execute(query)}

    def distributions(self, key: Any, names: Sequence[str]) -> dict[tuple[str, str], Distribution]:
        """Nearest-rank p50/p90, mean and max of each named hf column per group, in one window
        query (row number * 100 >= percent * count picks the rank)."""
        parts = [
            select(key.label("key"), literal(name).label("measure"), hf.c[name].label("value"))
            .where(hf.c[name].is_not(None))
            for name in names
        ]
        values = union_all(*parts).subquery("values")
        v = values.c
        ranked = select(
            v.key, v.measure, v.value,
            func.row_number().over(partition_by=(v.key, v.measure), order_by=v.value).label("rn"),
            func.count().over(partition_by=(v.key, v.measure)).label("n"),
        ).subquery("ranked")
        r = ranked.c

        def pct(percent: int) -> Any:
            return func.min(case((r.rn * 100 >= percent * r.n, r.value)))

        query = select(r.key, r.measure, func.count(), func.avg(r.value), pct(50), pct(90),
                       func.max(r.value)).group_by(r.key, r.measure)
        return {
            (str(row[0]), row[1]): Distribution(count=row[2], mean=row[3], p50=row[4],
                                                p90=row[5], max=row[6])
            for row in self.conn.execute(query)
        }

    def pathway_lead(self, definition_id: str | None, span: Period) -> PathwayMeasures:
        p = pathway_rows.c
        where = [] if definition_id is None else [p.definition_id == definition_id]
        started = self.conn.execute(select(func.count()).where(
            *where, p.started_at >= span.since, p.started_at < span.until)).scalar_one()
        lead = (self.epoch(p.ended_at) - self.epoch(p.started_at))
        finished = select(lead.label("value")).where(
            *where, p.status == "completed", p.ended_at >= span.since, p.ended_at < span.until
        ).subquery("finished")
        ranked = select(
            finished.c.value,
            func.row_number().over(order_by=finished.c.value).label("rn"),
            func.count().over().label("n"),
        ).subquery("ranked")
        r = ranked.c
        row = self.conn.execute(select(
            func.count(), func.avg(r.value),
            func.min(case((r.rn * 100 >= 50 * r.n, r.value))),
            func.min(case((r.rn * 100 >= 90 * r.n, r.value))), func.max(r.value))).one()
        return PathwayMeasures(started=started, completed=row[0], lead=Distribution(
            count=row[0], mean=row[1], p50=row[2], p90=row[3], max=row[4]))

    def weekly(self, monday: float) -> list[tuple[int, int, float | None, float | None]]:
        """(week index from `monday`, completed, mean lead, breach rate) by completion week."""
        c = hf.c
        week = cast(func.floor((c.completed_at - monday) / WEEK), Integer) if self.pg else cast(
            (c.completed_at - monday) / WEEK, Integer)
        query = select(week.label("week"), func.count(), func.avg(c.lead),
                       func.avg(cast(c.breached, Float))).where(c.done == 1).group_by(
            literal_column("week")).order_by(literal_column("week"))
        return [(int(r[0]), r[1], r[2], r[3]) for r in self.conn.execute(query)]

    def daily(self, since: float) -> tuple[int, dict[int, int], dict[int, int]]:
        """WIP at `since`, arrivals and departures per day index from `since`."""
        c = hf.c
        open_at_start = self.conn.execute(select(func.count()).where(
            c.ready < since, or_(c.ended_at.is_(None), c.ended_at >= since))).scalar_one()

        def per_day(column: Any) -> dict[int, int]:
            day = cast((column - since) / DAY, Integer)
            query = select(day.label("day"), func.count()).where(
                column >= since, column < self.cap).group_by(literal_column("day"))
            return {int(r[0]): r[1] for r in self.conn.execute(query)}

        return open_at_start, per_day(c.ready), per_day(c.ended_at)

    def wip_now(self, definition_id: str | None, provider_id: str | None) -> int:
        h = handover_rows.c
        where = [h.status.in_(["requested", "accepted", "in-progress", "on-hold"])]
        if definition_id is not None:
            where.append(h.definition_id == definition_id)
        if provider_id is not None:
            where.append(h.provider_id == provider_id)
        return int(self.conn.execute(select(func.count()).where(*where)).scalar_one())

    def standard_counts(self, step_id: str, within: float) -> tuple[int, int]:
        c = hf.c
        row = self.conn.execute(select(
            func.count(), func.sum(case((c.lead <= within, 1), else_=0))
        ).where(c.done == 1, c.step_id == step_id)).one()
        return int(row[0]), int(row[1] or 0)


DURATIONS = ("lead", "waiting", "worked", "gap")


def _assemble(sql: _Sql, definition_id: str | None, provider_id: str | None, span: Period,
              now: datetime) -> Report:
    everything = literal("all")
    overall_rows = sql.measures(everything)
    step_rows = sql.measures(hf.c.step_id)
    final_rows = sql.measures(hf.c.provider_id)
    held = sql.provider_measures()
    dists = {
        **sql.distributions(everything, DURATIONS),
        **{("step:" + k, m): d for (k, m), d in
           sql.distributions(hf.c.step_id, DURATIONS).items()},
        **{("provider:" + k, m): d for (k, m), d in
           sql.distributions(hf.c.provider_id, DURATIONS).items()},
    }
    overall = _measures("all", overall_rows.get("all"), dists, "all")
    steps = [_measures(k, row, dists, "step:" + k) for k, row in sorted(step_rows.items())]
    providers = [
        _provider(k, final_rows.get(k), held[k], dists)
        for k in sorted(held) if provider_id is None or k == provider_id
    ]
    return Report(
        definition_id=definition_id, provider_id=provider_id, since=span.since,
        until=span.until, generated_at=now,
        pathways=sql.pathway_lead(definition_id, span),
        overall=overall, steps=steps, providers=providers,
        bottlenecks=Bottlenecks(
            steps=rank_by_waiting({m.key: m.waiting_seconds for m in steps}),
            providers=rank_by_waiting({k: float(v["waiting_seconds"] or 0)
                                       for k, v in held.items()}),
        ),
        flow=_flow(sql, definition_id, provider_id, span, overall),
        spc=_spc(sql, span),
        standards=[
            attainment(s, *sql.standard_counts(s.step_id, s.within_seconds))
            for s in standards_for(definition_id) if definition_id is not None
        ],
    )


def _empty() -> dict[str, Any]:
    return {}


def _measures(key: str, row: dict[str, Any] | None, dists: dict[tuple[str, str], Distribution],
              dist_key: str) -> Measures:
    row = row or _empty()
    handovers = int(row.get("handovers") or 0)
    completed = int(row.get("completed") or 0)
    judged = int(row.get("judged") or 0)
    breached = int(row.get("breached") or 0)
    escalations = int(row.get("escalations") or 0)
    empty = Distribution(count=0)
    return Measures(
        key=key, handovers=handovers, completed=completed, open=int(row.get("open") or 0),
        lead=dists.get((dist_key, "lead"), empty),
        waiting=dists.get((dist_key, "waiting"), empty),
        working=dists.get((dist_key, "worked"), empty),
        gap=dists.get((dist_key, "gap"), empty),
        states=States(**{name: row.get(name) for name in (TRANSIT, QUEUED, WORKING, BLOCKED)}),
        flow_efficiency=flow_efficiency(float(row.get("sum_working") or 0),
                                        float(row.get("sum_lead") or 0)),
        waiting_seconds=float(row.get("waiting_seconds") or 0),
        sla_attained=int(row.get("attained") or 0), breached=breached,
        attainment=ratio(int(row.get("attained") or 0), completed),
        breach_rate=ratio(breached, judged),
        escalations=escalations, escalations_per_100=per_hundred(escalations, handovers),
        reassignments=int(row.get("reassignments") or 0),
        rejections=int(row.get("rejections") or 0),
        refused_deliveries=int(row.get("refused") or 0),
        first_time_right=ratio(int(row.get("right") or 0), completed),
    )


def _provider(key: str, final: dict[str, Any] | None, held: dict[str, Any],
              dists: dict[tuple[str, str], Distribution]) -> Measures:
    """Lead, SLA and completion figures of the handovers a provider ended up with; waiting,
    escalations, reassignments away, rejections, refusals and first-time-right of what it held."""
    base = _measures(key, final, dists, "provider:" + key)
    held_count = int(held["held"] or 0)
    escalations = int(held["escalations"] or 0)
    return base.model_copy(update={
        "waiting_seconds": float(held["waiting_seconds"] or 0),
        "escalations": escalations,
        "escalations_per_100": per_hundred(escalations, held_count),
        "reassignments": int(held["reassignments"] or 0),
        "rejections": int(held["rejections"] or 0),
        "refused_deliveries": int(held["refused"] or 0),
        "first_time_right": ratio(int(held["right"] or 0), int(held["delivered"] or 0)),
    })


def _flow(sql: _Sql, definition_id: str | None, provider_id: str | None, span: Period,
          overall: Measures) -> Flow:
    since = span.since.timestamp()
    days = max(1, int(-(-(span.cap - span.since).total_seconds() // DAY)))
    start, arrivals, departures = sql.daily(since)
    wip, points = start, []
    for day in range(days):
        wip += arrivals.get(day, 0) - departures.get(day, 0)
        label = (span.since + timedelta(days=day)).date().isoformat()
        points.append(WipPoint(day=label, wip=wip, arrivals=arrivals.get(day, 0),
                               completions=departures.get(day, 0)))
    arrived = sum(arrivals.values())
    mean_wip = sum(p.wip for p in points) / len(points) if points else 0.0
    return Flow(
        wip_now=sql.wip_now(definition_id, provider_id),
        wip=points,
        arrivals_per_day=arrived / span.days if span.days > 0 else None,
        completions_per_day=overall.completed / span.days if span.days > 0 else None,
        little=little_check(arrived, span.days, overall.lead.mean, mean_wip),
    )


def _spc(sql: _Sql, span: Period) -> Spc:
    first = span.since - timedelta(days=span.since.weekday())
    monday = first.replace(hour=0, minute=0, second=0, microsecond=0)
    weeks = [
        Weekly(week=(monday + timedelta(weeks=i)).date().isoformat(), completed=n,
               mean_lead=lead, breach_rate=rate)
        for i, n, lead, rate in sql.weekly(monday.timestamp())
    ]
    leads = [w for w in weeks if w.mean_lead is not None]
    rates = [w for w in weeks if w.breach_rate is not None]
    return Spc(
        weeks=weeks,
        lead_time=xmr([w.mean_lead for w in leads if w.mean_lead is not None],
                      [w.week for w in leads], Direction.DOWN),
        breach_rate=xmr([w.breach_rate for w in rates if w.breach_rate is not None],
                        [w.week for w in rates], Direction.DOWN),
    )


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("instants must be timezone-aware")
    return value.astimezone(UTC)


def iter_events(
    store: EventStore, definition_id: str | None = None, since: datetime | None = None,
    until: datetime | None = None, batch: int = 5000,
) -> Iterator[PathwayEvent]:
    """The event log in process-mining order (case, time, seq), streamed in batches."""
    e = event_rows.c
    where: list[Any] = []
    if definition_id is not None:
        where.append(e.definition_id == definition_id)
    if since is not None:
        where.append(e.at >= _aware(since))
    if until is not None:
        where.append(e.at < _aware(until))
    query = select(event_rows).where(*where).order_by(e.pathway_id, e.at, e.seq)
    with store.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(query)
        for row in result:
            yield PathwayEvent.model_validate(dict(row._mapping))
