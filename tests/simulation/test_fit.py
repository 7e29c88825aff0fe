"""Trust in the simulator: a history made by the engine with known provider behaviour is fitted
on its first half; the simulation of the second half must match what was observed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pathways.simulation.fit import fit_scenario, km_quantiles, validate, wasserstein
from pathways.simulation.loop import Replication
from pathways.simulation.scenario import parse_scenario
from tests.simulation.support import catalogue, resolve


def known(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "history",
        "definition": "home-visit",
        "horizon": "P56D",
        "warm_up": "P3D",
        "drain": "P5D",
        "arrivals": {"per_day": 24, "hours": [8, 20]},
        "providers": {
            "team-a": {
                "capacity": 3,
                "accept": {"kind": "exponential", "mean": "PT12M"},
                "complete": {"kind": "lognormal", "mean": "PT50M", "sd": "PT25M"},
                "reject": 0.05, "non_conforming": 0.1,
                "rework": {"kind": "fixed", "value": "PT10M"},
            },
            "team-b": {
                "capacity": 2,
                "accept": {"kind": "gamma", "mean": "PT8M", "sd": "PT4M"},
                "complete": {"kind": "lognormal", "mean": "PT70M", "sd": "PT30M"},
            },
        },
        "outcomes": [{"step": "visit", "field": "outcome", "shares": {"home": 0.7, "bed": 0.3}}],
    }
    data.update(overrides)
    return data


def history() -> list[Any]:
    [variant] = resolve(known())
    replication = Replication(variant, 0, seed=99, keep_events=True)
    replication.run()
    return replication.events


def test_wasserstein_and_kaplan_meier_by_hand() -> None:
    assert wasserstein([0, 1, 2], [0, 1, 2]) == 0
    assert wasserstein([0, 0], [1, 1]) == pytest.approx(1)
    assert wasserstein([0, 2], [1, 1]) == pytest.approx(1)
    # 4 times, one censored at 2 (taken away): KM puts 1/4 at 1, then 3/8 each at 3 and 4;
    # 4 samples give 4 quantiles, at 1/8, 3/8, 5/8 and 7/8
    assert km_quantiles([(1, True), (2, False), (3, True), (4, True)], 8) == [1, 3, 3, 4]
    assert km_quantiles([(5, False)]) is None


def test_fit_recovers_the_known_behaviour() -> None:
    events = history()
    definition = catalogue().get("home-visit")
    fitted = fit_scenario(parse_scenario(known()), definition, events)
    a = fitted.scenario.providers["team-a"]
    assert a.capacity is None  # times fitted include queueing
    assert a.reject == pytest.approx(0.05, abs=0.02)
    assert a.non_conforming == pytest.approx(0.1, abs=0.03)
    assert a.complete.mean_seconds == pytest.approx(50 * 60, rel=0.1)
    assert a.rework.mean_seconds == pytest.approx(10 * 60, rel=0.01)
    assert fitted.scenario.arrivals.per_day == pytest.approx(24, rel=0.1)
    assert fitted.scenario.arrivals.hours == (8, 20)
    assert any(line.startswith("team-a:") for line in fitted.report)


def test_fitted_on_the_first_half_the_simulation_predicts_the_second() -> None:
    """Tolerances: lead-time W1 under 15% of the observed mean per step, waiting W1 under
    15 minutes, SLA attainment within 5 percentage points."""
    events = history()
    definition = catalogue().get("home-visit")
    start = parse_scenario(known()).start
    check = validate(parse_scenario(known()), definition, events, start + timedelta(days=28),
                     replications=3, seed=1)
    assert {s.step for s in check.steps} == {"visit", "follow-up"}
    for step in check.steps:
        assert step.observed > 100 and step.simulated > 100
        assert step.relative_lead_w1 < 0.15, check.lines()
        assert step.wait_w1_h < 0.25, check.lines()
        assert abs(step.attainment_observed - step.attainment_simulated) < 0.05, check.lines()
    print("\n".join(check.lines()))
