"""The worklist's read queries: the event store's read model, one indexed read per page.

The worklist orders by urgency (breached first, then the soonest due), so a page limit never
hides the oldest overdue pathway; pathways with no open due time come last, in their own group.
Queue age is the time since the longest-waiting open handover became ready, not since the last
change. Free text matches ids, definitions, open steps and providers, and patients by name or
NHS number through the keyed blind index (no name or number is compared in plain text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from activities.store import (
    ESCALATION_KINDS,
    EventStore,
    event_rows,
    handover_rows,
    pathway_open,
    pathway_rows,
    patient_index,
)
from pathways.inbox import InboxItem, open_escalations

OPEN_TASKS = ("requested", "accepted", "in-progress", "on-hold")
RUNNING = ("active", "on-hold")
FINISHED = ("completed", "cancelled", "terminated", "failed")
"""Finished statuses; terminated and failed: Temporal closed the workflow outside the engine."""
QUEUES = {
    "open": "All open",
    "at-risk": "At risk",
    "breached": "Breached",
    "escalated": "Escalated",
    "on-hold": "On hold",
    "finished": "Finished",
}
SORTS = {
    "urgency": "Urgency",
    "due": "Next due",
    "age": "Queue age",
    "updated": "Last change",
    "definition": "Definition",
    "status": "Status",
}
SLA_STATES = ("breached", "at-risk", "on-track")
COLUMNS = {
    "definition": "Definition",
    "step": "Current step",
    "provider": "Provider",
    "due": "Next due",
    "age": "Queue age",
    "sla": "SLA",
    "status": "Status",
}
"""Columns a view can show (the patient column is always there)."""
PAGE_SIZE = 25


@dataclass(frozen=True)
class View:
    """One worklist view: everything in the URL, so a view can be bookmarked and shared."""

    queue: str = "open"
    definition: str = ""
    provider: str = ""
    step: str = ""
    sla: str = ""
    q: str = ""
    sort: str = "urgency"
    desc: bool = False
    page: int = 1
    columns: tuple[str, ...] = tuple(COLUMNS)

    @classmethod
    def parse(cls, params: Any) -> View:
        """From query parameters; unknown values fall back to the defaults."""

        def text(name: str) -> str:
            return str(params.get(name, "") or "").strip()[:200]

        page = text("page")
        queue = text("queue") if text("queue") in QUEUES else "open"
        default_sort = "updated" if queue == "finished" else "urgency"
        ticked = list(params.getlist("col")) if hasattr(params, "getlist") else []
        chosen = [c for c in [*text("cols").split(","), *ticked] if c in COLUMNS]
        return cls(
            queue=queue,
            definition=text("definition"),
            provider=text("provider"),
            step=text("step"),
            sla=text("sla") if text("sla") in SLA_STATES else "",
            q=text("q"),
            sort=text("sort") if text("sort") in SORTS else default_sort,
            desc=text("dir") == "desc",
            page=max(1, min(int(page), 100_000)) if page.isdigit() else 1,
            columns=tuple(dict.fromkeys(chosen)) if chosen else tuple(COLUMNS),
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """Query parameters of this view (with changes), defaults left out."""
        values = {
            "queue": self.queue,
            "definition": self.definition,
            "provider": self.provider,
            "step": self.step,
            "sla": self.sla,
            "q": self.q,
            "sort": self.sort,
            "dir": "desc" if self.desc else "",
            "page": str(self.page),
            "cols": "" if self.columns == tuple(COLUMNS) else ",".join(self.columns),
        }
        values.update({k: str(v) for k, v in changes.items()})
        default_sort = "updated" if values["queue"] == "finished" else "urgency"
        defaults = {"queue": "open", "sort": default_sort, "page": "1", "dir": ""}
        return {k: v for k, v in values.items() if v and defaults.get(k) != v}


@dataclass
class Row:
    """One worklist line."""

    pathway_id: str
    definition_id: str
    definition_version: int
    status: str
    sla_state: str
    open_steps: list[str]
    open_providers: list[str]
    open_step_titles: list[str]
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    next_due: datetime | None
    ready_since: datetime | None
    escalations: int = 0
    patient_name: str | None = None
    accept_by: datetime | None = None

    def due_in(self, now: datetime) -> timedelta | None:
        return None if self.next_due is None else self.next_due - now

    def queue_age(self, now: datetime) -> timedelta | None:
        return None if self.ready_since is None else now - self.ready_since


@dataclass
class Counts:
    open: int = 0
    at_risk: int = 0
    breached: int = 0
    escalations: int = 0
    on_hold: int = 0


@dataclass
class Page:
    rows: list[Row]
    total: int
    view: View
    counts: Counts
    pages: int
    options: dict[str, list[str]] = field(default_factory=dict)


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _open_times() -> Any:
    """Per pathway with open handovers: the soonest patient due time, the earliest ready time,
    and the soonest deadline of all (a handover not yet accepted escalates at its accept-by
    time when that comes first): what urgency sorts by."""
    h = handover_rows.c
    accept_first = and_(
        h.status == "requested", h.accept_by.is_not(None), h.accept_by < h.complete_by
    )
    return (
        select(
            h.pathway_id.label("pid"),
            func.min(h.complete_by).label("next_due"),
            func.min(h.ready_at).label("ready_since"),
            func.min(case((accept_first, h.accept_by), else_=h.complete_by)).label("deadline"),
        )
        .where(h.status.in_(OPEN_TASKS))
        .group_by(h.pathway_id)
        .subquery("open_times")
    )


def _has_open(kind: str, condition: Any) -> Any:
    o = pathway_open.c
    return pathway_rows.c.pathway_id.in_(select(o.pathway_id).where(o.kind == kind, condition))


@dataclass(frozen=True)
class PatientSearch:
    """A search text's patient matches: blind-index terms (all must match, see
    pathways/patient_search.py) and the keyed NHS number hash of the pathway row, if the text
    is an NHS number. Computed by the caller, which holds the key."""

    terms: tuple[str, ...] = ()
    patient_key: str | None = None


def _patient_matches(search: PatientSearch) -> list[Any]:
    c, p = pathway_rows.c, patient_index.c
    found: list[Any] = []
    if search.terms:
        found.append(and_(*(
            c.pathway_id.in_(select(p.pathway_id).where(p.term == term)) for term in search.terms
        )))
    if search.patient_key is not None:
        found.append(c.patient_key == search.patient_key)
    return found


def _filters(view: View, escalated: Sequence[str],
             patient: PatientSearch | None = None) -> list[Any]:
    c = pathway_rows.c
    where: list[Any] = []
    if view.queue == "finished":
        where.append(c.status.in_(FINISHED))
    elif view.queue == "on-hold":
        where.append(c.status == "on-hold")
    else:
        where.append(c.status.in_(RUNNING))
    if view.queue in ("at-risk", "breached"):
        where.append(c.sla_state == view.queue)
    if view.queue == "escalated":
        where.append(c.pathway_id.in_(list(escalated)))
    if view.definition:
        where.append(c.definition_id == view.definition)
    if view.sla:
        where.append(c.sla_state == view.sla)
    if view.provider:
        where.append(_has_open("provider", pathway_open.c.value == view.provider))
    if view.step:
        where.append(_has_open("step", pathway_open.c.value == view.step))
    if view.q:
        text = view.q.lower()
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(
            or_(
                func.lower(c.pathway_id).like(pattern, escape="\\"),
                func.lower(c.definition_id).like(pattern, escape="\\"),
                _has_open("title", pathway_open.c.value.like(pattern, escape="\\")),
                _has_open("provider", pathway_open.c.value.like(pattern, escape="\\")),
                _has_open("step", pathway_open.c.value.like(pattern, escape="\\")),
                *_patient_matches(patient or PatientSearch()),
            )
        )
    return where


def _order(view: View, times: Any) -> list[Any]:
    c = pathway_rows.c
    due = times.c.next_due
    rank = case({"breached": 0, "at-risk": 1}, value=c.sla_state, else_=2)
    if view.sort == "urgency":
        deadline = times.c.deadline
        keys = [deadline.is_(None), rank, deadline]
    elif view.sort == "due":
        keys = [due.is_(None), due.desc() if view.desc else due]
        return [*keys, c.pathway_id]
    elif view.sort == "age":
        ready = times.c.ready_since
        keys = [ready.is_(None), ready.desc() if view.desc else ready]
        return [*keys, c.pathway_id]
    elif view.sort == "updated":
        keys = [c.updated_at if view.desc else c.updated_at.desc()]
        return [*keys, c.pathway_id]
    elif view.sort == "definition":
        keys = [c.definition_id.desc() if view.desc else c.definition_id, due.is_(None), due]
    else:
        keys = [c.status.desc() if view.desc else c.status, rank, due.is_(None), due]
    return [*keys, c.pathway_id]


def escalation_items(store: EventStore) -> list[InboxItem]:
    """Unresolved escalations of running pathways (the inbox), folded from their events."""
    return open_escalations(store.escalation_events(list(RUNNING)))


def escalated(store: EventStore) -> dict[str, int]:
    """Unresolved coordinator escalations per running pathway: the inbox's fold, on three
    columns and without building models (the worklist needs only which and how many)."""
    e, c = event_rows.c, pathway_rows.c
    running = select(c.pathway_id).where(c.status.in_(RUNNING))
    query_ = (
        select(
            e.pathway_id,
            e.kind,
            e.detail["escalation_id"].as_integer(),
            e.detail["level"].as_string(),
        )
        .where(e.kind.in_(ESCALATION_KINDS), e.pathway_id.in_(running))
        .order_by(e.pathway_id, e.seq)
    )
    levels: dict[tuple[str, int], str] = {}
    with store.engine.connect() as conn:
        for pathway_id, kind, number, level in conn.execute(query_):
            key = (pathway_id, int(number or 0))
            if kind == "escalated":
                levels[key] = str(level or "")
            elif kind == "escalation-resolved":
                levels.pop(key, None)
    found: dict[str, int] = {}
    for (pathway_id, _), level in levels.items():
        if level != "remind-provider":  # provider reminders are not coordinator work
            found[pathway_id] = found.get(pathway_id, 0) + 1
    return found


def query(
    store: EventStore,
    view: View,
    escalations: dict[str, int],
    only: Sequence[str] | None = None,
    page_size: int = PAGE_SIZE,
    patient: PatientSearch | None = None,
) -> tuple[list[Row], int]:
    """The rows of one page of a view (or just the pathways in `only`), and the total.
    `patient`: what the view's search text matches of patients (names, NHS number)."""
    times = _open_times()
    c = pathway_rows.c
    where = (
        [c.pathway_id.in_(list(only))]
        if only is not None
        else _filters(view, list(escalations), patient)
    )
    counted = select(func.count()).select_from(pathway_rows).where(and_(*where))
    base = (
        select(pathway_rows, times.c.next_due, times.c.ready_since)
        .select_from(pathway_rows.outerjoin(times, times.c.pid == c.pathway_id))
        .where(and_(*where))
    )
    with store.engine.connect() as conn:
        total = conn.execute(counted).scalar_one()
        offset = (view.page - 1) * page_size
        result = conn.execute(base.order_by(*_order(view, times)).limit(page_size).offset(offset))
        records = [dict(r._mapping) for r in result]
    rows = [
        Row(
            pathway_id=r["pathway_id"],
            definition_id=r["definition_id"],
            definition_version=r["definition_version"],
            status=r["status"],
            sla_state=r["sla_state"],
            open_steps=list(r["open_steps"] or []),
            open_providers=list(r["open_providers"] or []),
            open_step_titles=list(r["open_step_titles"] or []),
            started_at=_aware(r["started_at"]) or datetime.now(UTC),
            updated_at=_aware(r["updated_at"]) or datetime.now(UTC),
            ended_at=_aware(r["ended_at"]),
            next_due=_aware(r["next_due"]) if r["status"] == "active" else None,
            ready_since=_aware(r["ready_since"]),
            escalations=escalations.get(r["pathway_id"], 0),
        )
        for r in records
    ]
    return rows, int(total)


def task_facts(
    store: EventStore, ids: Sequence[str]
) -> dict[str, tuple[str | None, datetime | None]]:
    """Per pathway, from the rendered Tasks the read model keeps for providers: the patient's
    display name and the soonest accept-by time of a handover not yet accepted (the deadline
    that escalates first). One indexed read for a page; no Query to the engine."""
    if not ids or "task" not in handover_rows.c:
        return {}
    h = handover_rows.c
    task = h.task
    query_ = select(
        h.pathway_id,
        h.status,
        task[("for", "display")].as_string(),
        task[("restriction", "extension", 0, "valueDateTime")].as_string(),
    ).where(h.pathway_id.in_(list(ids)))
    found: dict[str, tuple[str | None, datetime | None]] = {}
    with store.engine.connect() as conn:
        for pathway_id, status, name, accept_by in conn.execute(query_):
            known_name, soonest = found.get(pathway_id, (None, None))
            due = _aware(accept_by) if accept_by and status == "requested" else None
            if due is not None and (soonest is None or due < soonest):
                soonest = due
            found[pathway_id] = (known_name or name, soonest)
    return found


def counts(store: EventStore, escalations: dict[str, int]) -> Counts:
    """The numbers at the top of the worklist, over running pathways."""
    c = pathway_rows.c
    query_ = (
        select(c.status, c.sla_state, func.count())
        .where(c.status.in_(RUNNING))
        .group_by(c.status, c.sla_state)
    )
    result = Counts(escalations=sum(escalations.values()))
    with store.engine.connect() as conn:
        for status, sla_state, number in conn.execute(query_):
            result.open += number
            if status == "on-hold":
                result.on_hold += number
            if sla_state == "at-risk":
                result.at_risk += number
            elif sla_state == "breached":
                result.breached += number
    return result


def options(store: EventStore) -> dict[str, list[str]]:
    """Values the filters offer: definitions, providers and steps seen in running pathways."""
    o = pathway_open.c
    with store.engine.connect() as conn:
        definitions = [
            r[0]
            for r in conn.execute(
                select(pathway_rows.c.definition_id)
                .distinct()
                .order_by(pathway_rows.c.definition_id)
            )
        ]
        found: dict[str, list[str]] = {"definition": definitions}
        for kind in ("provider", "step"):
            values = conn.execute(
                select(o.value).where(o.kind == kind).distinct().order_by(o.value).limit(500)
            )
            found[kind] = [r[0] for r in values]
    return found


def changed_since(
    store: EventStore, since: datetime, limit: int = 500
) -> list[tuple[str, datetime]]:
    """Pathways whose read-model row changed at or after `since` (what the live feed sends)."""
    c = pathway_rows.c
    query_ = (
        select(c.pathway_id, c.updated_at)
        .where(c.updated_at >= since)
        .order_by(c.updated_at, c.pathway_id)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [(r[0], _aware(r[1]) or since) for r in conn.execute(query_)]
