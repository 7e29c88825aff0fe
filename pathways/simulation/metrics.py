"""Measures of one replication, and their summary over replications with 95% confidence
intervals (Student's t over independent replications; paired for differences, since every
variant of a replication uses the same random streams).

Keys are `section|subject|measure`, e.g. `step|urgent-response|sla_pct`: flat, so averaging,
differences and JSON stay simple. Only pathways that arrive after the warm-up are measured;
time averages (work in progress, queues, utilisation) cover the warm-up's end to the horizon.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pathways.engine import PathwayRun
from pathways.state import Handover, TaskStatus

if TYPE_CHECKING:
    from pathways.simulation.providers import Desk, Job
    from pathways.simulation.scenario import Variant

HOUR = 3600.0

_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
         16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074,
         23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045,
         30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t_quantile(df: int) -> float:
    """Two-sided 95% Student's t quantile (table; the largest tabled df below, conservative)."""
    if df in _T975:
        return _T975[df]
    below = [d for d in _T975 if d < df]
    return _T975[max(below)] if df <= 120 else 1.960


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    data = sorted(values)
    if not data:
        return math.nan
    position = (len(data) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


@dataclass(frozen=True)
class Estimate:
    """Mean over replications with the half-width of its 95% confidence interval."""

    mean: float
    half_width: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def as_dict(self) -> dict[str, float | int | None]:
        return {"mean": _round(self.mean), "low": _round(self.low), "high": _round(self.high),
                "n": self.n}


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def estimate(values: Sequence[float]) -> Estimate:
    data = [v for v in values if not math.isnan(v)]
    if not data:
        return Estimate(math.nan, None, 0)
    mean = sum(data) / len(data)
    if len(data) < 2:
        return Estimate(mean, None, len(data))
    variance = sum((v - mean) ** 2 for v in data) / (len(data) - 1)
    return Estimate(mean, t_quantile(len(data) - 1) * math.sqrt(variance / len(data)), len(data))


@dataclass
class ReplicationResult:
    """What one replication measured: scalar measures, daily series, and (on request) the
    lead and waiting times themselves (hours) for distribution comparisons."""

    scalars: dict[str, float]
    series: dict[str, list[float]] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class _Step:
    handovers: int = 0
    on_time: int = 0
    breached: int = 0
    accept_breached: int = 0
    escalations: int = 0
    coordinator_escalations: int = 0
    reassignments: int = 0
    refused: int = 0
    unfinished: int = 0
    lead: list[float] = field(default_factory=list)
    wait: list[float] = field(default_factory=list)
    queue: list[float] = field(default_factory=list)


class Collector:
    """Accumulates one replication's measures as the loop runs."""

    def __init__(self, variant: Variant, desks: Mapping[str, Desk]) -> None:
        self.variant = variant
        self.desks = desks
        self.steps: dict[str, _Step] = {s.id: _Step() for s in variant.definition.steps}
        self.standards = {s.step: s for s in variant.standards}
        self.within = {s.name: s.within.total_seconds() / HOUR for s in variant.standards}
        self.started = self.completed = self.open_at_end = 0
        self.pathway_lead: list[float] = []
        self.refusals: dict[str, int] = defaultdict(int)
        self.coordinator_reassignments = 0
        self.daily: dict[str, list[float]] = defaultdict(list)

    # --- events from the loop -----------------------------------------------------------
    def arrived(self, measured: bool) -> None:
        self.started += measured

    def picked(self, job: Job, t: float) -> None:
        if job.measured:
            self.steps[job.step_id].queue.append((t - job.offered) / HOUR)

    def refusal(self, kind: str) -> None:
        self.refusals[kind] += 1

    def coordinator_reassigned(self, measured: bool) -> None:
        self.coordinator_reassignments += measured

    def finished(self, run: PathwayRun, measured: bool) -> None:
        if not measured:
            return
        state = run.state
        self.completed += 1
        if state.ended_at is not None:
            self.pathway_lead.append((state.ended_at - state.started_at).total_seconds() / HOUR)
        self._handovers(run)

    def unfinished(self, run: PathwayRun, measured: bool) -> None:
        """Still open when the drain ran out: its unfinished handovers count as breached."""
        if measured:
            self.open_at_end += 1
            self._handovers(run)

    def _handovers(self, run: PathwayRun) -> None:
        for handover in run.state.handovers.values():
            self._handover(self.steps[handover.step_id], handover)
        for escalation in run.state.escalations:
            step = self.steps[escalation.step_id]
            step.escalations += 1
            step.coordinator_escalations += escalation.is_coordinator_work

    def _handover(self, step: _Step, handover: Handover) -> None:
        step.handovers += 1
        step.reassignments += len(handover.attempts) - 1
        step.refused += handover.refused_deliveries
        step.accept_breached += handover.accept_breached
        done = handover.status is TaskStatus.COMPLETED and handover.completed_at is not None
        if not done:
            step.unfinished += 1
            step.breached += 1
            return
        step.breached += handover.complete_breached
        step.on_time += not handover.complete_breached
        lead, wait = handover.lead_time, handover.wait_time
        assert lead is not None and wait is not None
        step.lead.append(lead.total_seconds() / HOUR)
        step.wait.append(wait.total_seconds() / HOUR)

    def sample(self, desks: Mapping[str, Desk], open_pathways: int) -> None:
        self.daily["pathways|all|open"].append(float(open_pathways))
        for pid, desk in desks.items():
            self.daily[f"provider|{pid}|wip"].append(float(desk.queued + desk.busy))
            self.daily[f"provider|{pid}|queue"].append(float(desk.queued))

    # --- the result ---------------------------------------------------------------------
    def result(self, keep_samples: bool = False) -> ReplicationResult:
        s: dict[str, float] = {
            "pathways|all|started": self.started,
            "pathways|all|completed": self.completed,
            "pathways|all|unfinished": self.open_at_end,
            "pathways|all|lead_p50_h": percentile(self.pathway_lead, 0.5),
            "pathways|all|lead_p90_h": percentile(self.pathway_lead, 0.9),
            "pathways|all|open_mean": _mean(self.daily["pathways|all|open"]),
            "engine|all|refused_commands": sum(
                n for kind, n in self.refusals.items() if kind != "non-conforming"),
        }
        for step_id, step in self.steps.items():
            s.update(self._step_scalars(step_id, step))
        s.update(self._totals())
        s.update(self._standards())
        s.update(self._providers())
        samples: dict[str, list[float]] = {}
        if keep_samples:
            for step_id, step in self.steps.items():
                samples[f"step|{step_id}|lead_h"] = step.lead
                samples[f"step|{step_id}|wait_h"] = step.wait
        return ReplicationResult(s, dict(self.daily), samples)

    def _step_scalars(self, step_id: str, step: _Step) -> dict[str, float]:
        n = step.handovers
        key = f"step|{step_id}|"
        per_100 = (lambda x: 100.0 * x / n) if n else (lambda x: math.nan)
        return {
            key + "handovers": n,
            key + "per_100_pathways": 100.0 * n / self.started if self.started else math.nan,
            key + "sla_pct": per_100(step.on_time),
            key + "breaches_per_100": per_100(step.breached),
            key + "accept_breaches_per_100": per_100(step.accept_breached),
            key + "escalations_per_100": per_100(step.escalations),
            key + "coordinator_escalations_per_100": per_100(step.coordinator_escalations),
            key + "reassignments_per_100": per_100(step.reassignments),
            key + "refused_deliveries_per_100": per_100(step.refused),
            key + "lead_p50_h": percentile(step.lead, 0.5),
            key + "lead_p90_h": percentile(step.lead, 0.9),
            key + "wait_p50_h": percentile(step.wait, 0.5),
            key + "wait_p90_h": percentile(step.wait, 0.9),
            key + "queue_p50_h": percentile(step.queue, 0.5),
            key + "queue_p90_h": percentile(step.queue, 0.9),
        }

    def _totals(self) -> dict[str, float]:
        steps = self.steps.values()
        n = sum(st.handovers for st in steps)
        if not n:
            return {}
        return {
            "handovers|all|count": n,
            "handovers|all|sla_pct": 100.0 * sum(st.on_time for st in steps) / n,
            "handovers|all|breaches_per_100": 100.0 * sum(st.breached for st in steps) / n,
            "handovers|all|escalations_per_100": 100.0 * sum(st.escalations for st in steps) / n,
            "handovers|all|reassignments_per_100":
                100.0 * sum(st.reassignments for st in steps) / n,
        }

    def _standards(self) -> dict[str, float]:
        result: dict[str, float] = {}
        for standard in self.variant.standards:
            step = self.steps[standard.step]
            within = standard.within.total_seconds() / HOUR
            met = sum(1 for lead in step.lead if lead <= within)
            if step.handovers:
                result[f"standard|{standard.name}|attainment_pct"] = 100.0 * met / step.handovers
        return result

    def _providers(self) -> dict[str, float]:
        window = self.variant.horizon - self.variant.warm_up
        result: dict[str, float] = {}
        for pid, desk in self.desks.items():
            key = f"provider|{pid}|"
            result[key + "offers"] = desk.offers
            result[key + "wip_mean"] = (desk.queue_area + desk.busy_area) / window
            result[key + "queue_mean"] = desk.queue_area / window
            result[key + "queue_max"] = desk.queue_max
            result[key + "busy_mean"] = desk.busy_area / window
            if desk.behaviour.capacity:
                result[key + "utilisation_pct"] = (
                    100.0 * desk.busy_area / (desk.behaviour.capacity * window))
        return result


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
