"""Every measure of the flow report on the hand-worked event log (tests/analytics/eventlog.py),
on SQLite and on a real PostgreSQL: the same answers from both databases."""

from __future__ import annotations

import pytest

from activities.analytics import flow_report
from activities.store import EventStore
from pathways.analytics.report import Report
from tests.analytics.eventlog import DEFINITION, NOW, SINCE, UNTIL, H


@pytest.fixture
def report(store: EventStore) -> Report:
    return flow_report(store, DEFINITION, since=SINCE, until=UNTIL, now=NOW)


def hours(value: float | None) -> float | None:
    return None if value is None else round(value / H, 4)


def test_lead_waiting_and_working_distributions(report: Report) -> None:
    o = report.overall
    assert (o.handovers, o.completed, o.open) == (4 + 1, 3, 2)
    # completed: P1a 7 h, P1b 5 h, P2a 1.5 h; nearest rank: p50 = 2nd, p90 = 3rd of 3
    assert [hours(v) for v in (o.lead.mean, o.lead.p50, o.lead.p90, o.lead.max)] == [4.5, 5, 7, 7]
    assert [hours(v) for v in (o.waiting.mean, o.waiting.p50, o.waiting.p90)] == [2.5, 3, 4]
    assert [hours(v) for v in (o.working.mean, o.working.p50, o.working.p90)] == [2, 2, 3]
    assert o.lead.count == o.waiting.count == o.working.count == 3


def test_the_four_states_and_flow_efficiency(report: Report) -> None:
    states = report.overall.states
    # completed handovers: transit 1, 3, 0.5; queued 2, 0, 0; working 3, 2, 1; blocked 1, 0, 0
    assert hours(states.in_transit) == 1.5
    assert hours(states.queued) == round(2 / 3, 4)
    assert hours(states.working) == 2
    assert hours(states.blocked) == round(1 / 3, 4)
    assert report.overall.flow_efficiency == pytest.approx(6 / 13.5, abs=1e-6)


def test_handover_gap_from_the_latest_completion(report: Report) -> None:
    gap = report.overall.gap  # P1b 0 h after P1a; P2b 3 h after P2a; first steps have none
    assert gap.count == 2
    assert [hours(v) for v in (gap.mean, gap.p50, gap.p90, gap.max)] == [1.5, 0, 3, 3]


def test_sla_escalations_reassignments_rejections_refusals(report: Report) -> None:
    o = report.overall
    assert (o.sla_attained, o.breached) == (2, 3)  # P1b late; P2b and P4a open past due
    assert o.attainment == pytest.approx(2 / 3)
    assert o.breach_rate == pytest.approx(3 / 5)
    assert o.escalations == 1  # one coordinator escalation raised twice; reminders not counted
    assert o.escalations_per_100 == pytest.approx(20)
    assert (o.reassignments, o.rejections, o.refused_deliveries) == (2, 1, 1)
    assert o.first_time_right == pytest.approx(2 / 3)


def test_steps_and_bottleneck_by_share_of_waiting(report: Report) -> None:
    steps = {m.key: m for m in report.steps}
    assert set(steps) == {"urgent-response", "gp-follow-up"}
    a, b = steps["urgent-response"], steps["gp-follow-up"]
    assert (a.handovers, a.completed, b.handovers, b.completed) == (3, 2, 2, 1)
    assert hours(a.waiting_seconds) == 6.5  # 4 + 0.5 + P4a's 2 (open)
    assert hours(b.waiting_seconds) == 142.5  # 3 + P2b's 139.5 (open to the period's end)
    ranking = report.bottlenecks.steps
    assert [r.key for r in ranking] == ["gp-follow-up", "urgent-response"]
    assert ranking[0].share == pytest.approx(142.5 / 149, abs=1e-6)


def test_provider_scorecard(report: Report) -> None:
    providers = {m.key: m for m in report.providers}
    a, b, c = providers["A"], providers["B"], providers["C"]
    assert [hours(p.waiting_seconds) for p in (a, b, c)] == [6.5, 3, 139.5]
    assert [r.key for r in report.bottlenecks.providers] == ["C", "A", "B"]
    assert (b.escalations, b.reassignments, b.rejections) == (1, 2, 1)  # both taken from B
    assert b.escalations_per_100 == pytest.approx(50)  # one escalation over two handovers held
    assert (c.refused_deliveries, c.first_time_right) == (1, 0.0)
    assert a.first_time_right == 1.0
    assert (a.handovers, a.completed, c.handovers, c.completed) == (3, 2, 2, 1)
    assert hours(c.lead.p50) == 5


def test_wip_arrivals_and_littles_law(report: Report) -> None:
    flow = report.flow
    assert len(flow.wip) == 14
    assert [p.wip for p in flow.wip] == [0] * 8 + [1] * 4 + [2] * 2
    assert [p.arrivals for p in flow.wip][:9] == [2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert flow.wip_now == 1  # P2b: the read model's open handovers now (P4a completed since)
    assert flow.arrivals_per_day == pytest.approx(5 / 14)
    assert flow.completions_per_day == pytest.approx(3 / 14)
    little = flow.little
    assert little is not None
    assert little.predicted_wip == pytest.approx(5 / 14 * 4.5 / 24, abs=1e-6)
    assert little.observed_mean_wip == pytest.approx(8 / 14)
    assert little.departure == pytest.approx((8 / 14) / (5 / 14 * 4.5 / 24) - 1, abs=1e-4)


def test_weekly_spc_series(report: Report) -> None:
    weeks = report.spc.weeks
    assert [w.week for w in weeks] == ["2026-01-05", "2026-01-12"]
    assert [hours(w.mean_lead) for w in weeks] == [6, 1.5]
    assert [w.breach_rate for w in weeks] == [0.5, 0.0]
    chart = report.spc.lead_time
    assert chart is not None and hours(chart.mean) == 3.75
    assert chart.mr_bar == pytest.approx(4.5 * H, abs=0.01)


def test_pathways_and_the_two_hour_standard(report: Report) -> None:
    assert (report.pathways.started, report.pathways.completed) == (3, 1)
    assert hours(report.pathways.lead.p50) == 12
    [ucr] = report.standards
    assert ucr.standard.key == "ucr-2h"
    assert (ucr.handovers, ucr.within, ucr.attainment, ucr.met) == (2, 1, 0.5, False)


def test_provider_filter_keeps_that_providers_handovers(store: EventStore) -> None:
    only_c = flow_report(store, DEFINITION, provider_id="C", since=SINCE, until=UNTIL, now=NOW)
    assert (only_c.overall.handovers, only_c.overall.completed) == (2, 1)
    assert [p.key for p in only_c.providers] == ["C"]


def test_other_definitions_and_other_periods_are_left_out(store: EventStore) -> None:
    everything = flow_report(store, None, since=SINCE, until=UNTIL, now=NOW)
    assert everything.overall.handovers == 6  # P5's handover of another definition joins
    before = flow_report(store, DEFINITION, since=SINCE.replace(year=2025), until=SINCE,
                         now=NOW)
    assert before.overall.completed == 1  # P3 only


def test_critical_path_ranking(report: Report) -> None:
    # on the critical path: P1a (P1b waited for it), P1b (the last), P2a, P4a (its last, after
    # the period); P2b is open. Waiting: a 4 + 0.5 + 2 = 6.5 h, b 3 h; off it: P2b's 139.5 h
    ranking = report.bottlenecks.critical_path
    assert [r.key for r in ranking] == ["urgent-response", "gp-follow-up"]
    assert [hours(r.waiting_seconds) for r in ranking] == [6.5, 3]
