"""Provider commands: the FHIR Task life cycle, refusals, idempotency and the broker pattern."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pathways.commands import HoldPathway, Reassign, Refusal
from pathways.engine import PathwayRun
from pathways.events import NotificationKind
from pathways.model import EscalationAction
from pathways.state import BusinessStatus, PathwayState, SlaState, TaskStatus
from tests.engine.engine_builders import HOOK, T0, command, definition, kinds, start, step

H = timedelta(hours=1)
S = TaskStatus

REPORT = definition(
    step("report", "gp", handover=[
        {"name": "summary", "type": "text"},
        {"name": "outcome", "type": "coded", "codes": ["home", "bed"]},
        {"name": "score", "type": "integer", "required": False},
    ]),
    step("visit", "nurse", ("report",)),
)
GOOD = {"summary": "Stable.", "outcome": "home"}

# How to bring a fresh handover to each status with provider moves.
ROUTE = {
    S.REQUESTED: [],
    S.ACCEPTED: [S.ACCEPTED],
    S.IN_PROGRESS: [S.ACCEPTED, S.IN_PROGRESS],
    S.ON_HOLD: [S.ACCEPTED, S.ON_HOLD],
    S.COMPLETED: [S.COMPLETED],
}
ALLOWED = {
    S.REQUESTED: {S.ACCEPTED, S.REJECTED, S.COMPLETED},
    S.ACCEPTED: {S.IN_PROGRESS, S.ON_HOLD, S.COMPLETED, S.FAILED},
    S.IN_PROGRESS: {S.ON_HOLD, S.COMPLETED, S.FAILED},
    S.ON_HOLD: {S.IN_PROGRESS, S.COMPLETED, S.FAILED},
    S.COMPLETED: set(),
}


def _move(run: PathwayRun, status: TaskStatus, at: timedelta = H) -> None:
    output = GOOD if status is S.COMPLETED else None
    reason = "no capacity" if status in (S.REJECTED, S.FAILED) else None
    run.apply_provider(command(run, "report.1", status, output=output, reason=reason), T0 + at)


def _at(status: TaskStatus) -> PathwayRun:
    run = start(REPORT)
    for move in ROUTE[status]:
        _move(run, move)
    run.take_effects()
    return run


CASES = [(a, b) for a in ROUTE for b in S]


@pytest.mark.parametrize(("current", "target"), CASES, ids=[f"{a}->{b}" for a, b in CASES])
def test_provider_transitions_follow_the_sdoh_referral_profile(
    current: TaskStatus, target: TaskStatus
) -> None:
    run = _at(current)
    before = run.state.model_copy(deep=True)
    output = GOOD if target is S.COMPLETED else None
    reason = "no capacity" if target in (S.REJECTED, S.FAILED) else None
    c = command(run, "report.1", target, provider="gp-a", output=output, reason=reason)
    if target is current and ROUTE[current]:  # the retry of the command that made it
        run.check_provider(c)
        run.apply_provider(c, T0 + 2 * H)
        assert run.state == before
        assert not run.take_effects()
    elif target in ALLOWED[current]:
        run.check_provider(c)
        handover = run.apply_provider(c, T0 + 2 * H)
        assert handover.version > before.handovers["report.1"].version
        if target in (S.REJECTED, S.FAILED):
            assert handover.attempts[0].outcome == target.value
        else:
            assert handover.status is target
    else:
        with pytest.raises(Refusal) as refused:
            run.check_provider(c)
        assert refused.value.kind == "conflict"
        with pytest.raises(Refusal):
            run.apply_provider(c, T0 + 2 * H)
        assert run.state == before
        assert not run.take_effects()


def test_a_refused_transition_names_both_statuses() -> None:
    run = _at(S.REQUESTED)
    with pytest.raises(Refusal) as refused:
        run.check_provider(command(run, "report.1", S.IN_PROGRESS))
    assert refused.value.problems == ["cannot move handover report.1 from requested to in-progress"]


def test_cancelled_is_for_the_requester_only() -> None:
    run = _at(S.ACCEPTED)
    with pytest.raises(Refusal) as refused:
        run.check_provider(command(run, "report.1", S.CANCELLED))
    assert refused.value.kind == "conflict"


def test_completion_from_requested_implies_acceptance() -> None:
    run = _at(S.REQUESTED)
    _move(run, S.COMPLETED, 3 * H)
    handover = run.state.handovers["report.1"]
    assert handover.accepted_at == handover.completed_at == T0 + 3 * H
    assert handover.attempts[-1].accepted_at == T0 + 3 * H
    assert handover.output == GOOD
    assert handover.work_time == timedelta(0) and handover.lead_time == 3 * H


def test_start_hold_resume_record_times_and_events() -> None:
    run = _at(S.REQUESTED)
    for i, status in enumerate([S.ACCEPTED, S.IN_PROGRESS, S.ON_HOLD, S.IN_PROGRESS], 1):
        _move(run, status, i * H)
    handover = run.state.handovers["report.1"]
    assert handover.accepted_at == T0 + H and handover.started_at == T0 + 2 * H
    assert kinds(run.take_effects()) == ["accepted", "started", "held", "resumed"]
    assert handover.version == 5


def test_another_providers_handover_is_indistinguishable_from_a_missing_one() -> None:
    run = _at(S.REQUESTED)
    with pytest.raises(Refusal) as other:
        run.check_provider(command(run, "report.1", S.ACCEPTED, provider="gp-b"))
    with pytest.raises(Refusal) as missing:
        run.check_provider(command(run, "nope.1", S.ACCEPTED, provider="gp-b"))
    assert other.value.kind == missing.value.kind == "not-found"
    assert other.value.problems[0].replace("report", "nope") == missing.value.problems[0]


def test_a_stale_version_is_a_conflict_and_the_current_one_passes() -> None:
    run = _at(S.REQUESTED)
    with pytest.raises(Refusal) as refused:
        run.check_provider(command(run, "report.1", S.ACCEPTED, version=7))
    assert refused.value.kind == "conflict"
    assert "version 1" in refused.value.problems[0]
    run.apply_provider(command(run, "report.1", S.ACCEPTED, version=1), T0 + H)
    assert run.state.handovers["report.1"].version == 2


@pytest.mark.parametrize(
    ("status", "output", "reason", "problem"),
    [
        (S.REJECTED, None, None, "a rejected handover needs a reason"),
        (S.FAILED, None, "  ", "a failed handover needs a reason"),
        (S.ACCEPTED, {"summary": "x"}, None, "output is only accepted with status completed"),
    ],
)
def test_malformed_commands_are_invalid(
    status: TaskStatus, output: dict | None, reason: str | None, problem: str
) -> None:
    run = _at(S.ACCEPTED if status is S.FAILED else S.REQUESTED)
    with pytest.raises(Refusal) as refused:
        run.check_provider(command(run, "report.1", status, output=output, reason=reason))
    assert (refused.value.kind, refused.value.problems) == ("invalid", [problem])


def test_provider_commands_are_refused_while_on_hold_and_after_the_end() -> None:
    run = _at(S.REQUESTED)
    run.apply_hold(HoldPathway(reason="patient in hospital", actor="coordinator:ann"), T0 + H)
    with pytest.raises(Refusal) as refused:
        run.check_provider(command(run, "report.1", S.ACCEPTED))
    assert (refused.value.kind, refused.value.problems) == ("conflict", ["pathway is on hold"])


def test_an_identical_repeat_is_acknowledged_without_change() -> None:
    run = _at(S.REQUESTED)
    first = command(run, "report.1", S.COMPLETED, output={**GOOD, "score": None}, version=1)
    run.apply_provider(first, T0 + H)
    run.take_effects()
    after = run.state.model_copy(deep=True)
    retry = first.model_copy(update={"output": dict(GOOD)})  # same once normalised
    run.check_provider(retry)
    assert run.apply_provider(retry, T0 + 2 * H) == after.handovers["report.1"]
    assert run.state == after
    assert not run.take_effects()


def test_a_repeated_rejection_is_acknowledged_after_the_broker_moved_on() -> None:
    run = _at(S.REQUESTED)
    reject = command(run, "report.1", S.REJECTED, reason="no capacity")
    run.apply_provider(reject, T0 + H)
    assert run.state.handovers["report.1"].provider_id == "gp-b"
    after = run.state.model_copy(deep=True)
    run.apply_provider(reject, T0 + 2 * H)
    assert run.state == after


def test_a_different_command_is_not_a_repeat() -> None:
    run = _at(S.REQUESTED)
    run.apply_provider(command(run, "report.1", S.ACCEPTED), T0 + H)
    with pytest.raises(Refusal):
        run.check_provider(command(run, "report.1", S.REJECTED, reason="changed my mind"))


def test_a_provider_given_the_handover_back_is_not_taken_for_a_retry() -> None:
    run = _at(S.REQUESTED)
    reject = command(run, "report.1", S.REJECTED, reason="full")
    run.apply_provider(reject, T0 + H)
    run.apply_reassign(Reassign(handover_id="report.1", provider_id="gp-a", reason="asked again",
                                actor="coordinator:ann"), T0 + 2 * H)
    run.apply_provider(reject, T0 + 3 * H)
    assert [a.provider_id for a in run.state.handovers["report.1"].attempts] == [
        "gp-a", "gp-b", "gp-a", "gp-c"]


def test_a_non_conforming_delivery_only_counts_and_is_refused_with_every_problem() -> None:
    run = _at(S.ACCEPTED)
    before = run.state.model_copy(deep=True)
    bad = command(run, "report.1", S.COMPLETED,
                  output={"outcome": "nursing-home", "score": 2.5, "nhs": "9434765919"})
    run.check_provider(bad)  # the contract is not a validator's job: the refusal must be counted
    with pytest.raises(Refusal) as refused:
        run.apply_provider(bad, T0 + H)
    assert refused.value.kind == "non-conforming"
    assert refused.value.problems == [
        "missing required field 'summary'",
        "field 'outcome' must be one of home, bed",
        "field 'score' must be a whole number",
        "unknown field 'nhs'",
    ]
    handover = run.state.handovers["report.1"]
    assert handover.refused_deliveries == 1
    assert handover.model_copy(update={"refused_deliveries": 0}) == before.handovers["report.1"]
    assert run.state.refused_deliveries == 1
    [event] = run.take_effects().events
    assert event.kind == "refused-delivery"
    assert event.detail["fields"] == ["nhs", "outcome", "score", "summary"]
    assert "9434765919" not in event.model_dump_json()
    assert "nursing-home" not in event.model_dump_json() + str(refused.value), "named, not echoed"
    with pytest.raises(Refusal):
        run.apply_provider(bad, T0 + 2 * H)
    assert run.state.handovers["report.1"].refused_deliveries == 2, "a retry is counted again"
    _move(run, S.COMPLETED, 3 * H)
    assert run.state.handovers["report.1"].status is S.COMPLETED


def test_rejection_moves_the_handover_to_the_next_provider_then_escalates() -> None:
    run = _at(S.REQUESTED)
    run.apply_provider(command(run, "report.1", S.REJECTED, reason="list closed"), T0 + H)
    handover = run.state.handovers["report.1"]
    assert (handover.provider_id, handover.status) == ("gp-b", S.REQUESTED)
    assert handover.dispatched_at == T0 + H and handover.ready_at == T0
    assert handover.accept_by == T0 + 5 * H, "gp-b's own time to accept"
    assert handover.complete_by == T0 + 48 * H, "the patient's clock is not reset"
    assert [(a.provider_id, a.outcome, a.reason) for a in handover.attempts] == [
        ("gp-a", "rejected", "list closed"), ("gp-b", None, None)]
    effects = run.take_effects()
    assert kinds(effects) == ["rejected", "reassigned", "dispatched"]
    assert effects.events[0].detail == {"reason": "list closed"}
    assert effects.events[0].actor == "provider:gp-a"
    assert effects.events[1].detail == {"from": "gp-a", "to": "gp-b",
                                        "reason": "handover rejected by gp-a"}
    assert effects.events[1].actor == "engine", "the broker's reassignment is the engine's"
    assert effects.notifications == [], "gp-b polls; gp-a dropped it itself"

    run.apply_provider(command(run, "report.1", S.ACCEPTED), T0 + 2 * H)
    run.apply_provider(command(run, "report.1", S.FAILED, reason="no clinician"), T0 + 3 * H)
    assert handover.provider_id == "gp-c" and handover.accepted_at is None
    [note] = run.take_effects().notifications
    assert (note.provider_id, note.kind, note.webhook) == ("gp-c", NotificationKind.DISPATCHED,
                                                           HOOK)

    run.apply_provider(command(run, "report.1", S.REJECTED, reason="too far"), T0 + 4 * H)
    assert (handover.provider_id, handover.status) == ("gp-c", S.REJECTED)
    assert handover.awaiting_coordinator and handover.business_status is BusinessStatus.ESCALATED
    [escalation] = run.state.escalations
    assert escalation.level is EscalationAction.ALERT_COORDINATOR
    assert "no alternate provider left" in escalation.reason
    assert run.state.sla_state is SlaState.AT_RISK
    assert handover in run.state.open_handovers
    assert kinds(run.take_effects()) == ["rejected", "escalated"]
    run.tick(T0 + 60 * H)
    assert run.state.sla_state is SlaState.BREACHED, "the patient still waits: the due time counts"


def test_provider_commands_leave_patient_data_out_of_events() -> None:
    run = _at(S.REQUESTED)
    _move(run, S.COMPLETED)
    text = run.take_effects().model_dump_json()
    assert "9434765919" not in text and "Test Patient" not in text and "Stable." not in text


def test_state_with_refusals_and_attempts_round_trips() -> None:
    run = _at(S.REQUESTED)
    run.apply_provider(command(run, "report.1", S.REJECTED, reason="full"), T0 + H)
    assert PathwayState.model_validate_json(run.state.model_dump_json()) == run.state


def test_a_providers_status_reason_on_hold_is_kept_and_cleared_on_resumption() -> None:
    run = _at(S.IN_PROGRESS)
    run.take_effects()
    run.apply_provider(command(run, "report.1", S.ON_HOLD, reason="awaiting bloods"), T0 + H)
    handover = run.state.handovers["report.1"]
    assert handover.status_reason == "awaiting bloods"
    assert run.take_effects().events[0].detail == {"reason": "awaiting bloods"}
    run.apply_provider(command(run, "report.1", S.IN_PROGRESS), T0 + 2 * H)
    assert handover.status_reason is None
