"""Flow: which steps start when, conditions, recurrence, and dispatching a new handover."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pathways.engine.base import RunBase
from pathways.events import EventKind, NotificationKind
from pathways.ladder import due_times
from pathways.model import Step
from pathways.state import Attempt, Handover, PathwayStatus, StepStatus

FINISHED_STEP = (StepStatus.DONE, StepStatus.SKIPPED)


def release(run: RunBase, now: datetime) -> None:
    """Start every waiting step whose inputs are all done or skipped; finish when all are."""
    state = run.state
    progressed = True
    while progressed:
        progressed = False
        for step in run.definition.steps:
            st = state.steps[step.id]
            if st.status is StepStatus.WAITING and all(
                state.steps[a].status in FINISHED_STEP for a in step.after
            ):
                _start_step(run, step, now)
                progressed = True
    if all(st.status in FINISHED_STEP for st in state.steps.values()):
        state.status, state.ended_at = PathwayStatus.COMPLETED, now
        state.updated_at = now
        run.emit(EventKind.PATHWAY_COMPLETED, now)


def _start_step(run: RunBase, step: Step, now: datetime) -> None:
    state = run.state
    st = state.steps[step.id]
    when = step.when
    if when is not None and not when.holds(_delivered(run, when.step, when.field)):
        st.status, st.finished_at = StepStatus.SKIPPED, now
        state.updated_at = now
        detail = {"condition_step": when.step, "field": when.field}
        run.emit(EventKind.SKIPPED, now, step_id=step.id, detail=detail)
        return
    st.status, st.anchor_at = StepStatus.ACTIVE, now
    finished = [state.steps[a].finished_at for a in step.after]
    inputs = max((t for t in finished if t is not None), default=state.started_at)
    dispatch_occurrence(run, step, inputs, now)


def _delivered(run: RunBase, step_id: str, field: str) -> Any:
    """The field as delivered by the step's latest completed occurrence (None if absent)."""
    latest = run.state.latest_delivery(step_id)
    return None if latest is None else latest.output.get(field)


def dispatch_occurrence(run: RunBase, step: Step, inputs_complete_at: datetime,
                        now: datetime) -> None:
    """A new handover for the step's next occurrence, offered to the role's first provider."""
    st = run.state.steps[step.id]
    st.occurrences += 1
    st.next_ready_at = None
    provider = run.definition.providers_for(step)[0]
    accept_by, complete_by = due_times(step.sla, now)
    handover = Handover(
        id=f"{step.id}.{st.occurrences}",
        step_id=step.id,
        occurrence=st.occurrences,
        provider_id=provider.id,
        inputs_complete_at=inputs_complete_at,
        ready_at=now,
        dispatched_at=now,
        accept_by=accept_by,
        complete_by=complete_by,
        attempts=[Attempt(provider_id=provider.id, dispatched_at=now)],
        updated_at=now,
    )
    run.state.handovers[handover.id] = handover
    run.state.updated_at = now
    run.emit(EventKind.READY, now, handover=handover, detail={"occurrence": handover.occurrence})
    run.emit(EventKind.DISPATCHED, now, handover=handover)
    run.notify(handover, NotificationKind.DISPATCHED)


def fire_recurrence(run: RunBase, step_id: str, at: datetime) -> None:
    """The next occurrence of a recurring step falls due: dispatch it (told at `at`)."""
    scheduled = run.state.steps[step_id].next_ready_at
    assert scheduled is not None
    dispatch_occurrence(run, run.definition.step(step_id), scheduled, at)


def after_completion(run: RunBase, handover: Handover, now: datetime) -> None:
    """Schedule a recurring step's next occurrence, or finish the step and release others."""
    step = run.step(handover)
    st = run.state.steps[step.id]
    recurrence = step.recurrence
    if recurrence is not None and st.occurrences < recurrence.count:
        assert st.anchor_at is not None
        due = st.anchor_at + recurrence.every * st.occurrences
        if due <= now:
            dispatch_occurrence(run, step, now, now)
        else:
            st.next_ready_at = due
        return
    st.status, st.finished_at = StepStatus.DONE, now
    release(run, now)
