"""Flow analytics computed in the event store's database (SQLite or PostgreSQL, SQLAlchemy Core).

A report is a handful of set-based queries, never a Python loop over events or handovers:

1. The flow summary (activities/flow_summary.py) is brought up to date: each handover's time in
   each state, per provider and per handover, folded from the events with window functions,
   incrementally (only pathways with new events).
2. One GROUP BY (step, provider) over the period's handovers gives every count, sum and mean;
   overall, per-step and per-provider figures are sums of those few rows.
3. Percentiles from one histogram per duration, GROUP BY (step, provider, bucket): the
   nearest-rank bucket, reported as the largest value in it. Buckets are a minute wide under
   2 hours, 10 minutes under a day, an hour under 30 days, a day beyond: exact when a bucket
   holds one value, never off by more than its width.
4. Provider attribution (time each provider held a handover waiting), daily arrivals and
   departures (WIP), weekly lead time and breach rate (SPC): one GROUP BY each.

The period's population: handovers ready before `until` and not finished before `since`
(everything in flow during the period). Lead times are those of the handovers completed in the
period; arrivals are handovers ready in it; a handover still open at the end of the period (or
finished after it) counts as open, its current state running to the end of the period (or now).
Counts and closed state times of a handover open at the end of a past period include what
happened to it after the period.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, and_, case, cast, func, literal_column, or_, select
from sqlalchemy.engine import Connection

from activities.flow_summary import epoch, folded_count, refresh
from activities.flow_tables import BLOCKED, QUEUED, STATES, TRANSIT, flow_rows, summary_rows
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
from pathways.analytics.standards import Standard, attainment, standards_for
from pathways.events import PathwayEvent

DAY, WEEK = 86400.0, 7 * 86400.0
DEFAULT_PERIOD = timedelta(weeks=13)
"""A quarter, when the report is given no `since`."""
LONGEST_PERIOD = timedelta(days=5 * 366)
OPEN_STATUSES = ("requested", "accepted", "in-progress", "on-hold")
DURATIONS = ("lead", "waiting", "worked", "gap")
WAITING_STATES = (TRANSIT, QUEUED, BLOCKED)


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime
    cap: datetime  # min(now, until): open states run to here

    @property
    def days(self) -> float:
        return (self.cap - self.since).total_seconds() / DAY


def period(since: datetime | None, until: datetime | None, now: datetime) -> Period:
    """[since, until) in UTC; until defaults to now and since to a quarter before until. Bounded
    (years 1900-2200, at most LONGEST_PERIOD) so a report is never asked for millennia of days."""
    end = _aware(until) if until is not None else now
    for value, name in ((since, "since"), (end, "until")):
        if value is not None and not 1900 <= value.year <= 2200:
            raise ValueError(f"{name} must be between the years 1900 and 2200")
    start = _aware(since) if since is not None else end - DEFAULT_PERIOD
    if start >= end:
        raise ValueError("since must be before until")
    if end - start > LONGEST_PERIOD:
        raise ValueError("a report covers at most 5 years")
    return Period(start, end, max(start, min(now, end)))


def flow_report(
    store: EventStore,
    definition_id: str | None = None,
    provider_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    cache: ReportCache | None = None,
) -> Report:
    """The lean flow report of one definition (or all) over a period, from the event store.

    The summary is refreshed once (one count of the log); a report `cache` (by default the
    process's one, CACHE) already holds for these parameters is served instead of built."""
    reports = CACHE if cache is None else cache
    moment = _aware(now if now is not None else reports.clock())
    span = period(since, until, moment)
    settled = until is not None and span.until <= moment
    refresh(store)
    with store.engine.connect() as conn:
        folded = folded_count(conn)
        key = (store.engine.url.render_as_string(hide_password=True), definition_id,
               provider_id, span.since if since is not None else None, until and span.until)
        cached = reports.get(key, folded, settled, moment)
        if cached is not None:
            return cached
        report = _Report(conn, definition_id, provider_id, span).build(moment)
    reports.put(key, _Cached(folded, settled, moment, report))
    return report


@dataclass(frozen=True)
class _Cached:
    folded: int | None  # None: built while a fold was under way, never served again
    settled: bool  # the period had ended when it was built
    built: datetime
    report: Report


class ReportCache:
    """Recent reports by (store, filters, period), the one cache of the API, console and CLI.

    A report is served again only while the flow summary has folded as many events as when it
    was built: events are append-only and every read-model change is written with its events,
    so an unchanged count means unchanged figures. A past period's report (one whose `until`
    had passed when it was built) is then served for as long, with a new `generated_at`. A
    period ending now (or later) moves its open states' end with the clock, so its report is
    served as built (its `generated_at` says when) for at most `max_age`, then built again:
    the console asks for the same report several times per page. At most `size` reports are
    kept, the least recently used going first. `clock` is the moment of a report not given
    one (tests move it on instead of sleeping)."""

    def __init__(self, size: int = 64, max_age: timedelta = timedelta(seconds=30),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.size, self.max_age, self.clock = size, max_age, clock
        self._lock = threading.Lock()
        self._reports: OrderedDict[tuple[Any, ...], _Cached] = OrderedDict()

    def __len__(self) -> int:
        return len(self._reports)

    def get(self, key: tuple[Any, ...], folded: int | None, settled: bool,
            moment: datetime) -> Report | None:
        """The report kept for `key` if it may be served at `moment`, else None."""
        with self._lock:
            hit = self._reports.get(key)
            if hit is not None:
                self._reports.move_to_end(key)
        if hit is None or hit.folded is None or hit.folded != folded or hit.settled != settled:
            return None
        if settled:
            return hit.report.model_copy(update={"generated_at": moment})
        return hit.report if timedelta(0) <= moment - hit.built < self.max_age else None

    def put(self, key: tuple[Any, ...], entry: _Cached) -> None:
        if entry.folded is None:
            return
        with self._lock:
            self._reports[key] = entry
            self._reports.move_to_end(key)
            while len(self._reports) > self.size:
                self._reports.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._reports.clear()


CACHE = ReportCache()
"""The process's report cache: /api/analytics, the console's pages and the CLI share it."""


class _Report:
    """The report's queries over the flow summary, for one period."""

    def __init__(self, conn: Connection, definition_id: str | None, provider_id: str | None,
                 span: Period) -> None:
        self.conn, self.definition_id, self.provider_id, self.span = (
            conn, definition_id, provider_id, span)
        self.since, self.until, self.cap = (
            span.since.timestamp(), span.until.timestamp(), span.cap.timestamp())
        self.standards = standards_for(definition_id) if definition_id is not None else []
        s = summary_rows.c
        self.where: list[Any] = [s.ready < self.until,
                                 or_(s.ended_at.is_(None), s.ended_at >= self.since)]
        if definition_id is not None:
            self.where.append(s.definition_id == definition_id)
        if provider_id is not None:
            self.where.append(s.provider_id == provider_id)
        self.done = and_(s.completed_at >= self.since, s.completed_at < self.until)
        # The same test the planner cannot answer from the completion-time index (SQLite reads
        # `+ 0` as "not indexable"): a histogram then reads its own covering bucket index in
        # GROUP BY order instead of a range that costs a row lookup per handover.
        completed = s.completed_at + 0 if conn.dialect.name == "sqlite" else s.completed_at
        self.done_by_scan = and_(completed >= self.since, completed < self.until)
        self.open = or_(s.ended_at.is_(None), s.ended_at >= self.until)
        self.values: dict[str, Any] = {
            "lead": case((self.done, s.lead)),
            "waiting": case((self.done, s.waiting)),
            "worked": case((self.done, s.worked)),
            "gap": s.gap,
        }

    def waiting(self, table: Any) -> Any:
        """Time in the waiting states (in transit, queued, blocked), an open one running to the
        end of the period: one CASE per row (a handover is in one state at a time)."""
        c = table.c
        running = and_(c.open_state.in_(WAITING_STATES), c.open_since < self.cap)
        return (c[TRANSIT] + c[QUEUED] + c[BLOCKED]
                + case((running, self.cap - c.open_since), else_=0.0))

    def build(self, now: datetime) -> Report:
        groups = self.groups()
        histograms = {name: self.histogram(name) for name in DURATIONS}
        overall = _measures("all", _sum(groups.values()), _percentiles(histograms, lambda k: True))
        steps = _grouped(groups, histograms, 0)
        finals = {m.key: m for m in _grouped(groups, histograms, 1)}
        held = self.held()
        providers = [
            _provider(key, finals.get(key), held[key]) for key in sorted(held)
            if self.provider_id is None or key == self.provider_id
        ]
        totals = _sum(groups.values())
        return Report(
            definition_id=self.definition_id, provider_id=self.provider_id,
            since=self.span.since, until=self.span.until, generated_at=now,
            pathways=self.pathways(), overall=overall, steps=steps, providers=providers,
            bottlenecks=Bottlenecks(
                steps=rank_by_waiting({m.key: m.waiting_seconds for m in steps}),
                providers=rank_by_waiting({k: float(v["waiting_seconds"] or 0)
                                           for k, v in held.items()}),
                critical_path=rank_by_waiting({
                    key: sum(float(row["critical_waiting"] or 0)
                             for cell, row in groups.items() if cell[0] == key)
                    for key in {cell[0] for cell in groups}}),
            ),
            flow=self.flow(overall),
            spc=self.spc(),
            standards=[
                attainment(standard, int(totals.get(f"std_{i}_n", 0)),
                           int(totals.get(f"std_{i}_within", 0)))
                for i, standard in enumerate(self.standards)
            ],
        )

    # --- queries ------------------------------------------------------------------------------
    def groups(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every count and sum per (step, final provider)."""
        s = summary_rows.c
        done = case((self.done, 1), else_=0)
        is_open = case((self.open, 1), else_=0)
        waiting_all = self.waiting(summary_rows)
        breached = case((self.done, case((s.completed_at > s.due, 1), else_=0)),
                        (and_(self.open, s.due < self.cap), 1), else_=0)
        columns: list[Any] = [
            func.count().label("handovers"), func.sum(done).label("completed"),
            func.sum(is_open).label("open"),
            *(func.sum(case((self.done, s[name]), else_=0.0)).label(name) for name in STATES),
            *(func.sum(func.coalesce(v, 0.0)).label(f"sum_{k}") for k, v in self.values.items()),
            func.sum(case((s.gap.is_not(None), 1), else_=0)).label("n_gap"),
            func.sum(waiting_all).label("waiting_seconds"),
            func.sum(case((s.critical == 1, waiting_all), else_=0.0)).label("critical_waiting"),
            func.sum(case((and_(self.done, s.completed_at <= s.due), 1), else_=0)).label(
                "attained"),
            func.sum(breached).label("breached"),
            func.sum(case((or_(self.done, self.open), 1), else_=0)).label("judged"),
            func.sum(s.escalations).label("escalations"),
            func.sum(s.reassigned).label("reassignments"),
            func.sum(s.rejections).label("rejections"), func.sum(s.refused).label("refused"),
            func.sum(case((and_(self.done, s.refused == 0), 1), else_=0)).label("right"),
        ]
        for i, standard in enumerate(self.standards):
            columns += self._standard(i, standard)
        query = select(s.step_id, s.provider_id, *columns).where(*self.where).group_by(
            s.step_id, s.provider_id)
        return {(row[0], row[1]): dict(row._mapping) for row in self.conn.execute(query)}

    def _standard(self, i: int, standard: Standard) -> list[Any]:
        s = summary_rows.c
        mine = and_(self.done, s.step_id == standard.step_id)
        within = and_(mine, s.completed_at - s.ready <= standard.within_seconds)
        return [func.sum(case((mine, 1), else_=0)).label(f"std_{i}_n"),
                func.sum(case((within, 1), else_=0)).label(f"std_{i}_within")]

    def histogram(self, name: str) -> list[tuple[str, str, int, int, float, float]]:
        """(step, provider, bucket, count, sum, max) of one duration over the period (buckets
        folded with the summary: see flow_summary.bucket), read from its covering index in
        GROUP BY order (`done_by_scan` keeps SQLite's planner off the completion-time range,
        which would cost a row lookup per handover and a sort)."""
        s = summary_rows.c
        value, bucket = s[name], s[f"{name}_bucket"]
        only = [value.is_not(None)] if name == "gap" else [self.done_by_scan]
        query = select(s.step_id, s.provider_id, bucket, func.count(), func.sum(value),
                       func.max(value)).where(*self.where, *only).group_by(
            s.step_id, s.provider_id, bucket)
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in self.conn.execute(query)]

    def _floor(self, value: Any) -> Any:
        if self.conn.dialect.name == "postgresql":
            return cast(func.floor(value), Integer)
        return cast(value, Integer)  # SQLite truncates; the values here are not negative

    def held(self) -> dict[str, dict[str, Any]]:
        """Per provider, what it did while it held handovers (a handover reassigned from A to B
        counts its waiting with A for A, with B for B): the scorecard's counts."""
        f = flow_rows.c
        where: list[Any] = [f.ready < self.until,
                            or_(f.handover_ended.is_(None), f.handover_ended >= self.since)]
        if self.definition_id is not None:
            where.append(f.definition_id == self.definition_id)
        if self.provider_id is not None:
            where.append(f.final_provider == self.provider_id)
        delivered = and_(f.completed_at >= self.since, f.completed_at < self.until)
        waiting = self.waiting(flow_rows)
        query = select(
            f.provider_id, func.sum(waiting).label("waiting_seconds"),
            func.sum(f.escalations).label("escalations"),
            func.sum(f.reassigned).label("reassignments"),
            func.sum(f.rejections).label("rejections"), func.sum(f.refused).label("refused"),
            func.sum(case((and_(delivered, f.refused == 0), 1), else_=0)).label("right"),
            func.sum(case((delivered, 1), else_=0)).label("delivered"),
            func.count().label("held"),
        ).where(*where).group_by(f.provider_id)
        return {row[0]: dict(row._mapping) for row in self.conn.execute(query)}

    def pathways(self) -> PathwayMeasures:
        p = pathway_rows.c
        where = [] if self.definition_id is None else [p.definition_id == self.definition_id]
        span = self.span
        started = self.conn.execute(select(func.count()).where(
            *where, p.started_at >= span.since, p.started_at < span.until)).scalar_one()
        lead = epoch(self.conn, p.ended_at) - epoch(self.conn, p.started_at)
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

    def per_day(self, column: Any) -> dict[int, int]:
        day = self._floor((column - self.since) / DAY).label("day")
        query = select(day, func.count()).where(
            *self.where, column >= self.since, column < self.cap).group_by(
            literal_column("day"))
        return {int(r[0]): r[1] for r in self.conn.execute(query)}

    def flow(self, overall: Measures) -> Flow:
        s = summary_rows.c
        span = self.span
        start = self.conn.execute(select(func.count()).where(
            *self.where, s.ready < self.since)).scalar_one()
        arrivals, departures = self.per_day(s.ready), self.per_day(s.ended_at)
        days = max(1, int(-(-(span.cap - span.since).total_seconds() // DAY)))
        wip, points = start, []
        for day in range(days):  # days of the period, not rows
            wip += arrivals.get(day, 0) - departures.get(day, 0)
            points.append(WipPoint(day=(span.since + timedelta(days=day)).date().isoformat(),
                                   wip=wip, arrivals=arrivals.get(day, 0),
                                   completions=departures.get(day, 0)))
        arrived = sum(arrivals.values())
        mean_wip = sum(p.wip for p in points) / len(points)
        per_day = (lambda n: n / span.days) if span.days > 0 else (lambda n: None)
        return Flow(
            wip_now=self.wip_now(), wip=points, arrivals_per_day=per_day(arrived),
            completions_per_day=per_day(overall.completed),
            little=little_check(arrived, span.days, overall.lead.mean, mean_wip),
        )

    def wip_now(self) -> int:
        h = handover_rows.c
        where: list[Any] = [h.status.in_(OPEN_STATUSES)]
        if self.definition_id is not None:
            where.append(h.definition_id == self.definition_id)
        if self.provider_id is not None:
            where.append(h.provider_id == self.provider_id)
        return int(self.conn.execute(select(func.count()).where(*where)).scalar_one())

    def spc(self) -> Spc:
        s = summary_rows.c
        since = self.span.since
        monday = (since - timedelta(days=since.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0)
        week = self._floor((s.completed_at - monday.timestamp()) / WEEK).label("week")
        query = select(week, func.count(), func.avg(s.lead),
                       func.avg(cast(s.late, Float))).where(*self.where, self.done).group_by(
            literal_column("week"))
        # The few weeks are put in order here: an ORDER BY makes PostgreSQL sort every row
        # (on disk past work_mem) where a hash of a dozen weeks will do.
        weeks = [
            Weekly(week=(monday + timedelta(weeks=int(r[0]))).date().isoformat(), completed=r[1],
                   mean_lead=r[2], breach_rate=r[3])
            for r in sorted(self.conn.execute(query), key=lambda r: int(r[0]))
        ]
        labels = [w.week for w in weeks]
        return Spc(
            weeks=weeks,
            lead_time=xmr([w.mean_lead or 0.0 for w in weeks], labels, Direction.DOWN),
            breach_rate=xmr([w.breach_rate or 0.0 for w in weeks], labels, Direction.DOWN),
        )


# --- assembling -------------------------------------------------------------------------------
Histogram = list[tuple[str, str, int, int, float, float]]


def _sum(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Sums of the few (step, provider) rows into one group's figures."""
    total: dict[str, float] = defaultdict(float)
    for row in rows:
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[key] += value
    return total


def _percentiles(histograms: Mapping[str, Histogram], keep: Any) -> dict[str, Distribution]:
    """Nearest-rank p50/p90 (the largest value in the rank's bucket), mean and max of each
    duration over the (step, provider) cells `keep` accepts."""
    result = {}
    for name, rows in histograms.items():
        buckets: dict[int, list[float]] = {}
        for step, provider, bucket, count, total, largest in rows:
            if keep((step, provider)):
                cell = buckets.setdefault(bucket, [0, 0.0, float("-inf")])
                cell[0] += count
                cell[1] += total
                cell[2] = max(cell[2], largest)
        result[name] = _distribution(buckets)
    return result


def _distribution(buckets: Mapping[int, list[float]]) -> Distribution:
    n = int(sum(cell[0] for cell in buckets.values()))
    if n == 0:
        return Distribution(count=0)
    ordered = sorted(buckets.items())

    def rank(percent: int) -> float:
        seen = 0.0
        for _, (count, _total, largest) in ordered:
            seen += count
            if seen * 100 >= percent * n:
                return largest
        return ordered[-1][1][2]

    return Distribution(count=n, mean=sum(c[1] for c in buckets.values()) / n, p50=rank(50),
                        p90=rank(90), max=ordered[-1][1][2])


def _grouped(groups: Mapping[tuple[str, str], Mapping[str, Any]],
             histograms: Mapping[str, Histogram], index: int) -> list[Measures]:
    keys = sorted({key[index] for key in groups})
    return [
        _measures(key, _sum(row for cell, row in groups.items() if cell[index] == key),
                  _percentiles(histograms, lambda cell, key=key: cell[index] == key))
        for key in keys
    ]


def _measures(key: str, row: Mapping[str, float], dists: Mapping[str, Distribution]) -> Measures:
    def n(name: str) -> int:
        return int(row.get(name, 0))

    completed, handovers = n("completed"), n("handovers")
    states = {name: (row.get(name, 0.0) / completed if completed else None) for name in STATES}
    return Measures(
        key=key, handovers=handovers, completed=completed, open=n("open"),
        lead=dists["lead"], waiting=dists["waiting"], working=dists["worked"], gap=dists["gap"],
        states=States(**states),
        flow_efficiency=flow_efficiency(row.get("sum_worked", 0.0), row.get("sum_lead", 0.0)),
        waiting_seconds=float(row.get("waiting_seconds", 0.0)),
        sla_attained=n("attained"), breached=n("breached"),
        attainment=ratio(n("attained"), completed), breach_rate=ratio(n("breached"), n("judged")),
        escalations=n("escalations"), escalations_per_100=per_hundred(n("escalations"), handovers),
        reassignments=n("reassignments"), rejections=n("rejections"),
        refused_deliveries=n("refused"), first_time_right=ratio(n("right"), completed),
    )


def _provider(key: str, final: Measures | None, held: Mapping[str, Any]) -> Measures:
    """Lead, SLA and completion figures of the handovers a provider ended up with; waiting,
    escalations, reassignments away, rejections, refusals and first-time-right of what it held."""
    empty = Distribution(count=0)
    base = final or _measures(key, {}, {name: empty for name in DURATIONS})
    escalations = int(held["escalations"] or 0)
    return base.model_copy(update={
        "waiting_seconds": float(held["waiting_seconds"] or 0),
        "escalations": escalations,
        "escalations_per_100": per_hundred(escalations, int(held["held"] or 0)),
        "reassignments": int(held["reassignments"] or 0),
        "rejections": int(held["rejections"] or 0),
        "refused_deliveries": int(held["refused"] or 0),
        "first_time_right": ratio(int(held["right"] or 0), int(held["delivered"] or 0)),
    })


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



