"""Flow analytics computed in the event store's database (SQLite or PostgreSQL, SQLAlchemy Core).

One report is a handful of set-based queries, never a Python loop over events:

1. The flow summary (activities/flow_summary.py) is brought up to date: each handover's time in
   each state per provider, folded from the events with window functions, incrementally.
2. The period's handovers are copied into temporary tables, per provider and per handover, seen
   from the end of the period (an open state runs to it, later completions not yet happened).
3. GROUP BY queries over those tables for counts, sums and means, and one window query per
   grouping for nearest-rank percentiles.

The period's population: handovers that were ready before `until` and not finished before
`since` (everything in flow during the period). Lead times are those of the handovers completed
in the period; arrivals are handovers ready in it. Counts (escalations, reassignments,
rejections, refusals) and closed state times of a handover open at the end of a past period
include what happened to it after the period.
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
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from activities.flow_summary import (
    BLOCKED,
    COUNTS,
    QUEUED,
    STATES,
    TRANSIT,
    WORKING,
    epoch,
    flow_rows,
    refresh,
)
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
from pathways.events import PathwayEvent

DAY, WEEK = 86400.0, 7 * 86400.0
DEFAULT_PERIOD = timedelta(weeks=13)
"""A quarter, when the report is given no `since`."""

_temp = MetaData()
hp = Table(
    "analytics_hp", _temp,
    Column("pathway_id", String), Column("handover_id", String), Column("provider_id", String),
    *(Column(name, Float) for name in (TRANSIT, QUEUED, WORKING, BLOCKED)),
    Column("completed_at", Float), Column("ended_at", Float), Column("gap", Float),
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
    refresh(store)
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
        return epoch(self.conn, column)

    def build(self, definition_id: str | None, provider_id: str | None, span: Period) -> None:
        hp.create(self.conn)
        hf.create(self.conn)
        self.cap = span.cap.timestamp()
        self.since = span.since.timestamp()
        cohort = self._cohort(definition_id, provider_id, span)
        self._load(cohort, span)
        self._handovers(cohort)

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

    def _load(self, cohort: Any, span: Period) -> None:
        """The summary rows of the period's handovers, seen from the end of the period: an open
        state runs to it; a completion or an end after it has not happened yet."""
        f = flow_rows.c
        until = span.until.timestamp()

        def state(name: str) -> Any:
            running = and_(f.open_state == name, f.open_since < self.cap)
            return f[name] + case((running, self.cap - f.open_since), else_=0.0)

        def before_end(column: Any) -> Any:
            return case((column < until, column))

        query = select(
            f.pathway_id, f.handover_id, f.provider_id, *(state(name) for name in STATES),
            before_end(f.completed_at), before_end(f.ended_at), f.gap,
            *(f[name] for name in COUNTS),
        ).select_from(flow_rows.join(cohort, and_(cohort.c.pathway_id == f.pathway_id,
                                                  cohort.c.handover_id == f.handover_id)))
        columns = ["pathway_id", "handover_id", "provider_id", *STATES, "completed_at",
                   "ended_at", "gap", *COUNTS]
        self.conn.execute(insert(hp).from_select(columns, query))

    def _handovers(self, cohort: Any) -> None:
        p = select(
            hp.c.pathway_id, hp.c.handover_id,
            *(func.sum(hp.c[name]).label(name) for name in (TRANSIT, QUEUED, WORKING, BLOCKED)),
            func.max(hp.c.completed_at).label("completed_at"),
            func.max(hp.c.ended_at).label("ended_at"), func.max(hp.c.gap).label("gap"),
            *(func.sum(hp.c[name]).label(name)
              for name in ("rejections", "reassigned", "refused", "escalations")),
        ).group_by(hp.c.pathway_id, hp.c.handover_id).subquery("per_handover")
        ready, due = self.epoch(cohort.c.ready_at), self.epoch(cohort.c.complete_by)
        done = and_(p.c.completed_at.is_not(None), p.c.completed_at >= self.since)
        lead = case((done, p.c.completed_at - ready))
        breached = case(
            (done, case((p.c.completed_at > due, 1), else_=0)),
            (and_(p.c.ended_at.is_(None), due < self.cap), 1),
            else_=0,
        )
        query = select(
            cohort.c.pathway_id, cohort.c.handover_id, cohort.c.step_id, cohort.c.provider_id,
            ready, due, p.c.completed_at, p.c.ended_at, p.c.gap,
            *(p.c[name] for name in (TRANSIT, QUEUED, WORKING, BLOCKED)),
            lead, case((done, p.c[TRANSIT] + p.c[QUEUED] + p.c[BLOCKED])),
            case((done, p.c[WORKING])), case((done, 1), else_=0), breached,
            *(p.c[name] for name in ("rejections", "reassigned", "refused", "escalations")),
        ).select_from(
            cohort.join(p, and_(p.c.pathway_id == cohort.c.pathway_id,
                                p.c.handover_id == cohort.c.handover_id))
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
