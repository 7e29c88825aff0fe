"""Scenarios small enough to work out by hand, run through the real engine.

Ten pathways arrive, one every 30 minutes from 00:00 (the last at 04:30). The visit step has a
30-minute acceptance clock and the patient's 2-hour clock; its ladder alerts the coordinator at
the accept due time, reassigns 15 minutes later and marks the handover breached at 2 hours.
"""

from __future__ import annotations

import pytest

from pathways.simulation.loop import Replication
from pathways.simulation.runner import compare
from tests.simulation.support import fixed, resolve, scenario

MINUTE = 1 / 60


def test_ample_capacity_every_handover_on_time() -> None:
    """Team A accepts in 10 minutes and works 45: every visit done in 55 minutes, nothing late."""
    [baseline] = resolve(scenario())
    s = Replication(baseline, 0, seed=1).run().scalars
    assert s["step|visit|handovers"] == 10
    assert s["step|visit|sla_pct"] == 100
    assert s["step|visit|breaches_per_100"] == 0
    assert s["step|visit|escalations_per_100"] == 0
    assert s["step|visit|reassignments_per_100"] == 0
    assert s["step|visit|lead_p50_h"] == pytest.approx(55 * MINUTE)
    assert s["step|visit|wait_p50_h"] == pytest.approx(10 * MINUTE)
    assert s["step|follow-up|handovers"] == 0  # the default outcome is "home": step skipped
    assert s["pathways|all|completed"] == 10
    assert s["engine|all|refused_commands"] == 0


def test_capacity_cut_breaches_and_escalates_by_the_engines_ladder() -> None:
    """Team A alone, one visit at a time (55 minutes each) while one arrives every 30: visit k
    is picked up at 55k minutes, accepted at 55k+10 and done at 55k+55, so its lead time is
    25k+55 minutes. Acceptance is late (> 30 min after dispatch) from k=1; the 2-hour clock is
    breached from k=3 (130 min); no alternate is left for the reassign rung, so the coordinator
    is alerted on the same escalation. Expected: 3 of 10 on time, 7 breaches, 9 escalations,
    9 late acceptances, lead p50 = (155+180)/2 = 167.5 minutes, queue of k = 25k minutes."""
    data = scenario(changes=[{
        "name": "capacity-cut",
        "providers": {"team-a": {"capacity": 1}},
        "remove_providers": ["team-b"],
    }])
    baseline, cut = resolve(data)
    s = Replication(cut, 0, seed=1).run().scalars
    assert s["step|visit|handovers"] == 10
    assert s["step|visit|sla_pct"] == pytest.approx(30)
    assert s["step|visit|breaches_per_100"] == pytest.approx(70)
    assert s["step|visit|escalations_per_100"] == pytest.approx(90)
    assert s["step|visit|accept_breaches_per_100"] == pytest.approx(90)
    assert s["step|visit|reassignments_per_100"] == 0
    assert s["step|visit|lead_p50_h"] == pytest.approx(167.5 * MINUTE)
    assert s["step|visit|queue_p50_h"] == pytest.approx(112.5 * MINUTE)
    assert s["provider|team-a|utilisation_pct"] == pytest.approx(100)
    assert s["engine|all|refused_commands"] == 0

    answer = compare("hand-worked", [baseline, cut], replications=2, seed=1)
    change = answer.columns[1]
    assert change.differences["step|visit|sla_pct"].mean == pytest.approx(-70)
    assert change.differences["step|visit|breaches_per_100"].mean == pytest.approx(70)
    assert change.estimates["step|visit|sla_pct"].half_width == 0  # deterministic times


def test_reassigned_by_the_ladder_keeps_the_patients_clock() -> None:
    """Team A takes an hour to answer; at 45 minutes (accept due + 15) the engine's reassign
    rung offers the visit to Team B, which accepts at 55 and works 90 minutes: done at 145.
    The patient's clock still runs from 00:00, so the 2-hour standard is breached (lead 145
    minutes); had the clock restarted with B it would have been due at 165 and on time."""
    providers = {
        "team-a": {"accept": fixed("PT1H"), "complete": fixed("PT45M")},
        "team-b": {"accept": fixed("PT10M"), "complete": fixed("PT90M")},
    }
    [patients_clock] = resolve(scenario(providers=providers))
    s = Replication(patients_clock, 0, seed=1).run().scalars
    assert s["step|visit|reassignments_per_100"] == 100
    assert s["step|visit|lead_p50_h"] == pytest.approx(145 * MINUTE)
    assert s["step|visit|sla_pct"] == 0
    assert s["step|visit|breaches_per_100"] == 100
    # Team A held each visit 45 minutes, until the engine took it away (the last one, from
    # 04:30, only 30 minutes inside the 5-hour window): (9 * 45 + 30) / 300 visits on average.
    assert s["provider|team-a|busy_mean"] == pytest.approx((9 * 45 + 30) / 300)
    assert s["engine|all|refused_commands"] == 0

    [per_attempt] = resolve(scenario(providers=providers), complete_clock="attempt")
    s = Replication(per_attempt, 0, seed=1).run().scalars
    assert s["step|visit|lead_p50_h"] == pytest.approx(145 * MINUTE)
    assert s["step|visit|sla_pct"] == 100


def test_working_hours_hold_offers_until_the_team_opens() -> None:
    """Both teams pick up work 08:00-18:00. A visit offered at 17:30 is accepted at 17:40 and
    done at 18:25 (work goes on after hours): 55 minutes. One offered at 18:30 waits: the
    ladder moves it to Team B at 19:15 (accept due + 15), closed too; B opens at 08:00,
    accepts at 08:10 and is done at 08:55, 14 h 25 min after the referral."""
    hours = {"accept": fixed("PT10M"), "complete": fixed("PT45M"), "hours": [8, 18]}
    data = scenario(start="2026-01-05T17:30:00Z", horizon="PT2H", arrivals={"every": "PT1H"},
                    providers={"team-a": hours, "team-b": hours})
    [variant] = resolve(data)
    result = Replication(variant, 0, seed=1, keep_samples=True).run()
    assert sorted(result.samples["step|visit|lead_h"]) == pytest.approx(
        [55 * MINUTE, 14 + 25 * MINUTE])
    s = result.scalars
    assert s["step|visit|reassignments_per_100"] == 50
    assert s["step|visit|queue_p90_h"] == pytest.approx(0.1 * 0 + 0.9 * (12 + 45 * MINUTE))


def test_daily_slots_used_up_send_visits_to_the_next_team_by_the_ladder() -> None:
    """Team A has two slots a day. Visits at 00:00 and 01:00 take them (done at 00:55 and
    01:55); those at 02:00 and 03:00 wait until the engine's reassign rung (accept due + 15
    minutes) offers them to Team B at 02:45 and 03:45: done at 03:40 and 04:40, 100 minutes
    after referral, still within the patient's 2 hours."""
    providers = {
        "team-a": {"accept": fixed("PT10M"), "complete": fixed("PT45M"), "slots_per_day": 2},
        "team-b": {"accept": fixed("PT10M"), "complete": fixed("PT45M")},
    }
    data = scenario(horizon="PT4H", arrivals={"every": "PT1H"}, providers=providers)
    [variant] = resolve(data)
    result = Replication(variant, 0, seed=1, keep_samples=True).run()
    assert sorted(result.samples["step|visit|lead_h"]) == pytest.approx(
        [55 * MINUTE, 55 * MINUTE, 100 * MINUTE, 100 * MINUTE])
    s = result.scalars
    assert s["step|visit|reassignments_per_100"] == 50
    assert s["step|visit|sla_pct"] == 100
    assert s["engine|all|refused_commands"] == 0
