"""Coordinator commands: reassign, extend, hold, resume, cancel, notes and escalations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from pathways.commands import (
    AddNote,
    CancelPathway,
    EscalationAction,
    ExtendDue,
    HoldPathway,
    Reassign,
    Refusal,
    ResumePathway,
)
from pathways.engine import PathwayRun
from pathways.events import NotificationKind
from pathways.state import EscalationStatus, PathwayStatus, StepStatus, TaskStatus
from tests.engine.engine_builders import T0, command, complete, definition, kinds, start, step

H = timedelta(hours=1)
ANN = "coordinator:ann"
DEFN = definition(
    step("referral", "gp"),
    step("visit", "nurse", ("referral",)),
    step("bloods", "lab", ("referral",)),
    escalation=[{"at": "PT0S", "action": "alert-coordinator", "clock": "accept"}],
)


def _running() -> PathwayRun:
    run = start(DEFN)
    complete(run, "referral.1", T0 + H)
    run.take_effects()
    return run


def _reassign(handover_id: str, provider_id: str) -> Reassign:
    return Reassign(handover_id=handover_id, provider_id=provider_id, reason="capacity",
                    actor=ANN)


def _refused(check, c, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(Refusal) as refused:
        check(c)
    assert refused.value.kind == kind
    return refused.value.problems


def test_reassign_starts_a_new_attempt_and_tells_both_providers() -> None:
    run = _running()
    run.apply_provider(command(run, "visit.1", "accepted"), T0 + 2 * H)
    run.take_effects()
    handover = run.apply_reassign(_reassign("visit.1", "nurse-b"), T0 + 3 * H)
    assert (handover.provider_id, handover.status, handover.accepted_at) == (
        "nurse-b", TaskStatus.REQUESTED, None)
    assert handover.dispatched_at == T0 + 3 * H and handover.accept_by == T0 + 7 * H
    assert handover.complete_by == T0 + 49 * H, "the patient's clock runs from ready (T0 + 1 h)"
    assert [(a.provider_id, a.outcome, a.reason) for a in handover.attempts] == [
        ("nurse-a", "reassigned", "capacity"), ("nurse-b", None, None)]
    effects = run.take_effects()
    assert kinds(effects) == ["reassigned", "dispatched"]
    assert effects.events[0].actor == ANN
    assert [(n.provider_id, n.kind) for n in effects.notifications] == [
        ("nurse-a", NotificationKind.CANCELLED)]
    run.apply_provider(command(run, "visit.1", "completed"), T0 + 4 * H)
    assert handover.status is TaskStatus.COMPLETED


def test_reassign_refusals() -> None:
    run = _running()
    assert _refused(run.check_reassign, _reassign("visit.1", "gp-b"), "invalid") == [
        "provider gp-b does not fill role nurse"]
    assert _refused(run.check_reassign, _reassign("visit.1", "nurse-a"), "conflict") == [
        "handover visit.1 is already with provider nurse-a"]
    _refused(run.check_reassign, _reassign("referral.1", "gp-b"), "conflict")
    _refused(run.check_reassign, _reassign("nope.1", "gp-b"), "not-found")


def test_a_coordinator_reassign_revives_a_handover_no_provider_would_take() -> None:
    run = _running()
    run.apply_provider(command(run, "bloods.1", "rejected", reason="analyser down"), T0 + 2 * H)
    handover = run.state.handovers["bloods.1"]
    assert handover.awaiting_coordinator
    run.take_effects()
    run.apply_reassign(_reassign("bloods.1", "lab-a"), T0 + 5 * H)
    assert handover.status is TaskStatus.REQUESTED and handover.ended_at is None
    assert handover.status_reason is None and handover.accept_by == T0 + 9 * H
    assert run.take_effects().notifications == [], "lab-a polls; nothing to cancel"


def test_extend_refusals() -> None:
    run = _running()
    _refused(run.check_extend, ExtendDue(handover_id="referral.1", by=H, reason="x", actor=ANN),
             "conflict")
    late = run.state.handovers["visit.1"].complete_by
    _refused(run.check_extend, ExtendDue(handover_id="visit.1", until=late, reason="x", actor=ANN),
             "invalid")
    with pytest.raises(ValidationError, match="'until' needs a time zone"):
        ExtendDue(handover_id="visit.1", until=late.replace(tzinfo=None) + H, reason="x",
                  actor=ANN)
    _refused(run.check_extend, ExtendDue.model_construct(
        handover_id="visit.1", until=late.replace(tzinfo=None) + H, reason="x", actor=ANN),
        "invalid")
    far = ExtendDue(handover_id="visit.1", until=late + timedelta(days=400), reason="x", actor=ANN)
    assert "at most P366D" in _refused(run.check_extend, far, "invalid")[0]
    _refused(run.check_extend, ExtendDue(handover_id="gone.1", by=H, reason="x", actor=ANN),
             "not-found")


def test_an_extension_by_centuries_is_refused_clearly_before_it_reaches_the_engine() -> None:
    with pytest.raises(ValidationError, match=r"'by' may be at most P366D \(a year\)"):
        ExtendDue.model_validate({"handover_id": "visit.1", "by": "P99999999D", "reason": "x",
                                  "actor": ANN})


def test_hold_and_resume_only_from_the_right_status() -> None:
    run = _running()
    _refused(run.check_resume, ResumePathway(actor=ANN), "conflict")
    state = run.apply_hold(HoldPathway(reason="admitted", actor=ANN), T0 + 2 * H)
    assert (state.status, state.held_since) == (PathwayStatus.ON_HOLD, T0 + 2 * H)
    _refused(run.check_hold, HoldPathway(reason="again", actor=ANN), "conflict")
    _refused(run.check_reassign, _reassign("visit.1", "nurse-b"), "conflict")
    [event] = run.take_effects().events
    assert (event.kind, event.actor, event.detail) == ("pathway-held", ANN, {"reason": "admitted"})


def test_cancel_closes_every_open_handover_and_ends_the_pathway() -> None:
    run = _running()
    run.apply_provider(command(run, "bloods.1", "rejected", reason="analyser down"), T0 + 2 * H)
    run.apply_hold(HoldPathway(reason="admitted", actor=ANN), T0 + 2 * H)
    state = run.apply_cancel(CancelPathway(reason="moved away", actor=ANN), T0 + 5 * H)
    assert state.status is PathwayStatus.CANCELLED and state.ended_at == T0 + 5 * H
    assert state.held_total == 3 * H and state.held_since is None
    assert {h.id: h.status for h in state.handovers.values()} == {
        "referral.1": TaskStatus.COMPLETED, "visit.1": TaskStatus.CANCELLED,
        "bloods.1": TaskStatus.REJECTED}, "a closed handover keeps its outcome"
    assert state.handovers["visit.1"].attempts[-1].outcome == "cancelled"
    assert state.steps["visit"].status is StepStatus.ACTIVE
    effects = run.take_effects()
    assert kinds(effects)[-1] == "pathway-cancelled"
    assert [(n.provider_id, n.kind) for n in effects.notifications] == [
        ("nurse-a", NotificationKind.CANCELLED)]
    assert run.next_wakeup() is None and state.open_handovers == []
    _refused(run.check_cancel, CancelPathway(reason="again", actor=ANN), "conflict")
    assert _refused(run.check_provider, command(run, "referral.1", "accepted",
                                                provider="gp-a"), "conflict") == [
        "pathway is cancelled"]


def test_a_note_is_kept_but_its_text_stays_out_of_the_event_log() -> None:
    run = _running()
    note = run.apply_note(AddNote(text="Daughter (Jane Doe) is carer", actor=ANN), T0 + 2 * H)
    assert run.state.notes == [note] and note.author == ANN and note.at == T0 + 2 * H
    effects = run.take_effects()
    assert kinds(effects) == ["note"] and "Jane" not in effects.model_dump_json()


def test_escalations_are_acknowledged_then_resolved() -> None:
    run = _running()
    run.tick(T0 + 5 * H)
    assert [e.handover_id for e in run.state.escalations] == ["bloods.1", "visit.1"]
    first = EscalationAction(escalation_id=1, actor=ANN)
    run.take_effects()
    escalation = run.apply_acknowledge(first, T0 + 6 * H)
    assert (escalation.status, escalation.acknowledged_by) == (EscalationStatus.ACKNOWLEDGED, ANN)
    _refused(run.check_acknowledge, first, "conflict")
    run.apply_resolve(first, T0 + 7 * H)
    assert escalation.status is EscalationStatus.RESOLVED
    assert escalation.resolved_at == T0 + 7 * H
    _refused(run.check_resolve, first, "conflict")
    run.apply_resolve(EscalationAction(escalation_id=2, actor=ANN), T0 + 7 * H)
    _refused(run.check_acknowledge, EscalationAction(escalation_id=9, actor=ANN), "not-found")
    events = run.take_effects().events
    assert [(e.kind.value, e.handover_id, e.actor) for e in events] == [
        ("escalation-acknowledged", "bloods.1", ANN),
        ("escalation-resolved", "bloods.1", ANN),
        ("escalation-resolved", "visit.1", ANN),
    ]


def test_apply_re_runs_the_check_and_changes_nothing_when_refused() -> None:
    run = _running()
    before = run.state.model_copy(deep=True)
    with pytest.raises(Refusal):
        run.apply_resume(ResumePathway(actor=ANN), T0 + 2 * H)
    with pytest.raises(Refusal):
        run.apply_reassign(_reassign("visit.1", "gp-a"), T0 + 2 * H)
    assert run.state == before and not run.take_effects()


def test_notes_on_acknowledge_and_resolve_are_kept_out_of_the_event_log() -> None:
    run = _running()
    run.tick(T0 + 6 * H)  # visit.1 and bloods.1 accept_by T0 + 5 h: alert-coordinator
    escalation = run.state.escalations[0]
    run.take_effects()
    run.apply_acknowledge(EscalationAction(escalation_id=escalation.id, actor=ANN,
                                           note="rang Jane Doe's daughter"), T0 + 7 * H)
    run.apply_resolve(EscalationAction(escalation_id=escalation.id, actor=ANN,
                                       note="Jane Doe seen"), T0 + 8 * H)
    assert escalation.acknowledged_note == "rang Jane Doe's daughter"
    assert (escalation.resolved_note, escalation.resolution) == ("Jane Doe seen", "coordinator")
    events = run.take_effects().events
    assert [e.detail for e in events] == [
        {"escalation_id": 1, "noted": True},
        {"escalation_id": 1, "resolution": "coordinator", "noted": True}]
    assert "Jane" not in str([e.model_dump() for e in events])


def test_a_finished_pathways_record_is_closed_to_notes_and_escalation_changes() -> None:
    run = _running()
    run.tick(T0 + 6 * H)
    run.apply_cancel(CancelPathway(reason="moved away", actor=ANN), T0 + 7 * H)
    problems = _refused(run.check_note, AddNote(text="late", actor=ANN), "conflict")
    assert problems == ["pathway is cancelled: its record is closed to notes"]
    _refused(run.check_acknowledge, EscalationAction(escalation_id=1, actor=ANN), "conflict")
    _refused(run.check_resolve, EscalationAction(escalation_id=1, actor=ANN), "conflict")
    with pytest.raises(Refusal):
        run.apply_note(AddNote(text="late", actor=ANN), T0 + 8 * H)
