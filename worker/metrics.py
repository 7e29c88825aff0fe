"""Gauges for the people on call, derived from the event store's read model.

Counters in a worker's memory start again at zero when it restarts, and each worker only sees
its own share of the work; the read model holds the whole installation. So every worker
periodically reads a few aggregates (indexed GROUP BYs, cheap at 10,000 pathways) and sets them
as gauges on the SDK runtime's meter, exported on the same Prometheus endpoint as the SDK's
metrics. Several workers export the same values: alert on max() across instances, not sum().

Labels are ids only (definition, SLA state, status, provider, kind), never patient data.
A label set that no longer occurs is set to 0 (the exporter cannot remove it), so a stale
value never outlives the state it described.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, select
from temporalio.common import MetricMeter

from activities.store import (
    RUNNING_STATUSES,
    EventStore,
    event_rows,
    handover_rows,
    pathway_rows,
)
from pathways.events import EventKind
from pathways.inbox import open_escalations
from pathways.state import OPEN_STATUSES

log = structlog.get_logger("pathways.metrics")

EVERY = timedelta(seconds=15)
"""About a Prometheus scrape interval: fresh enough to page on, one cheap read per period."""

Labels = tuple[tuple[str, str], ...]
Values = dict[Labels, float]


@dataclass(frozen=True)
class GaugeSpec:
    name: str
    description: str
    unit: str | None = None


OPEN_PATHWAYS = GaugeSpec("pathways_open", "Running pathways by definition, status and SLA state")
OPEN_ESCALATIONS = GaugeSpec(
    "pathways_escalations_open", "Coordinator escalations raised and not resolved, by definition"
)
OLDEST_ESCALATION = GaugeSpec(
    "pathways_escalation_oldest_age_seconds",
    "Age of the oldest unresolved coordinator escalation (0: none)",
    "s",
)
HANDOVERS_WAITING = GaugeSpec(
    "pathways_handovers_waiting", "Open handovers held by each provider, by Task status"
)
NOTIFICATIONS_FAILED = GaugeSpec(
    "pathways_notifications_failed",
    "Webhook deliveries given up on running pathways (the provider was never told), by provider",
)
CLOSED_OUTSIDE = GaugeSpec(
    "pathways_closed_outside",
    "Pathways whose workflow Temporal terminated or failed before they finished, by definition",
)
ATTENTION_RECORDED = GaugeSpec(
    "pathways_attention_recorded",
    "Escalations, SLA breaches, refused and failed deliveries in the event log, by definition "
    "and kind: a running total from the store, so a worker restart does not reset it (delta())",
)
REFRESHED = GaugeSpec(
    "pathways_metrics_refreshed_timestamp_seconds",
    "Unix time of the last successful read of these gauges from the event store",
    "s",
)
ALL = (OPEN_PATHWAYS, OPEN_ESCALATIONS, OLDEST_ESCALATION, HANDOVERS_WAITING,
       NOTIFICATIONS_FAILED, CLOSED_OUTSIDE, ATTENTION_RECORDED, REFRESHED)

ATTENTION_KINDS = (EventKind.ESCALATED, EventKind.BREACHED, EventKind.REFUSED_DELIVERY,
                   EventKind.NOTIFICATION_FAILED)
"""What on-call counts over time (breach rate, failing providers). Counted from the event log
rather than in a worker's memory: a counter restarts at zero with its worker, misses what
happened while no worker was scraped, and counts twice what a killed worker's successor
redoes. The rate-only counters (events recorded, deliveries, store failures) stay counters."""
NAMES = tuple(spec.name for spec in ALL)


def _labels(**values: str) -> Labels:
    return tuple(sorted(values.items()))


def read_gauges(store: EventStore, now: datetime) -> dict[str, Values]:
    """Every gauge's current values, by label set, from the read model (blocking: a thread)."""
    p, h, e = pathway_rows.c, handover_rows.c, event_rows.c
    running = p.status.in_(RUNNING_STATUSES)
    values: dict[str, Values] = {spec.name: {} for spec in ALL}
    with store.engine.connect() as conn:
        query = select(p.definition_id, p.status, p.sla_state, func.count()).where(running)
        for definition, status, sla, count in conn.execute(
            query.group_by(p.definition_id, p.status, p.sla_state)
        ):
            labels = _labels(definition=definition, status=status, sla_state=sla)
            values[OPEN_PATHWAYS.name][labels] = count
        query = select(h.provider_id, h.status, func.count()).where(
            h.status.in_([s.value for s in OPEN_STATUSES]),
            h.pathway_id.in_(select(p.pathway_id).where(running)),
        )
        for provider, status, count in conn.execute(query.group_by(h.provider_id, h.status)):
            values[HANDOVERS_WAITING.name][_labels(provider=provider, status=status)] = count
        query = select(e.provider_id, func.count()).where(
            e.kind == EventKind.NOTIFICATION_FAILED.value,
            e.pathway_id.in_(select(p.pathway_id).where(running)),
        )
        for provider, count in conn.execute(query.group_by(e.provider_id)):
            values[NOTIFICATIONS_FAILED.name][_labels(provider=provider or "")] = count
        query = select(p.definition_id, p.status, func.count()).where(
            p.status.in_(["terminated", "failed"])
        )
        for definition, status, count in conn.execute(query.group_by(p.definition_id, p.status)):
            values[CLOSED_OUTSIDE.name][_labels(definition=definition, status=status)] = count
        query = select(e.definition_id, e.kind, func.count()).where(
            e.kind.in_([kind.value for kind in ATTENTION_KINDS])
        )
        for definition, kind, count in conn.execute(query.group_by(e.definition_id, e.kind)):
            values[ATTENTION_RECORDED.name][_labels(definition=definition, kind=kind)] = count
    _zero_attention(values)
    _zero_where_absent(values, NOTIFICATIONS_FAILED, "provider", values[HANDOVERS_WAITING.name])
    _zero_where_absent(values, CLOSED_OUTSIDE, "definition", values[OPEN_PATHWAYS.name],
                       status="terminated")
    escalations = open_escalations(store.escalation_events(RUNNING_STATUSES))
    by_definition: dict[str, int] = {}
    for item in escalations:
        by_definition[item.definition] = by_definition.get(item.definition, 0) + 1
    for definition, count in by_definition.items():
        values[OPEN_ESCALATIONS.name][_labels(definition=definition)] = count
    _zero_where_absent(values, OPEN_ESCALATIONS, "definition", values[OPEN_PATHWAYS.name])
    raised = [item.escalation.raised_at or item.escalation.at for item in escalations]
    age = max((now - min(raised)).total_seconds(), 0.0) if raised else 0.0
    values[OLDEST_ESCALATION.name][()] = age
    values[REFRESHED.name][()] = now.timestamp()
    return values


def _zero_attention(values: dict[str, Values]) -> None:
    """0 for each kind of each running definition not yet seen: the series exists before its
    first event, so delta() over it counts that first one."""
    recorded = values[ATTENTION_RECORDED.name]
    for labels in values[OPEN_PATHWAYS.name]:
        definition = dict(labels)["definition"]
        for kind in ATTENTION_KINDS:
            recorded.setdefault(_labels(definition=definition, kind=kind.value), 0)


def _zero_where_absent(
    values: dict[str, Values], spec: GaugeSpec, key: str, known: Values, **fixed: str
) -> None:
    """0 for each `key` (provider, definition) that `known` mentions and `spec` does not, so
    "none failing" is a series at 0 rather than no series (alerts and panels see it)."""
    present = {dict(labels).get(key) for labels in values[spec.name]}
    for labels in known:
        name = dict(labels).get(key)
        if name is not None and name not in present:
            values[spec.name][_labels(**{key: name}, **fixed)] = 0
            present.add(name)


@dataclass
class Gauges:
    """The gauges on one meter; remembers every label set ever set, to zero the vanished."""

    meter: MetricMeter
    _seen: dict[str, set[Labels]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._gauges = {
            spec.name: self.meter.create_gauge_float(spec.name, spec.description, spec.unit)
            for spec in ALL
        }

    def set(self, values: Mapping[str, Values]) -> None:
        for name, by_labels in values.items():
            seen = self._seen.setdefault(name, set())
            for labels in seen - by_labels.keys():
                self._gauges[name].set(0.0, dict(labels))
            for labels, value in by_labels.items():
                self._gauges[name].set(float(value), dict(labels))
            seen.update(by_labels)

    def names(self) -> Iterable[str]:
        return self._gauges.keys()


async def refresh_forever(meter: MetricMeter, store: EventStore, every: timedelta = EVERY) -> None:
    """Set the gauges now and every `every`; a failed read is logged and retried next time
    (the refreshed-timestamp gauge then ages, which an alert can watch)."""
    gauges = Gauges(meter)
    while True:
        try:
            values = await asyncio.to_thread(read_gauges, store, datetime.now(UTC))
            gauges.set(values)
        except Exception as error:  # the store down: the worker runs on, the gauges age
            log.warning("metrics refresh failed", error=type(error).__name__)
        await asyncio.sleep(every.total_seconds())
