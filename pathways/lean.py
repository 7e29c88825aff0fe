"""Lean measures of a pathway: where the time goes, how much of it is waiting, and first-time-right.

Most elapsed time in a care pathway is waiting, not work; these numbers make the waiting visible.
`pathway_metrics` measures one pathway; the helpers below combine measures across many.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from pathways.state import EscalationStatus, Handover, PathwayState, TaskStatus

Interval = tuple[datetime, datetime]


class PathwayMetrics(BaseModel):
    """Lean measures of one pathway, so far (active) or in total (finished)."""

    model_config = ConfigDict(frozen=True)

    lead_time: timedelta
    work_time: timedelta
    wait_time: timedelta
    flow_efficiency: float | None
    mean_handover_gap: timedelta | None
    max_handover_gap: timedelta | None
    completed_deliveries: int
    first_time_right: float | None
    refused_deliveries: int
    breaches: int
    open_escalations: int
    bottleneck_step: str | None


def work_interval(handover: Handover, now: datetime) -> Interval | None:
    """When the provider was working on it: started (or accepted) to completed, or to now."""
    if handover.status is TaskStatus.COMPLETED and handover.work_time is not None:
        assert handover.completed_at is not None
        return handover.completed_at - handover.work_time, handover.completed_at
    if handover.is_open and handover.started_at is not None:
        return handover.started_at, now
    return None


def waiting(handover: Handover, now: datetime) -> timedelta:
    """Time since it became ready that was not work: queueing, deciding, looking for a provider."""
    end = now if handover.is_unfinished else (handover.completed_at or handover.ended_at or now)
    interval = work_interval(handover, now)
    work = interval[1] - interval[0] if interval else timedelta(0)
    return max(end - handover.ready_at - work, timedelta(0))


def covered(intervals: Iterable[Interval]) -> timedelta:
    """Total length of the union of intervals (parallel work counts once)."""
    total, reach = timedelta(0), None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def pathway_metrics(state: PathwayState, now: datetime) -> PathwayMetrics:
    """Lead time is start to end (or now), holds included: the patient waits through them too."""
    end = state.ended_at or now
    handovers = sorted(state.handovers.values(), key=lambda h: h.id)
    lead = end - state.started_at
    work = covered(i for h in handovers if (i := work_interval(h, end)) is not None)
    gaps = [h.handover_gap for h in handovers]
    completed = [h for h in handovers if h.status is TaskStatus.COMPLETED]
    return PathwayMetrics(
        lead_time=lead,
        work_time=work,
        wait_time=lead - work,
        flow_efficiency=flow_efficiency(work, lead),
        mean_handover_gap=mean(gaps),
        max_handover_gap=max(gaps, default=None),
        completed_deliveries=len(completed),
        first_time_right=(
            sum(h.refused_deliveries == 0 for h in completed) / len(completed) if completed
            else None
        ),
        refused_deliveries=state.refused_deliveries,
        breaches=sum(int(h.accept_breached) + int(h.complete_breached) for h in handovers),
        open_escalations=sum(e.status is not EscalationStatus.RESOLVED for e in state.escalations),
        bottleneck_step=bottleneck(state, end),
    )


def bottleneck(state: PathwayState, now: datetime) -> str | None:
    """The step whose handovers waited longest in total (first in definition order on a tie)."""
    waits = {step.id: timedelta(0) for step in state.definition.steps}
    for handover in state.handovers.values():
        waits[handover.step_id] += waiting(handover, now)
    longest = max(waits.values(), default=timedelta(0))
    if longest <= timedelta(0):
        return None
    return next(step_id for step_id, wait in waits.items() if wait == longest)


def flow_efficiency(work: timedelta, lead: timedelta) -> float | None:
    """Working time as a share of lead time (often under 10% in healthcare); None before any."""
    return None if lead <= timedelta(0) else work / lead


def mean(values: Iterable[timedelta]) -> timedelta | None:
    items = list(values)
    return sum(items, timedelta(0)) / len(items) if items else None


def little_wip(arrivals_per_day: float, mean_lead_time: timedelta) -> float:
    """Little's law for a stable system: mean work in progress = arrival rate x mean lead time."""
    return arrivals_per_day * (mean_lead_time / timedelta(days=1))


def takt_time(available: timedelta, demand: int) -> timedelta:
    """Available time per unit of demand: the pace the pathway must keep to meet demand."""
    if demand <= 0:
        raise ValueError("demand must be positive")
    return available / demand
