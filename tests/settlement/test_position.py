"""A pathway's payment position and the top-ups a statement says were not paid, and why."""

from __future__ import annotations

from pathways.events import EventKind
from pathways.settlement import Outcome, Period
from pathways.settlement.position import missed_top_ups, position
from pathways.settlement.rules import is_complete_breach
from tests.settlement.support import (
    CONTRACTS,
    DAY,
    HOUR,
    MINUTE,
    T0,
    UCR,
    Scenario,
    outcome,
    response_output,
)

CONTRACT = CONTRACTS.all[0]
Q4 = Period.parse("2026-Q4")
TEAM = "elmshire-ucr-central"


def test_late_and_refused_responses_say_why_the_top_up_was_not_paid() -> None:
    late = Scenario("pw-late")
    late.accept("urgent-response", T0 + 5 * MINUTE)
    late.complete("urgent-response", T0 + 3 * HOUR, response_output(T0 + 3 * HOUR))
    refused = Scenario("pw-refused", start=T0 + DAY)
    refused.accept("urgent-response", T0 + DAY + 5 * MINUTE)
    refused.refused("urgent-response", T0 + DAY + 20 * MINUTE)
    refused.complete("urgent-response", T0 + DAY + HOUR, response_output(T0 + DAY + HOUR))
    events = [*late.events, *refused.events]
    missed = missed_top_ups(events, CONTRACTS, TEAM, Q4)
    assert [(m.pathway_id, m.amount, m.reasons) for m in missed] == [
        ("pw-late", 2500, ["late: patient's clock breached"]),
        ("pw-refused", 2500, ["delivery refused at the door"]),
    ]
    # the UCR ladder marks the breach with a rung: an escalation, not a breached event
    breach = next(e for e in late.events if is_complete_breach(e))
    assert breach.kind is EventKind.ESCALATED
    refusal = next(e for e in refused.events if e.kind is EventKind.REFUSED_DELIVERY)
    assert breach.event_id in missed[0].caused_by and refusal.event_id in missed[1].caused_by
    assert missed_top_ups(events, CONTRACTS, TEAM, Q4.next()) == []


def test_position_shows_what_is_earned_at_risk_and_waiting_for_the_outcome() -> None:
    s = Scenario()
    s.accept("urgent-response", T0 + 5 * MINUTE)
    s.complete("urgent-response", T0 + HOUR, response_output(T0 + HOUR))
    now = T0 + 2 * HOUR
    (response, gp) = position(s.events, None, now, CONTRACT, UCR).handovers
    assert (response.status, response.base, response.top_up, response.withheld,
            response.released) == ("completed", 18000, 2500, 1800, None)
    assert (gp.status, gp.top_up_at_risk, gp.top_up_missed) == ("open", 1000, [])

    s.tick(T0 + HOUR + 2 * DAY + MINUTE)  # the GP's 2-day clock breaches: its top-up is lost
    (_, gp) = position(s.events, None, T0 + 3 * DAY, CONTRACT, UCR).handovers
    assert (gp.top_up_at_risk, gp.top_up_missed) == (0, ["late: patient's clock breached"])


def test_position_after_the_outcome() -> None:
    s = Scenario().simple()
    answer = outcome("pw-1", Outcome.POOR, T0 + 3 * DAY)
    pos = position(s.events, answer, T0 + 3 * DAY, CONTRACT, UCR)
    assert pos.outcome == "poor"
    assert [(h.withheld, h.released) for h in pos.handovers] == [(1800, 0), (700, 0)]
    by_default = position(s.events, None, T0 + 20 * DAY, CONTRACT, UCR)
    assert by_default.outcome == "neither-good-nor-poor"
    assert [h.released for h in by_default.handovers] == [900, 350]
