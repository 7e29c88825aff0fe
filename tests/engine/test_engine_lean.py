"""Lean metrics arithmetic on a worked example."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pathways.commands import Refusal
from pathways.engine import PathwayRun
from pathways.lean import covered, little_wip, pathway_metrics, takt_time
from tests.engine.engine_builders import T0, command, complete, definition, start, step

H = timedelta(hours=1)
DEFN = definition(
    step("referral", "gp"),
    step("nursing", "nurse", ("referral",), handover=[{"name": "plan", "type": "text"}]),
    step("bloods", "lab", ("referral",)),
    step("review", "gp", ("nursing", "bloods")),
)


def _move(run: PathwayRun, handover_id: str, status: str, hours: float,
          output: dict[str, Any] | None = None) -> None:
    run.apply_provider(command(run, handover_id, status, output=output), T0 + hours * H)


def _worked_example() -> PathwayRun:
    run = start(DEFN)
    _move(run, "referral.1", "accepted", 1)
    _move(run, "referral.1", "in-progress", 2)
    _move(run, "referral.1", "completed", 4)
    _move(run, "bloods.1", "completed", 5)
    _move(run, "nursing.1", "accepted", 6)
    _move(run, "nursing.1", "in-progress", 8)
    with pytest.raises(Refusal):
        _move(run, "nursing.1", "completed", 9, output={"plan": ""})
    _move(run, "nursing.1", "completed", 10, output={"plan": "Daily visits"})
    return run


def test_metrics_of_a_pathway_in_flight() -> None:
    metrics = pathway_metrics(_worked_example().state, T0 + 12 * H)
    assert metrics.lead_time == 12 * H
    assert metrics.work_time == 4 * H  # referral 2-4 h, nursing 8-10 h, bloods 0 h
    assert metrics.wait_time == 8 * H
    assert metrics.flow_efficiency == pytest.approx(1 / 3)
    assert metrics.mean_handover_gap == metrics.max_handover_gap == timedelta(0)
    assert metrics.completed_deliveries == 3
    assert metrics.first_time_right == pytest.approx(2 / 3)
    assert metrics.refused_deliveries == 1
    assert (metrics.breaches, metrics.open_escalations) == (0, 0)
    assert metrics.bottleneck_step == "nursing"  # waited 4 h; referral 2 h, review 2 h, bloods 1 h


def test_a_finished_pathway_is_measured_to_its_end() -> None:
    run = _worked_example()
    _move(run, "review.1", "completed", 13)
    metrics = pathway_metrics(run.state, T0 + 100 * H)
    assert metrics.lead_time == 13 * H and metrics.first_time_right == pytest.approx(3 / 4)


def test_parallel_work_counts_once() -> None:
    run = start(DEFN)
    complete(run, "referral.1", T0)
    _move(run, "nursing.1", "accepted", 1)
    _move(run, "nursing.1", "in-progress", 1)
    _move(run, "bloods.1", "accepted", 2)
    metrics = pathway_metrics(run.state, T0 + 4 * H)
    assert metrics.work_time == 3 * H  # nursing started at 1 h and is still going
    assert metrics.bottleneck_step == "bloods"


def test_breaches_escalations_and_gaps_are_counted() -> None:
    defn = definition(step("check", "gp", recurrence={"every": "P1D", "count": 2}),
                      escalation=[{"at": "PT0S", "action": "alert-coordinator",
                                   "clock": "accept"}])
    run = start(defn)
    run.tick(T0 + 5 * H)  # accept_by was T0 + 4 h: one breach, one escalation
    complete(run, "check.1", T0 + 6 * H)
    run.tick(T0 + 27 * H)  # occurrence 2 was due at T0 + 24 h: told 3 h late
    # completing the late handover resolved its escalation automatically
    metrics = pathway_metrics(run.state, T0 + 28 * H)
    assert metrics.breaches == 1 and metrics.open_escalations == 0
    assert metrics.max_handover_gap == 3 * H and metrics.mean_handover_gap == 1.5 * H


def test_an_empty_moment_has_no_efficiency_or_bottleneck() -> None:
    metrics = pathway_metrics(start(DEFN).state, T0)
    assert metrics.flow_efficiency is None and metrics.bottleneck_step is None
    assert metrics.first_time_right is None


def test_helpers_across_pathways() -> None:
    assert covered([(T0, T0 + 2 * H), (T0 + H, T0 + 3 * H), (T0 + 5 * H, T0 + 6 * H)]) == 4 * H
    assert little_wip(arrivals_per_day=4, mean_lead_time=timedelta(days=10)) == 40
    assert takt_time(timedelta(hours=12), 48) == timedelta(minutes=15)
    with pytest.raises(ValueError):
        takt_time(timedelta(hours=12), 0)
