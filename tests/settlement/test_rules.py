"""Hand-worked examples of every ledger rule, on the shipped UCR pathway and contract.

Contract (pathways/contracts/urgent-community-response.yaml): UCR team base 18,000p, 10%
withheld (1,800p), top-up 2,500p when on time and first time right; GP base 3,500p, 20% withheld
(700p), top-up 1,000p when on time, first time right and within 2 days of the response; outcome
deadline 14 days after the pathway ends, default neither-good-nor-poor (50% released).
"""

from __future__ import annotations

import pytest

from pathways.settlement import Outcome, derive
from pathways.settlement.money import percent_of, round_half_away, split
from tests.settlement.support import (
    CONTRACTS,
    DAY,
    HOUR,
    MINUTE,
    T0,
    Scenario,
    amounts,
    close,
    gp_output,
    outcome,
    response_output,
)

UCR, GP = "elmshire-ucr-central", "elmshire-central-pcn"
LATER = T0 + 60 * DAY


def test_on_time_first_time_right_pays_base_and_top_up_and_withholds() -> None:
    s = Scenario().simple()
    ledger = derive(s.events, [outcome("pw-1", Outcome.VERY_GOOD, T0 + 3 * DAY)], CONTRACTS, LATER)
    assert amounts(ledger) == [
        ("urgent-response.1", UCR, "base", 18000),
        ("urgent-response.1", UCR, "top-up", 2500),
        ("urgent-response.1", UCR, "withhold", -1800),
        ("gp-follow-up.1", GP, "base", 3500),
        ("gp-follow-up.1", GP, "top-up", 1000),
        ("gp-follow-up.1", GP, "withhold", -700),
        ("gp-follow-up.1", GP, "withhold-release", 700),
        ("urgent-response.1", UCR, "withhold-release", 1800),
    ]
    response = next(e for e in s.events if e.kind == "completed")
    assert ledger[0].caused_by == [response.event_id]
    assert {e.period for e in ledger} == {"2026-Q4"}
    assert all(e.contract == "ucr-alliance-subcontract@1" for e in ledger)


def test_late_response_gets_base_but_no_top_up() -> None:
    s = Scenario()
    s.accept("urgent-response", T0 + 10 * MINUTE)
    done = T0 + 2 * HOUR + 30 * MINUTE  # the 2-hour patient's clock breached at T0 + 2 h
    s.complete("urgent-response", done, response_output(done))
    ledger = derive(s.events, [], CONTRACTS, LATER)
    assert amounts(ledger) == [
        ("urgent-response.1", UCR, "base", 18000),
        ("urgent-response.1", UCR, "withhold", -1800),
    ]


def test_refused_delivery_loses_the_top_up_only() -> None:
    s = Scenario()
    s.accept("urgent-response", T0 + 10 * MINUTE)
    s.refused("urgent-response", T0 + 50 * MINUTE)
    s.complete("urgent-response", T0 + HOUR, response_output(T0 + HOUR))
    ledger = derive(s.events, [], CONTRACTS, LATER)
    assert [a[2:] for a in amounts(ledger)] == [("base", 18000), ("withhold", -1800)]


def test_top_up_missed_when_the_gp_reviews_more_than_two_days_after_the_response() -> None:
    """On the GP's own clock (extended by a day) and first time right, but 2 days 3 hours after
    the response: the after-step criterion fails, so no top-up."""
    s = Scenario()
    s.accept("urgent-response", T0 + 10 * MINUTE)
    s.complete("urgent-response", T0 + HOUR, response_output(T0 + HOUR))
    s.accept("gp-follow-up", T0 + 2 * HOUR)
    s.extend("gp-follow-up", DAY, T0 + DAY)
    done = T0 + HOUR + 2 * DAY + 3 * HOUR
    s.complete("gp-follow-up", done, gp_output(done))
    gp = [a for a in amounts(derive(s.events, [], CONTRACTS, T0 + 4 * DAY)) if a[1] == GP]
    assert gp == [("gp-follow-up.1", GP, "base", 3500), ("gp-follow-up.1", GP, "withhold", -700)]


def test_extension_after_a_breach_puts_the_handover_back_on_time() -> None:
    s = Scenario()
    s.accept("urgent-response", T0 + 10 * MINUTE)
    s.extend("urgent-response", 30 * MINUTE, T0 + 2 * HOUR + MINUTE)  # breached, then extended
    s.complete("urgent-response", T0 + 2 * HOUR + 20 * MINUTE,
               response_output(T0 + 2 * HOUR + 20 * MINUTE))
    rules = [a[2] for a in amounts(derive(s.events, [], CONTRACTS, LATER))]
    assert "top-up" in rules


@pytest.mark.parametrize(("answer", "released_ucr", "released_gp"), [
    (Outcome.VERY_GOOD, 1800, 700),
    (Outcome.GOOD, 1800, 700),
    (Outcome.NEITHER, 900, 350),
    (Outcome.DONT_KNOW, 900, 350),
    (Outcome.POOR, 0, 0),
    (Outcome.VERY_POOR, 0, 0),
])
def test_withheld_share_released_by_the_outcome_score(
    answer: Outcome, released_ucr: int, released_gp: int
) -> None:
    s = Scenario().simple()
    ledger = derive(s.events, [outcome("pw-1", answer, T0 + 5 * DAY)], CONTRACTS, LATER)
    released = {e.provider_id: e.amount for e in ledger if e.rule == "withhold-release"}
    assert released == {k: v for k, v in {UCR: released_ucr, GP: released_gp}.items() if v}
    assert all(e.at == T0 + 5 * DAY for e in ledger if e.rule == "withhold-release")


def test_no_outcome_by_the_deadline_releases_the_default_then_nothing_more() -> None:
    s = Scenario().simple()  # pathway completes at T0 + 1 h + 1 day; deadline 14 days later
    deadline = T0 + HOUR + DAY + 14 * DAY
    before = derive(s.events, [], CONTRACTS, deadline - MINUTE)
    assert not [e for e in before if e.rule == "withhold-release"]
    after = derive(s.events, [], CONTRACTS, deadline)
    releases = [(e.provider_id, e.amount, e.at) for e in after if e.rule == "withhold-release"]
    assert releases == [(GP, 350, deadline), (UCR, 900, deadline)]
    assert after[: len(before)] == before


def test_late_outcome_after_the_close_is_a_true_up_in_the_next_period() -> None:
    """Pathway ends 12 Dec 2026; the default (50%) is released on 26 Dec in 2026-Q4; Q4 closes
    on 5 Jan; the patient's 'very good' recorded on 10 Jan releases the other 50% in 2027-Q1,
    marked as adjusting 2026-Q4. Q4's lines are the same before and after."""
    start = T0 + 68 * DAY  # 12 Dec 2026, 09:00
    s = Scenario(start=start).simple(gp_after=2 * HOUR)
    closing = close("2026-Q4", start + 24 * DAY)
    late = outcome("pw-1", Outcome.VERY_GOOD, start + 29 * DAY)
    at_close = derive(s.events, [closing], CONTRACTS, closing.at)
    ledger = derive(s.events, [closing, late], CONTRACTS, start + 40 * DAY)
    assert ledger[: len(at_close)] == at_close
    true_ups = [(e.provider_id, e.rule.value, e.amount, e.period, e.adjusts)
                for e in ledger[len(at_close):] if e.pathway_id]
    assert true_ups == [(GP, "withhold-release", 350, "2027-Q1", "2026-Q4"),
                        (UCR, "withhold-release", 900, "2027-Q1", "2026-Q4")]
    assert [e for e in ledger if e.period == "2026-Q4"] == [
        e for e in at_close if e.period == "2026-Q4"]


def test_a_corrected_outcome_replaces_the_first_from_its_time_on() -> None:
    s = Scenario().simple()
    first = outcome("pw-1", Outcome.POOR, T0 + 3 * DAY)
    corrected = outcome("pw-1", Outcome.GOOD, T0 + 4 * DAY, n=2)
    ledger = derive(s.events, [first, corrected], CONTRACTS, LATER)
    ucr = [e.amount for e in ledger if e.provider_id == UCR and e.rule == "withhold-release"]
    assert ucr == [1800]  # poor released nothing (no line), good releases all of it
    entry = next(e for e in ledger if e.provider_id == UCR and e.rule == "withhold-release")
    assert corrected.input_id in entry.caused_by


def test_rounding_rules() -> None:
    assert percent_of(1005, 10) == 101  # 100.5 -> away from zero
    assert percent_of(-1005, 10) == -101
    assert percent_of(1004, 10) == 100
    assert round_half_away(__import__("fractions").Fraction(-5, 2)) == -3
    assert split(5001, {"a": 40, "b": 20, "c": 20, "d": 20}) == {
        "a": 2001, "b": 1000, "c": 1000, "d": 1000}
    assert split(-5001, {"a": 40, "b": 20, "c": 20, "d": 20}) == {
        "a": -2001, "b": -1000, "c": -1000, "d": -1000}
    assert sum(split(100, {"x": 1, "y": 1, "z": 1}).values()) == 100


def test_after_step_uses_the_occurrence_completed_before_this_handover() -> None:
    """A recurring earlier step: the criterion measures from its latest completion before this
    handover's, never from a later occurrence."""
    from datetime import timedelta

    from pathways.events import EventKind, PathwayEvent
    from pathways.settlement.rules import HandoverFacts, completions, criterion_holds
    from pathways.settlement.terms import AfterStep

    def done(seq: int, hours: int, step: str) -> HandoverFacts:
        event = PathwayEvent(event_id=f"pw:{seq}", pathway_id="pw", definition_id="d",
                             definition_version=1, seq=seq, kind=EventKind.COMPLETED,
                             at=T0 + hours * HOUR, handover_id=f"{step}.{seq}", step_id=step,
                             provider_id="p")
        return HandoverFacts(f"{step}.{seq}", step, "p", event)

    review, report, later_review = done(5, 0, "review"), done(10, 30, "report"), done(20, 31,
                                                                                    "review")
    steps = completions({f.handover_id: f for f in (review, report, later_review)})
    ok, ids, why = criterion_holds(AfterStep(step="review", within=timedelta(hours=24)),
                                   report, steps)
    assert (ok, ids, why) == (False, ["pw:5"], "more than 24 h after review")


def test_cancelled_pathway_pays_completed_handovers_and_releases_by_the_default() -> None:
    """The response was delivered, then the pathway was cancelled before the GP review: the
    team keeps its base and top-up; the withheld share waits for the outcome deadline from the
    cancellation; the GP is paid nothing."""
    from pathways.commands import CancelPathway

    s = Scenario()
    s.accept("urgent-response", T0 + 5 * MINUTE)
    s.complete("urgent-response", T0 + HOUR, response_output(T0 + HOUR))
    s.run.apply_cancel(CancelPathway(reason="admitted to hospital", actor="coordinator:test"),
                       T0 + 5 * HOUR)
    s.tick(T0 + 5 * HOUR)
    ledger = derive(s.events, [], CONTRACTS, T0 + 5 * HOUR + 14 * DAY)
    assert amounts(ledger) == [
        ("urgent-response.1", UCR, "base", 18000),
        ("urgent-response.1", UCR, "top-up", 2500),
        ("urgent-response.1", UCR, "withhold", -1800),
        ("urgent-response.1", UCR, "withhold-release", 900),
    ]
    assert ledger[-1].at == T0 + 5 * HOUR + 14 * DAY
