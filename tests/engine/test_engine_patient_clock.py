"""Two clocks per handover: the patient's (completion, from ready) and each provider's
(acceptance, per attempt); in-flight pathways keep the original rules."""

from __future__ import annotations

from datetime import timedelta

from pathways.catalogue import Catalogue
from pathways.commands import ExtendDue, HoldPathway, Reassign, ResumePathway
from pathways.engine import PathwayRun
from pathways.events import EventKind
from pathways.model import EscalationAction
from pathways.state import (
    RULES_ORIGINAL,
    BusinessStatus,
    EscalationStatus,
    PathwayState,
    SlaState,
)
from tests.engine.engine_builders import PATIENT, T0, command, complete, definition, start, step

M = timedelta(minutes=1)
H = timedelta(hours=1)
LADDER = [
    {"at": "-PT2H", "action": "remind-provider", "clock": "accept"},
    {"at": "PT0S", "action": "alert-coordinator", "clock": "accept"},
    {"at": "PT0S", "action": "mark-breached"},
    {"at": "PT2H", "action": "reassign"},
]
REFERRAL = definition(step("referral", "gp", accept="PT4H", complete="P2D"), escalation=LADDER)


def test_urgent_community_response_breaches_at_two_hours_despite_the_ladder_reassigning(
    catalogue: Catalogue,
) -> None:
    run = PathwayRun.begin("pw-ucr", catalogue.get("urgent-community-response"), PATIENT, T0)
    run.tick(T0 + 45 * M)
    handover = run.state.handovers["urgent-response.1"]
    assert len(handover.attempts) == 2, "the ladder reassigned at 45 minutes"
    assert handover.accept_by == T0 + 75 * M and handover.complete_by == T0 + 2 * H
    run.apply_provider(command(run, "urgent-response.1", "accepted"), T0 + 50 * M)
    run.tick(T0 + 121 * M)
    assert handover.business_status is BusinessStatus.BREACHED
    assert run.state.sla_state is SlaState.BREACHED


def test_the_original_rules_still_restart_both_clocks_and_rearm_on_extend() -> None:
    run = PathwayRun.begin("pw-old", REFERRAL, PATIENT, T0, rules_version=RULES_ORIGINAL)
    run.tick(T0 + 50 * H)
    handover = run.state.handovers["referral.1"]
    assert handover.provider_id == "gp-b"
    assert handover.complete_by == T0 + 98 * H and handover.business_status is BusinessStatus.ON_TRACK
    assert len(run.state.escalations) == 4, "one escalation per rung"
    assert all(e.status is EscalationStatus.OPEN for e in run.state.escalations)
    run.tick(T0 + 52 * H)
    assert handover.fired_rungs == [0]
    run.apply_extend(ExtendDue(handover_id="referral.1", by=H, reason="r", actor="c"),
                     T0 + 52 * H + 30 * M)
    assert handover.accept_by == T0 + 55 * H and handover.fired_rungs == [], "re-armed"


def test_a_carried_state_without_a_rules_version_runs_the_original_rules() -> None:
    data = start(REFERRAL).state.model_dump(mode="json")
    del data["rules_version"]
    assert PathwayState.model_validate(data).rules_version == RULES_ORIGINAL


def test_complete_clock_attempt_gives_each_provider_the_full_time() -> None:
    defn = definition(step("referral", "gp", accept="PT4H", complete="P2D")
                      | {"sla": {"accept_within": "PT4H", "complete_within": "P2D",
                                 "complete_clock": "attempt"}}, escalation=LADDER)
    run = start(defn)
    run.apply_reassign(Reassign(handover_id="referral.1", provider_id="gp-b", reason="r",
                                actor="coordinator:ann"), T0 + 10 * H)
    assert run.state.handovers["referral.1"].complete_by == T0 + 58 * H


def test_a_coordinator_reassignment_keeps_the_due_time_and_resolves_the_escalation() -> None:
    run = start(REFERRAL)
    run.tick(T0 + 4 * H)  # accept-clock alert: escalation 1 raised to alert-coordinator
    (escalation,) = run.state.escalations
    assert escalation.level is EscalationAction.ALERT_COORDINATOR
    run.take_effects()
    run.apply_reassign(Reassign(handover_id="referral.1", provider_id="gp-b", reason="capacity",
                                actor="coordinator:ann"), T0 + 5 * H)
    assert run.state.handovers["referral.1"].complete_by == T0 + 48 * H
    assert (escalation.status, escalation.resolution, escalation.resolved_by) == (
        EscalationStatus.RESOLVED, "reassigned", "engine")
    resolved = [e for e in run.take_effects().events if e.kind is EventKind.ESCALATION_RESOLVED]
    assert resolved[0].detail == {"escalation_id": 1, "resolution": "reassigned"}


def test_completion_resolves_the_handovers_escalation() -> None:
    run = start(REFERRAL)
    run.tick(T0 + 2 * H)
    complete(run, "referral.1", T0 + 3 * H)
    assert run.state.escalations[0].resolution == "completed"


def test_a_hold_pauses_both_clocks_across_a_reassignment() -> None:
    run = start(REFERRAL)
    run.apply_hold(HoldPathway(reason="admitted", actor="coordinator:ann"), T0 + H)
    run.apply_resume(ResumePathway(actor="coordinator:ann"), T0 + 11 * H)
    handover = run.state.handovers["referral.1"]
    assert handover.accept_by == T0 + 14 * H and handover.complete_by == T0 + 58 * H
    run.apply_reassign(Reassign(handover_id="referral.1", provider_id="gp-b", reason="r",
                                actor="coordinator:ann"), T0 + 12 * H)
    assert handover.accept_by == T0 + 16 * H and handover.complete_by == T0 + 58 * H


def test_the_task_keeps_the_patients_due_time_and_carries_the_accept_by() -> None:
    from pathways.fhir import ACCEPT_BY_EXTENSION, task_resource

    run = start(REFERRAL)
    run.apply_reassign(Reassign(handover_id="referral.1", provider_id="gp-b", reason="r",
                                actor="coordinator:ann"), T0 + 10 * H)
    handover = run.state.handovers["referral.1"]
    restriction = task_resource(run.state, handover, "")["restriction"]
    assert restriction["period"]["end"] == "2026-01-07T09:00:00Z", "ready + 2 days"
    assert restriction["extension"] == [
        {"url": ACCEPT_BY_EXTENSION, "valueDateTime": "2026-01-05T23:00:00Z"}]
    run.apply_provider(command(run, "referral.1", "accepted"), T0 + 11 * H)
    assert "extension" not in task_resource(run.state, handover, "")["restriction"]
