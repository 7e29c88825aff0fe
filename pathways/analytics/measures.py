"""Lean measures over many handovers: distributions, flow efficiency, Little's law, bottlenecks.

Durations are seconds (floats) here: they come from database aggregates, and a report mixes
means, percentiles and rates where timedelta arithmetic only gets in the way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Distribution(Frozen):
    """Count, mean and nearest-rank percentiles of a duration (seconds); None when empty."""

    count: int
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    max: float | None = None


def nearest_rank(ordered: Sequence[float], percent: float) -> float | None:
    """The smallest value with at least `percent`% of values at or below it (nearest rank).

    The database computes the same rule (row number * 100 >= percent * count), so a report's
    percentiles can be checked by hand.
    """
    if not ordered:
        return None
    rank = max(1, math.ceil(percent * len(ordered) / 100))
    return ordered[rank - 1]


def distribution(values: Iterable[float]) -> Distribution:
    ordered = sorted(values)
    if not ordered:
        return Distribution(count=0)
    return Distribution(
        count=len(ordered),
        mean=sum(ordered) / len(ordered),
        p50=nearest_rank(ordered, 50),
        p90=nearest_rank(ordered, 90),
        max=ordered[-1],
    )


def flow_efficiency(working: float, lead: float) -> float | None:
    """Working time as a share of lead time (often under 10% in healthcare); None with no lead."""
    return None if lead <= 0 else working / lead


def ratio(part: float, whole: float) -> float | None:
    return None if whole <= 0 else part / whole


def per_hundred(count: int, handovers: int) -> float | None:
    """Events per 100 handovers (escalations, reassignments): comparable across volumes."""
    return None if handovers <= 0 else 100 * count / handovers


class LittleCheck(Frozen):
    """Little's law (mean WIP = arrival rate x mean lead time) against the WIP observed.

    A large departure says the system was not stable over the period (WIP growing or
    draining), so lead times measured on finished work understate what patients now wait.
    """

    arrival_rate_per_day: float
    mean_lead_time_days: float
    predicted_wip: float
    observed_mean_wip: float
    departure: float | None  # (observed - predicted) / predicted


def little_check(
    arrivals: int, period_days: float, mean_lead_seconds: float | None, observed_mean_wip: float
) -> LittleCheck | None:
    """None when there is no period or no finished work to take a lead time from."""
    if period_days <= 0 or mean_lead_seconds is None:
        return None
    rate = arrivals / period_days
    lead_days = mean_lead_seconds / 86400
    predicted = rate * lead_days
    departure = None if predicted <= 0 else (observed_mean_wip - predicted) / predicted
    return LittleCheck(
        arrival_rate_per_day=rate,
        mean_lead_time_days=lead_days,
        predicted_wip=predicted,
        observed_mean_wip=observed_mean_wip,
        departure=departure,
    )


class Ranked(Frozen):
    """One step or provider in a bottleneck ranking."""

    key: str
    waiting_seconds: float
    share: float
    rank: int


def rank_by_waiting(waiting: Mapping[str, float]) -> list[Ranked]:
    """Largest share of total waiting first (ties by key, so the order is stable): the chain
    goes no faster than the step where patients wait longest."""
    total = sum(max(v, 0.0) for v in waiting.values())
    ordered = sorted(waiting.items(), key=lambda kv: (-kv[1], kv[0]))
    return [
        Ranked(key=key, waiting_seconds=value, share=(value / total if total > 0 else 0.0),
               rank=i + 1)
        for i, (key, value) in enumerate(ordered)
    ]
