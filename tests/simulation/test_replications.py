"""Randomness under control: same seed, same answer (also across processes); replications and
seeds differ; a change at one provider leaves the arrivals alone (common random numbers)."""

from __future__ import annotations

from typing import Any

import pytest

from pathways.simulation.loop import Replication, stream
from pathways.simulation.runner import compare, run_variant
from tests.simulation.support import resolve


def stochastic(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "stochastic",
        "definition": "home-visit",
        "horizon": "P10D",
        "warm_up": "P1D",
        "drain": "P5D",
        "arrivals": {"per_day": 20, "weekly": [1, 1, 1, 1, 1, 0.5, 0.5], "hours": [8, 20]},
        "providers": {
            "team-a": {
                "capacity": 2,
                "accept": {"kind": "exponential", "mean": "PT15M"},
                "complete": {"kind": "lognormal", "mean": "PT50M", "sd": "PT20M"},
                "reject": 0.1, "non_conforming": 0.1,
            },
            "team-b": {
                "capacity": 2, "hours": [8, 20],
                "accept": {"kind": "gamma", "mean": "PT10M", "sd": "PT5M"},
                "complete": {"kind": "empirical", "values": ["PT30M", "PT1H", "PT2H"]},
                "fail": 0.1,
            },
        },
        "outcomes": [{"step": "visit", "field": "outcome", "shares": {"home": 0.7, "bed": 0.3}}],
        "standards": [{"name": "2-hour", "step": "visit", "within": "PT2H", "target": 0.7}],
        "changes": [{"name": "bigger-a", "providers": {"team-a": {"capacity": 4}}}],
    }
    data.update(overrides)
    return data


def test_same_seed_same_answer_in_one_process_or_several() -> None:
    variants = resolve(stochastic())
    one = compare("s", variants, replications=3, seed=7, workers=1).as_dict()
    again = compare("s", variants, replications=3, seed=7, workers=1).as_dict()
    parallel = compare("s", variants, replications=3, seed=7, workers=2).as_dict()
    assert one == again == parallel
    other = compare("s", variants, replications=3, seed=8, workers=1).as_dict()
    assert other != one


def test_replications_are_independent_streams() -> None:
    [baseline, _] = resolve(stochastic())
    reps = run_variant(baseline, replications=4, seed=3)
    started = [r.scalars["pathways|all|started"] for r in reps]
    leads = [r.scalars["step|visit|lead_p50_h"] for r in reps]
    assert len(set(started)) > 1 and len(set(leads)) == 4
    first = [stream(3, 0, "arrivals").random() for _ in range(5)]
    assert first != [stream(3, 1, "arrivals").random() for _ in range(5)]
    assert first != [stream(3, 0, "provider/team-a").random() for _ in range(5)]
    assert first == [stream(3, 0, "arrivals").random() for _ in range(5)]


def test_every_behaviour_goes_through_the_engine_without_a_refused_command() -> None:
    """Rejections, failures, refused deliveries, the coordinator and working hours: the engine
    accepts every simulated command but the non-conforming deliveries it must refuse."""
    [baseline, _] = resolve(stochastic())
    s = Replication(baseline, 0, seed=5).run().scalars
    assert s["engine|all|refused_commands"] == 0
    assert s["step|visit|refused_deliveries_per_100"] > 0
    assert s["step|visit|reassignments_per_100"] > 0
    assert s["pathways|all|unfinished"] == 0
    # about 30% of visits end in "bed", so the conditional follow-up runs for them
    assert 15 < s["step|follow-up|per_100_pathways"] < 45


def test_the_change_is_compared_with_paired_replications() -> None:
    variants = resolve(stochastic())
    answer = compare("s", variants, replications=4, seed=11)
    baseline, bigger = answer.columns
    assert [c.name for c in answer.columns] == ["baseline", "bigger-a"]
    # same arrivals in both columns: the change is at a provider, not in the population
    assert bigger.differences["pathways|all|started"].mean == 0
    assert bigger.estimates["provider|team-a|utilisation_pct"].mean < (
        baseline.estimates["provider|team-a|utilisation_pct"].mean)
    assert bigger.differences["step|visit|queue_p90_h"].mean <= 0
    ci = baseline.estimates["step|visit|sla_pct"]
    assert ci.half_width is not None and ci.low is not None and ci.low <= ci.mean <= ci.high
    assert "standard|2-hour|attainment_pct" in baseline.estimates


@pytest.mark.parametrize("bad, problem", [
    ({"providers": {"nobody": {}}}, "provider 'nobody' is not in the definition"),
    ({"changes": [{"name": "x", "remove_providers": ["team-a", "team-b"]}]},
     "leaves role 'team' with no provider"),
    ({"outcomes": [{"step": "visit", "field": "outcome", "shares": {"sofa": 1}}]},
     "'sofa' is not a valid coded value"),
    ({"changes": [{"name": "x", "escalation": {"visit": [
        {"clock": "complete", "at": "PT0S", "action": "reassign"}]}}]},
     "the changed definition is invalid"),
])
def test_scenarios_are_checked_against_the_definition(bad: dict[str, Any], problem: str) -> None:
    from pathways.simulation.scenario import ScenarioError

    with pytest.raises(ScenarioError) as error:
        resolve(stochastic(**bad))
    assert any(problem in p for p in error.value.problems), error.value.problems
