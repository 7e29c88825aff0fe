"""Fitting a scenario from the event log, and validating the simulator against history.

`fit_scenario` reads what providers actually did (event kinds and times only; the log holds no
patient data): time to accept or reject from each dispatch, time to complete or fail from
acceptance, rejection, failure and refused-delivery rates, rework and coordinator times, and the
arrivals by weekday and hour. Times become empirical distributions (200 quantiles); an offer
taken away before the provider answered (ladder or coordinator reassignment) is a censored time,
handled with the Kaplan-Meier estimator so slow providers are not made to look fast.

The fitted times include the queueing seen in history, so fitted providers get unlimited
capacity: the fitted scenario reproduces history at its load; the observed peak concurrency is
reported to set a capacity for what-ifs.

`validate` fits on the pathways that started in the first part of a log, simulates the rest
and reports the Wasserstein (earth mover's) distance between simulated and observed lead-time
and waiting distributions per step, and the SLA attainment on both sides.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pathways.catalogue import Catalogue
from pathways.events import EventKind, PathwayEvent
from pathways.model import PathwayDefinition, format_duration
from pathways.simulation.distributions import Empirical, empirical
from pathways.simulation.loop import Replication
from pathways.simulation.metrics import HOUR, percentile
from pathways.simulation.scenario import Scenario, variants

QUANTILES = 200
MIN_SAMPLES = 5
"""Fewer observations than this keep the scenario's own behaviour for that provider."""

Sample = tuple[float, bool]
"""(seconds, observed): observed False is a censored time (the offer was taken away first)."""


def read_events(
    event_log: Callable[..., list[PathwayEvent]], since: datetime | None,
    until: datetime | None, definition_id: str,
) -> list[PathwayEvent]:
    """The events of one definition's pathways that started in [since, until), in order."""
    events = [e for e in event_log(since=since, limit=50_000_000)
              if e.definition_id == definition_id]
    started = {e.pathway_id for e in events if e.kind is EventKind.PATHWAY_STARTED
               and (until is None or e.at < until)}
    return sorted((e for e in events if e.pathway_id in started),
                  key=lambda e: (e.pathway_id, e.seq))


@dataclass
class _Provider:
    accept: dict[str, list[Sample]] = field(default_factory=lambda: defaultdict(list))
    complete: dict[str, list[Sample]] = field(default_factory=lambda: defaultdict(list))
    decisions: int = 0
    rejects: int = 0
    fails: int = 0
    completions: int = 0
    completed_steps: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused_attempts: int = 0
    rework: list[float] = field(default_factory=list)
    open_now: int = 0
    peak: int = 0


@dataclass
class _Attempt:
    provider: str
    step: str
    dispatched: datetime
    accepted: datetime | None = None
    first_delivery: datetime | None = None
    last_refused: datetime | None = None
    ended: datetime | None = None


@dataclass
class Observed:
    """What the log shows, folded per provider."""

    providers: dict[str, _Provider]
    starts: list[datetime]
    coordinator: list[float]


def observe(events: Iterable[PathwayEvent]) -> Observed:
    providers: dict[str, _Provider] = defaultdict(_Provider)
    attempts: dict[tuple[str, str], _Attempt] = {}
    starts: list[datetime] = []
    coordinator: list[float] = []
    for e in sorted(events, key=lambda e: (e.at, e.pathway_id, e.seq)):
        if e.kind is EventKind.PATHWAY_STARTED:
            starts.append(e.at)
            continue
        if e.handover_id is None:
            continue
        key = (e.pathway_id, e.handover_id)
        attempt = attempts.get(key)
        if e.kind is EventKind.DISPATCHED and e.provider_id:
            attempts[key] = _Attempt(e.provider_id, e.step_id or "", e.at)
            p = providers[e.provider_id]
            p.open_now += 1
            p.peak = max(p.peak, p.open_now)
        elif attempt is not None:
            _fold(providers[attempt.provider], attempt, e, coordinator)
    return Observed(dict(providers), starts, coordinator)


def _fold(p: _Provider, a: _Attempt, e: PathwayEvent, coordinator: list[float]) -> None:
    """One event of the current attempt at a handover."""

    def seconds(since: datetime) -> float:
        return (e.at - since).total_seconds()

    if e.kind in (EventKind.ACCEPTED, EventKind.REJECTED) and a.accepted is None:
        p.accept[a.step].append((seconds(a.dispatched), True))
        p.decisions += 1
        if e.kind is EventKind.ACCEPTED:
            a.accepted = e.at
        else:
            p.rejects += 1
            _end(p, a, e.at)
    elif e.kind is EventKind.REFUSED_DELIVERY:
        if a.first_delivery is None:
            a.first_delivery = e.at
            p.refused_attempts += 1
        a.last_refused = e.at
    elif e.kind in (EventKind.COMPLETED, EventKind.FAILED):
        if a.accepted is None:  # completed straight from requested
            p.accept[a.step].append((seconds(a.dispatched), True))
            p.decisions += 1
            a.accepted = e.at
        p.complete[a.step].append((seconds(a.first_delivery or a.accepted), True))
        if a.last_refused is not None and e.kind is EventKind.COMPLETED:
            p.rework.append(seconds(a.last_refused))
        p.completions += e.kind is EventKind.COMPLETED
        p.completed_steps[a.step] += e.kind is EventKind.COMPLETED
        p.fails += e.kind is EventKind.FAILED
        _end(p, a, e.at)
    elif e.kind is EventKind.REASSIGNED:
        if a.ended is not None:
            if e.actor and not e.actor.startswith("engine"):
                coordinator.append(seconds(a.ended))
            return
        if a.accepted is None:
            p.accept[a.step].append((seconds(a.dispatched), False))
        else:
            p.complete[a.step].append((seconds(a.accepted), False))
        _end(p, a, e.at)
    elif e.kind is EventKind.CANCELLED and a.ended is None:
        _end(p, a, e.at)


def _end(p: _Provider, a: _Attempt, at: datetime) -> None:
    a.ended = at
    p.open_now -= 1


def km_quantiles(samples: Sequence[Sample], points: int = QUANTILES) -> list[float] | None:
    """Quantiles of the Kaplan-Meier estimate (censored times count as 'longer than');
    beyond the last observed time, the longest time seen (a lower bound)."""
    if not any(observed for _, observed in samples):
        return None
    data = sorted(samples, key=lambda s: (s[0], not s[1]))
    at_risk, survival = len(data), 1.0
    times: list[float] = []
    cdf: list[float] = []
    i = 0
    while i < len(data):
        t, deaths, gone = data[i][0], 0, 0
        while i < len(data) and data[i][0] == t:
            deaths += data[i][1]
            gone += 1
            i += 1
        if deaths:
            survival *= 1 - deaths / at_risk
            times.append(t)
            cdf.append(1 - survival)
        at_risk -= gone
    tail = data[-1][0]
    n = min(points, len(samples))
    result = []
    for k in range(n):
        index = bisect.bisect_left(cdf, (k + 0.5) / n - 1e-12)
        result.append(times[index] if index < len(times) else tail)
    return result


@dataclass
class FitResult:
    scenario: Scenario
    report: list[str]


def fit_scenario(scenario: Scenario, definition: PathwayDefinition,
                 events: Sequence[PathwayEvent]) -> FitResult:
    """The scenario with arrivals and provider behaviour replaced by what the log shows."""
    seen = observe(events)
    data = scenario.model_dump(mode="json", by_alias=True, exclude_none=True)
    report: list[str] = []
    if seen.starts:
        data["arrivals"] = _arrivals(seen.starts, report)
    providers = dict(data.get("providers", {}))
    known = {p.id for r in definition.roles for p in r.providers}
    for pid in sorted(seen.providers):
        if pid not in known:
            continue
        refusable = {s.id for s in definition.steps if any(f.required for f in s.handover)}
        fitted = _behaviour(pid, seen.providers[pid], providers.get(pid), refusable, report)
        if fitted is not None:
            providers[pid] = fitted
    data["providers"] = providers
    if len(seen.coordinator) >= MIN_SAMPLES:
        data["coordinator"] = {"respond": _empirical([(s, True) for s in seen.coordinator])}
    return FitResult(Scenario.model_validate(data), report)


def _arrivals(starts: list[datetime], report: list[str]) -> dict[str, Any]:
    first, last = min(starts), max(starts)
    days = max(1.0, (last - first).total_seconds() / 86_400)
    weekday_counts = [0] * 7
    for s in starts:
        weekday_counts[s.weekday()] += 1
    occurrences = [0] * 7
    day = first.date()
    while day <= last.date():
        occurrences[day.weekday()] += 1
        day += timedelta(days=1)
    weekly = [weekday_counts[d] / occurrences[d] if occurrences[d] else 0.0 for d in range(7)]
    hours = sorted({s.hour for s in starts})
    result: dict[str, Any] = {"per_day": round(len(starts) / days, 3),
                              "weekly": [round(w, 3) for w in weekly]}
    if hours[-1] - hours[0] < 23:
        result["hours"] = [hours[0], hours[-1] + 1]
    report.append(f"arrivals: {len(starts)} pathways over {days:.1f} days = "
                  f"{result['per_day']:g} a day; weekly {result['weekly']}"
                  + (f"; hours {result['hours']}" if "hours" in result else ""))
    return result


def _behaviour(pid: str, p: _Provider, given: dict[str, Any] | None, refusable: set[str],
               report: list[str]) -> dict[str, Any] | None:
    accept_all = [s for samples in p.accept.values() for s in samples]
    complete_all = [s for samples in p.complete.values() for s in samples]
    if len(accept_all) < MIN_SAMPLES:
        report.append(f"{pid}: {len(accept_all)} offers, too few to fit: scenario kept")
        return None
    result: dict[str, Any] = dict(given or {})
    result.pop("capacity", None)
    result["accept"] = _empirical(accept_all)
    if sum(o for _, o in complete_all) >= 1:
        result["complete"] = _empirical(complete_all)
    result["reject"] = round(p.rejects / p.decisions, 4) if p.decisions else 0.0
    done = p.completions + p.fails
    result["fail"] = round(p.fails / done, 4) if done else 0.0
    # only deliveries a contract can refuse (steps with a required field) count
    deliveries = sum(n for step, n in p.completed_steps.items() if step in refusable)
    result["non_conforming"] = (
        round(min(1.0, p.refused_attempts / deliveries), 4) if deliveries else 0.0)
    if len(p.rework) >= 1:
        result["rework"] = _empirical([(s, True) for s in p.rework])
    steps = {}
    if len(p.accept) > 1:
        for step in sorted(p.accept):
            times: dict[str, Any] = {}
            if len(p.accept[step]) >= MIN_SAMPLES:
                times["accept"] = _empirical(p.accept[step])
            if sum(o for _, o in p.complete.get(step, [])) >= MIN_SAMPLES:
                times["complete"] = _empirical(p.complete[step])
            if times:
                steps[step] = times
    result["steps"] = steps
    censored = sum(not o for _, o in accept_all)
    report.append(
        f"{pid}: {len(accept_all)} offers ({censored} taken away unanswered), accept p50 "
        f"{_h(accept_all, 0.5)} p90 {_h(accept_all, 0.9)}; {len(complete_all)} worked, "
        f"complete p50 {_h(complete_all, 0.5)} p90 {_h(complete_all, 0.9)}; reject "
        f"{result['reject']:.1%}, fail {result['fail']:.1%}, non-conforming "
        f"{result['non_conforming']:.1%}; peak concurrency {p.peak} (fitted as unlimited: "
        "the times include the queueing seen)")
    return result


def _empirical(samples: Sequence[Sample]) -> dict[str, Any]:
    values = km_quantiles(samples) or [0.0]
    fitted: Empirical = empirical(values)
    return fitted.model_dump(mode="json")


def _h(samples: Sequence[Sample], q: float) -> str:
    values = km_quantiles(samples)
    if not values:
        return "-"
    return format_duration(timedelta(seconds=round(percentile(values, q))))


# --- validation -----------------------------------------------------------------------------
def wasserstein(a: Sequence[float], b: Sequence[float]) -> float:
    """Earth mover's distance between two samples: the area between their CDFs."""
    if not a or not b:
        return math.nan
    xs, ys = sorted(a), sorted(b)
    points = sorted(set(xs) | set(ys))
    total, i, j = 0.0, 0, 0
    for left, right in zip(points, points[1:], strict=False):
        while i < len(xs) and xs[i] <= left:
            i += 1
        while j < len(ys) and ys[j] <= left:
            j += 1
        total += abs(i / len(xs) - j / len(ys)) * (right - left)
    return total


@dataclass
class StepCheck:
    step: str
    observed: int
    simulated: int
    lead_w1_h: float
    lead_mean_h: float
    wait_w1_h: float
    attainment_observed: float
    attainment_simulated: float

    @property
    def relative_lead_w1(self) -> float:
        return self.lead_w1_h / self.lead_mean_h if self.lead_mean_h else math.nan


@dataclass
class Validation:
    split: datetime
    fit_report: list[str]
    steps: list[StepCheck]

    def lines(self) -> list[str]:
        out = [f"validation: fitted on pathways started before {self.split.isoformat()}, "
               "simulated the rest; Wasserstein-1 distance simulated vs observed"]
        for s in self.steps:
            out.append(
                f"  {s.step}: n {s.observed} observed / {s.simulated} simulated; lead W1 "
                f"{s.lead_w1_h:.2f} h ({s.relative_lead_w1:.1%} of the mean {s.lead_mean_h:.2f} "
                f"h); waiting W1 {s.wait_w1_h:.2f} h; on time {s.attainment_observed:.1%} "
                f"observed, {s.attainment_simulated:.1%} simulated")
        return out


def handover_times(events: Iterable[PathwayEvent]) -> dict[str, tuple[list[float], list[float]]]:
    """Observed lead and waiting times (hours) per step: ready to completed, and ready to the
    final acceptance (the engine's waiting when work is counted from acceptance)."""
    ready: dict[tuple[str, str], datetime] = {}
    accepted: dict[tuple[str, str], datetime] = {}
    result: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for e in sorted(events, key=lambda e: (e.pathway_id, e.seq)):
        if e.handover_id is None:
            continue
        key = (e.pathway_id, e.handover_id)
        if e.kind is EventKind.READY:
            ready[key] = e.at
        elif e.kind is EventKind.ACCEPTED:
            accepted[key] = e.at
        elif e.kind is EventKind.COMPLETED and key in ready:
            lead, wait = result[e.step_id or ""]
            lead.append((e.at - ready[key]).total_seconds() / HOUR)
            wait.append(((accepted.get(key) or e.at) - ready[key]).total_seconds() / HOUR)
    return dict(result)


def validate(scenario: Scenario, definition: PathwayDefinition,
             events: Sequence[PathwayEvent], split: datetime, replications: int = 5,
             seed: int = 0) -> Validation:
    """Fit on pathways started before `split`, simulate those after, compare distributions."""
    started = {e.pathway_id: e.at for e in events if e.kind is EventKind.PATHWAY_STARTED}
    first = [e for e in events if started.get(e.pathway_id, split) < split]
    second = [e for e in events if started.get(e.pathway_id, split) >= split]
    fitted = fit_scenario(scenario, definition, first)
    end = max(started.values())
    warm_up = scenario.warm_up
    horizon = (end - split) + warm_up
    question = Scenario.model_validate({
        **fitted.scenario.model_dump(mode="json", by_alias=True, exclude_none=True),
        "start": (split - warm_up).isoformat(), "horizon": format_duration(horizon),
        "changes": [],
    })
    [variant] = variants(question, Catalogue([definition]))
    simulated: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for r in range(replications):
        result = Replication(variant, r, seed, keep_samples=True).run()
        for step in definition.steps:
            simulated[step.id][0].extend(result.samples.get(f"step|{step.id}|lead_h", []))
            simulated[step.id][1].extend(result.samples.get(f"step|{step.id}|wait_h", []))
    observed = handover_times(second)
    checks = []
    for step in definition.steps:
        lead, wait = observed.get(step.id, ([], []))
        sim_lead, sim_wait = simulated[step.id]
        if not lead or not sim_lead:
            continue
        due = step.sla.complete_within.total_seconds() / HOUR
        checks.append(StepCheck(
            step=step.id, observed=len(lead), simulated=len(sim_lead),
            lead_w1_h=wasserstein(lead, sim_lead), lead_mean_h=sum(lead) / len(lead),
            wait_w1_h=wasserstein(wait, sim_wait),
            attainment_observed=sum(x <= due for x in lead) / len(lead),
            attainment_simulated=sum(x <= due for x in sim_lead) / len(sim_lead),
        ))
    return Validation(split, fitted.report, checks)
