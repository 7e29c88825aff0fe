"""A webhook that could not be delivered is recorded and put in front of the coordinator."""

from __future__ import annotations

from datetime import timedelta

from pathways.commands import CancelPathway
from pathways.events import EventKind, NotificationKind
from pathways.inbox import open_escalations
from pathways.model import EscalationAction
from pathways.state import BusinessStatus, EscalationStatus
from tests.engine.engine_builders import PATIENT, T0, complete, definition, start, step

H = timedelta(hours=1)
DEFN = definition(step("referral", "gp"), step("visit", "nurse", after=("referral",)))


def test_a_failed_notification_is_recorded_and_escalated_to_the_coordinator() -> None:
    run = start(DEFN)
    run.take_effects()
    run.notification_failed("referral.1", "gp-a", NotificationKind.DISPATCHED, 1,
                            "HTTP 404 after 16 attempts", T0 + H)
    events = run.take_effects().events
    assert [e.kind for e in events] == [EventKind.NOTIFICATION_FAILED, EventKind.ESCALATED]
    failed = events[0]
    assert failed.actor == "engine" and failed.handover_id == "referral.1"
    assert failed.provider_id == "gp-a"
    assert failed.detail == {"kind": "dispatched", "version": 1, "provider": "gp-a",
                             "reason": "HTTP 404 after 16 attempts"}
    (escalation,) = run.state.escalations
    assert escalation.level is EscalationAction.ALERT_COORDINATOR
    assert escalation.status is EscalationStatus.OPEN
    assert run.state.handovers["referral.1"].business_status is BusinessStatus.ESCALATED
    assert [i.escalation.id for i in open_escalations(events)] == [1]


def test_a_second_failure_raises_the_same_escalation_not_a_new_one() -> None:
    run = start(DEFN)
    for version in (1, 2):
        run.notification_failed("referral.1", "gp-a", NotificationKind.REMINDER, version,
                                "timeout", T0 + version * H)
    assert len(run.state.escalations) == 1


def test_the_reason_keeps_no_patient_data() -> None:
    run = start(DEFN)
    run.take_effects()
    body = f"400 bad request: patient {PATIENT.nhs_number} <Test Patient> " + "x" * 500
    run.notification_failed("referral.1", "gp-a", NotificationKind.DISPATCHED, 1, body, T0)
    reason = run.take_effects().events[0].detail["reason"]
    assert PATIENT.nhs_number not in reason and "<" not in reason and len(reason) <= 200


def test_unknown_or_closed_handovers_and_finished_pathways_are_only_recorded() -> None:
    run = start(DEFN)
    complete(run, "referral.1", T0 + H)
    run.take_effects()
    run.notification_failed("nope.9", "gp-a", NotificationKind.DISPATCHED, 1, "x", T0 + 2 * H)
    run.notification_failed("referral.1", "gp-a", NotificationKind.DISPATCHED, 1, "x",
                            T0 + 2 * H)
    run.apply_cancel(CancelPathway(reason="moved away", actor="coordinator:amy"), T0 + 3 * H)
    run.take_effects()
    run.notification_failed("visit.1", "nurse-a", NotificationKind.CANCELLED, 3, "x", T0 + 4 * H)
    events = run.take_effects().events
    assert [e.kind for e in events] == [EventKind.NOTIFICATION_FAILED]
    assert not run.state.escalations
