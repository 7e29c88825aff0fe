"""Steps become ready when their inputs are done: sequence, parallel, join, skip, recurrence."""

from __future__ import annotations

from datetime import timedelta

from pathways.events import NotificationKind
from pathways.state import PathwayState, PathwayStatus, StepStatus, TaskStatus
from tests.engine.engine_builders import HOOK, PATIENT, T0, complete, definition, kinds, start, step

H = timedelta(hours=1)

DIAMOND = definition(
    step("referral", "gp"),
    step("nursing", "nurse", ("referral",)),
    step("bloods", "lab", ("referral",)),
    step("review", "gp", ("nursing", "bloods")),
)


def test_begin_dispatches_the_first_step_to_the_roles_primary_provider() -> None:
    run = start(DIAMOND)
    handover = run.state.handovers["referral.1"]
    assert handover.provider_id == "gp-a"
    assert handover.status is TaskStatus.REQUESTED
    assert handover.ready_at == handover.dispatched_at == handover.inputs_complete_at == T0
    assert handover.accept_by == T0 + 4 * H and handover.complete_by == T0 + 48 * H
    assert [a.provider_id for a in handover.attempts] == ["gp-a"]
    effects = run.take_effects()
    assert kinds(effects) == ["pathway-started", "ready", "dispatched"]
    assert [e.event_id for e in effects.events] == ["pw-test:1", "pw-test:2", "pw-test:3"]
    assert all(e.definition_id == "test-pathway" and e.definition_version == 3
               for e in effects.events)
    [note] = effects.notifications
    assert (note.provider_id, note.kind, note.webhook, note.version, note.task) == (
        "gp-a", NotificationKind.DISPATCHED, HOOK, 1, {})
    assert not run.take_effects(), "take_effects drains the outbox"


def test_sequence_dispatches_the_next_step_on_completion_with_zero_gap() -> None:
    run = start(DIAMOND)
    complete(run, "referral.1", T0 + 3 * H)
    nursing = run.state.handovers["nursing.1"]
    assert nursing.inputs_complete_at == nursing.dispatched_at == T0 + 3 * H
    assert nursing.handover_gap == timedelta(0)


def test_parallel_branches_dispatch_together_and_the_join_waits_for_all() -> None:
    run = start(DIAMOND)
    complete(run, "referral.1", T0 + H)
    run.take_effects()
    assert {"nursing.1", "bloods.1"} <= run.state.handovers.keys()
    complete(run, "bloods.1", T0 + 2 * H)
    assert "review.1" not in run.state.handovers
    assert run.state.steps["review"].status is StepStatus.WAITING
    complete(run, "nursing.1", T0 + 5 * H)
    review = run.state.handovers["review.1"]
    assert review.inputs_complete_at == T0 + 5 * H, "the latest input completes the join"
    complete(run, "review.1", T0 + 6 * H)
    assert run.state.status is PathwayStatus.COMPLETED
    assert run.state.ended_at == T0 + 6 * H
    assert kinds(run.take_effects())[-1] == "pathway-completed"
    assert run.next_wakeup() is None


CONDITIONAL = definition(
    step("assess", "gp", handover=[
        {"name": "pathway", "type": "coded", "codes": ["0", "1", "2"]},
        {"name": "note", "type": "text", "required": False},
    ]),
    step("home-support", "nurse", ("assess",),
         when={"step": "assess", "field": "pathway", "in": ["1", "2"]}),
    step("follow-up", "gp", ("home-support",)),
)


def test_a_false_condition_skips_the_step_and_counts_as_done() -> None:
    run = start(CONDITIONAL)
    run.take_effects()
    complete(run, "assess.1", T0 + H, {"pathway": "0"})
    assert run.state.steps["home-support"].status is StepStatus.SKIPPED
    assert "home-support.1" not in run.state.handovers
    follow_up = run.state.handovers["follow-up.1"]
    assert follow_up.inputs_complete_at == T0 + H
    effects = run.take_effects()
    assert kinds(effects) == ["completed", "skipped", "ready", "dispatched"]
    assert effects.events[1].step_id == "home-support"


def test_a_true_condition_dispatches_the_step() -> None:
    run = start(CONDITIONAL)
    complete(run, "assess.1", T0 + H, {"pathway": "2"})
    assert run.state.steps["home-support"].status is StepStatus.ACTIVE
    assert run.state.handovers["home-support.1"].provider_id == "nurse-a"


def test_a_condition_on_a_field_never_delivered_sees_none() -> None:
    defn = definition(
        step("assess", "gp", handover=[{"name": "frail", "type": "boolean", "required": False}]),
        step("falls", "nurse", ("assess",),
             when={"step": "assess", "field": "frail", "not_equals": True}),
    )
    run = start(defn)
    complete(run, "assess.1", T0 + H, {})
    assert run.state.steps["falls"].status is StepStatus.ACTIVE


def test_every_step_skipped_completes_the_pathway() -> None:
    defn = definition(
        step("assess", "gp", handover=[{"name": "need", "type": "boolean"}]),
        step("visit", "nurse", ("assess",), when={"step": "assess", "field": "need",
                                                  "equals": True}),
    )
    run = start(defn)
    complete(run, "assess.1", T0 + H, {"need": False})
    assert run.state.status is PathwayStatus.COMPLETED


RECURRING = definition(
    step("intake", "gp"),
    step("review", "nurse", ("intake",), accept="PT4H", complete="P2D",
         recurrence={"every": "P7D", "count": 3}),
    step("discharge", "gp", ("review",)),
)


def test_recurring_occurrences_become_ready_on_schedule() -> None:
    run = start(RECURRING)
    complete(run, "intake.1", T0)
    complete(run, "review.1", T0 + 2 * H)
    assert "review.2" not in run.state.handovers
    assert run.state.steps["review"].next_ready_at == T0 + timedelta(days=7)
    assert run.next_wakeup() == T0 + timedelta(days=7)
    run.tick(T0 + timedelta(days=7))
    second = run.state.handovers["review.2"]
    assert second.ready_at == second.inputs_complete_at == T0 + timedelta(days=7)
    assert second.handover_gap == timedelta(0)
    assert second.occurrence == 2 and second.provider_id == "nurse-a"


def test_a_late_occurrence_releases_the_next_at_once_and_the_step_ends_after_count() -> None:
    run = start(RECURRING)
    complete(run, "intake.1", T0)
    complete(run, "review.1", T0 + H)
    run.tick(T0 + timedelta(days=7))
    late = T0 + timedelta(days=15)
    complete(run, "review.2", late)
    third = run.state.handovers["review.3"]
    assert third.ready_at == third.inputs_complete_at == late, "never before occurrence 2 ends"
    assert run.state.steps["review"].status is StepStatus.ACTIVE
    complete(run, "review.3", late + H)
    assert run.state.steps["review"].status is StepStatus.DONE
    assert run.state.steps["review"].occurrences == 3
    assert "discharge.1" in run.state.handovers
    assert "review.4" not in run.state.handovers


def test_a_condition_reads_the_latest_completed_occurrence() -> None:
    defn = definition(
        step("check", "gp", handover=[{"name": "stable", "type": "boolean"}],
             recurrence={"every": "P1D", "count": 2}),
        step("escalate", "nurse", ("check",),
             when={"step": "check", "field": "stable", "equals": False}),
    )
    run = start(defn)
    complete(run, "check.1", T0 + H, {"stable": True})
    run.tick(T0 + timedelta(days=1))
    complete(run, "check.2", T0 + timedelta(days=1, hours=1), {"stable": False})
    assert run.state.steps["escalate"].status is StepStatus.ACTIVE


def test_state_round_trips_through_json_for_continue_as_new() -> None:
    run = start(RECURRING)
    complete(run, "intake.1", T0)
    complete(run, "review.1", T0 + H)
    restored = PathwayState.model_validate_json(run.state.model_dump_json())
    assert restored == run.state
    assert restored.patient == PATIENT
    assert restored.steps["review"].next_ready_at == T0 + timedelta(days=7)
