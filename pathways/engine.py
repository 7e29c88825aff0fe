"""PathwayRun: the pure state machine of one patient's pathway (no Temporal import).

The workflow is a thin durable shell around this class: it passes in the current time, calls
`check_*` from Update validators and `apply_*` from Update handlers, asks `next_wakeup()` for its
durable timer and calls `tick()` when it fires, then drains `take_effects()` to activities.
Every method is deterministic: same state, same inputs, same result.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pathways import commands as cmd
from pathways.commands import Refusal
from pathways.contract import check_fields
from pathways.events import Effects, EventKind, Notification, NotificationKind, PathwayEvent
from pathways.ladder import (
    DuePoint,
    clock_due,
    clock_running,
    due_times,
    pending_points,
    raised,
    rearm_future,
    rung_time,
    settled,
)
from pathways.lifecycle import check_provider_move
from pathways.model import (
    Clock,
    CompleteClock,
    EscalationAction,
    EscalationRung,
    PathwayDefinition,
    Provider,
    Step,
    format_duration,
)
from pathways.state import (
    RULES_LATEST,
    RULES_PATIENT_CLOCK,
    Attempt,
    BusinessStatus,
    Escalation,
    EscalationStatus,
    Handover,
    Note,
    PathwayState,
    PathwayStatus,
    Patient,
    StepState,
    StepStatus,
    TaskStatus,
)

REMEMBERED_COMMANDS = 16
"""Provider command fingerprints kept per handover to acknowledge retries."""

ENGINE = "engine"
"""Actor recorded for changes the engine makes on its own (ladder, broker)."""

_FINISHED_STEP = (StepStatus.DONE, StepStatus.SKIPPED)


@dataclass(frozen=True)
class _Recurrence:
    """The next occurrence of a recurring step falls due."""

    at: datetime
    step_id: str


_Due = DuePoint | _Recurrence


def _order(item: _Due) -> tuple[Any, ...]:
    if isinstance(item, _Recurrence):
        return (item.at, 0, item.step_id, 0, 0, "")
    return (item.at, 1, *item.sort_key[1:])


def _fingerprint(command: cmd.ProviderCommand, output: dict[str, Any]) -> str:
    """'{provider}:{sha256}' identity of a provider command (the If-Match version is not part).

    The provider prefix lets a retry be matched against that provider's latest command only:
    a later genuine repeat of an earlier move (in-progress, on-hold, in-progress) is not a retry.
    """
    payload = {"status": command.status.value, "output": output, "reason": command.reason}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return f"{command.provider_id}:{hashlib.sha256(text.encode()).hexdigest()}"


def _latest_by(handover: Handover, provider_id: str) -> str | None:
    prefix = f"{provider_id}:"
    return next((f for f in reversed(handover.applied_commands) if f.startswith(prefix)), None)


class PathwayRun:
    """Wraps a PathwayState and owns every change to it; changes append to `outbox`."""

    def __init__(self, state: PathwayState) -> None:
        self.state = state
        self.outbox = Effects()

    def take_effects(self) -> Effects:
        """Drain the outbox: the events and notifications produced since the last call."""
        effects, self.outbox = self.outbox, Effects()
        return effects

    @property
    def definition(self) -> PathwayDefinition:
        return self.state.definition

    @classmethod
    def begin(
        cls, pathway_id: str, definition: PathwayDefinition, patient: Patient, now: datetime,
        rules_version: int = RULES_LATEST,
    ) -> PathwayRun:
        """New pathway: dispatch every step with no dependencies (skipping false conditions).

        `rules_version` is RULES_LATEST for new pathways; the workflow passes RULES_ORIGINAL when
        replaying a run that started before the patient's clock (see pathways.state).
        """
        state = PathwayState(
            pathway_id=pathway_id,
            definition=definition,
            patient=patient,
            rules_version=rules_version,
            started_at=now,
            updated_at=now,
            steps={step.id: StepState() for step in definition.steps},
        )
        run = cls(state)
        run._emit(EventKind.PATHWAY_STARTED, now, detail={"definition": definition.key})
        run._release(now)
        return run

    # --- timers -------------------------------------------------------------------------
    def next_wakeup(self) -> datetime | None:
        """Earliest time-driven thing still to fire (rung, due time, recurrence); None if none."""
        if self.state.status is not PathwayStatus.ACTIVE:
            return None
        return min((item.at for item in self._agenda()), default=None)

    def tick(self, now: datetime) -> None:
        """Fire everything due at or before `now`, one at a time in time order.

        What fires is recorded at `now`, when it really happens (a provider told late was told
        late); a breach event keeps the due time it missed in its detail.
        """
        while self.state.status is PathwayStatus.ACTIVE:
            due = [item for item in self._agenda() if item.at <= now]
            if not due:
                return
            item = min(due, key=_order)
            if isinstance(item, _Recurrence):
                self._fire_recurrence(item, now)
            else:
                self._fire_point(item, now)

    def _agenda(self) -> list[_Due]:
        items: list[_Due] = []
        for handover in self.state.handovers.values():
            items.extend(pending_points(handover, self._ladder(handover)))
        items.extend(
            _Recurrence(st.next_ready_at, step_id)
            for step_id, st in self.state.steps.items()
            if st.next_ready_at is not None
        )
        return items

    def _fire_recurrence(self, item: _Recurrence, at: datetime) -> None:
        scheduled = self.state.steps[item.step_id].next_ready_at
        assert scheduled is not None
        self._dispatch_occurrence(self.definition.step(item.step_id), scheduled, at)

    def _fire_point(self, point: DuePoint, at: datetime) -> None:
        handover = self.state.handovers[point.handover_id]
        if point.rung is None:
            self._breach(handover, point.clock, at)
            return
        rung = self._ladder(handover)[point.rung]
        handover.fired_rungs.append(point.rung)
        reason = (
            f"rung {point.rung + 1} ({rung.action.value}) at {format_duration(rung.at)} "
            f"from the {rung.clock.value} due time"
        )
        if rung.action is EscalationAction.REASSIGN:
            self._reassign_by_ladder(handover, reason, at)
            return
        if rung.action is EscalationAction.REMIND_PROVIDER:
            handover.business_status = raised(handover.business_status, BusinessStatus.AT_RISK)
        elif rung.action is EscalationAction.ALERT_COORDINATOR:
            handover.business_status = raised(handover.business_status, BusinessStatus.ESCALATED)
        else:
            self._flag_breach(handover, rung.clock)
            if self._patient_clock and rung.clock not in handover.fired_breaches:
                handover.fired_breaches.append(rung.clock)  # the due point will not repeat it
        self._touch(handover, at)
        self._escalate(handover, rung.action, reason, at)
        if rung.action is EscalationAction.REMIND_PROVIDER:
            self._notify(handover, NotificationKind.REMINDER)

    def _reassign_by_ladder(self, handover: Handover, reason: str, at: datetime) -> None:
        provider = self._next_untried(handover)
        if provider is None:
            self._no_provider_left(handover, f"{reason}: no alternate provider left", at)
            return
        self._escalate(handover, EscalationAction.REASSIGN, reason, at)
        self._redispatch(handover, provider, at, ENGINE, reason, outcome="reassigned")

    def _breach(self, handover: Handover, clock: Clock, at: datetime) -> None:
        handover.fired_breaches.append(clock)
        if not self._patient_clock and self._marked_breached(handover, clock):
            return
        self._flag_breach(handover, clock)
        self._touch(handover, at)
        due = handover.accept_by if clock is Clock.ACCEPT else handover.complete_by
        detail = {"clock": clock.value, "due": due.isoformat()}
        self._emit(EventKind.BREACHED, at, handover=handover, actor=ENGINE, detail=detail)

    def _marked_breached(self, handover: Handover, clock: Clock) -> bool:
        """A mark-breached rung already fired on this clock in this attempt."""
        ladder = self._ladder(handover)
        return any(
            ladder[i].action is EscalationAction.MARK_BREACHED and ladder[i].clock is clock
            for i in handover.fired_rungs
        )

    @staticmethod
    def _flag_breach(handover: Handover, clock: Clock) -> None:
        if clock is Clock.ACCEPT:
            handover.accept_breached = True
        else:
            handover.complete_breached = True
        handover.business_status = BusinessStatus.BREACHED

    # --- provider -----------------------------------------------------------------------
    def check_provider(self, c: cmd.ProviderCommand) -> None:
        """Raise Refusal unless the command may be applied (idempotent repeats pass)."""
        handover = self.state.handovers.get(c.handover_id)
        if handover is not None and self._is_repeat(handover, c):
            return
        if handover is None or handover.provider_id != c.provider_id:
            raise Refusal("not-found", [f"handover {c.handover_id} not found"])
        problems = self._malformed(c)
        if problems:
            raise Refusal("invalid", problems)
        self._require_active()
        if c.expected_version is not None and c.expected_version != handover.version:
            raise Refusal(
                "conflict",
                [f"handover {handover.id} is at version {handover.version}, "
                 f"not {c.expected_version}"],
            )
        check_provider_move(handover.id, handover.status, c.status)
        if c.status is TaskStatus.COMPLETED and c.output:
            self._check_output_budget(c.output)

    def _check_output_budget(self, output: dict[str, Any]) -> None:
        kept = sum(cmd.json_size(h.output) for h in self.state.handovers.values())
        if kept + cmd.json_size(output) > cmd.PATHWAY_OUTPUT_BUDGET:
            raise Refusal("invalid", [
                f"this pathway keeps at most {cmd.PATHWAY_OUTPUT_BUDGET // 1024} KiB of handover "
                "data: send large documents as references (url)"])

    def apply_provider(self, c: cmd.ProviderCommand, now: datetime) -> Handover:
        """Apply a provider's status move; a non-conforming delivery is counted, then refused."""
        self.check_provider(c)
        handover = self.state.handovers[c.handover_id]
        if self._is_repeat(handover, c):
            return handover
        output: dict[str, Any] = {}
        if c.status is TaskStatus.COMPLETED:
            output, problems = check_fields(self._step(handover), c.output)
            if problems:
                self._refuse_delivery(handover, problems, c.actor, now)
        handover.applied_commands = [
            *handover.applied_commands, _fingerprint(c, output)
        ][-REMEMBERED_COMMANDS:]
        self._move(handover, c, output, now)
        return handover

    def _is_repeat(self, handover: Handover, c: cmd.ProviderCommand) -> bool:
        """Identical to the latest command this provider had applied to the handover."""
        output: dict[str, Any] = {}
        if c.status is TaskStatus.COMPLETED:
            output, problems = check_fields(self._step(handover), c.output)
            if problems:
                return False
        elif c.output:
            return False
        return _fingerprint(c, output) == _latest_by(handover, c.provider_id)

    @staticmethod
    def _malformed(c: cmd.ProviderCommand) -> list[str]:
        problems = []
        if c.status in (TaskStatus.REJECTED, TaskStatus.FAILED) and not (c.reason or "").strip():
            problems.append(f"a {c.status.value} handover needs a reason")
        if c.output and c.status is not TaskStatus.COMPLETED:
            problems.append("output is only accepted with status completed")
        return problems

    def _refuse_delivery(
        self, handover: Handover, problems: list[tuple[str, str]], actor: str, now: datetime
    ) -> None:
        handover.refused_deliveries += 1
        self.state.updated_at = now
        detail = {
            "fields": sorted({name for name, _ in problems}),
            "problems": [problem for _, problem in problems],
        }
        self._emit(EventKind.REFUSED_DELIVERY, now, handover=handover, actor=actor, detail=detail)
        raise Refusal("non-conforming", [problem for _, problem in problems])

    def _move(
        self, handover: Handover, c: cmd.ProviderCommand, output: dict[str, Any], now: datetime
    ) -> None:
        attempt = handover.attempts[-1]
        previous, target = handover.status, c.status
        detail: dict[str, Any] = {}
        if target is TaskStatus.ACCEPTED or (
            target is TaskStatus.COMPLETED and handover.accepted_at is None
        ):
            handover.accepted_at = attempt.accepted_at = now
        if target is TaskStatus.IN_PROGRESS and handover.started_at is None:
            handover.started_at = now
        if target is TaskStatus.COMPLETED:
            handover.completed_at = handover.ended_at = now
            handover.output = output
            self._end_attempt(handover, now, "completed", None)
            detail = {"fields": sorted(output)}
        if target in (TaskStatus.REJECTED, TaskStatus.FAILED):
            handover.ended_at = now
            self._end_attempt(handover, now, target.value, c.reason)
        # statusReason describes the status it comes with (why on hold, why rejected): kept with
        # every move, cleared by a move without one.
        handover.status_reason = c.reason
        if c.reason is not None:
            detail["reason"] = c.reason
        handover.status = target
        self._touch(handover, now)
        self._emit(_provider_event(previous, target), now, handover=handover, actor=c.actor,
                   detail=detail)
        if target is TaskStatus.COMPLETED:
            self._resolve_automatically(handover, "completed", now)
            self._after_completion(handover, now)
        elif target in (TaskStatus.REJECTED, TaskStatus.FAILED):
            self._broker(handover, now)

    def _broker(self, handover: Handover, now: datetime) -> None:
        """Workflow broker pattern: offer a rejected or failed handover to the next provider."""
        provider = self._next_untried(handover)
        if provider is None:
            self._no_provider_left(
                handover, f"no alternate provider left after handover was {handover.status}", now
            )
        else:
            reason = f"handover {handover.status.value} by {handover.provider_id}"
            self._redispatch(handover, provider, now, ENGINE, reason,
                             outcome=handover.status.value)

    def _no_provider_left(self, handover: Handover, reason: str, at: datetime) -> None:
        handover.business_status = raised(handover.business_status, BusinessStatus.ESCALATED)
        self._touch(handover, at)
        self._escalate(handover, EscalationAction.ALERT_COORDINATOR, reason, at)

    def _after_completion(self, handover: Handover, now: datetime) -> None:
        step = self._step(handover)
        st = self.state.steps[step.id]
        recurrence = step.recurrence
        if recurrence is not None and st.occurrences < recurrence.count:
            assert st.anchor_at is not None
            due = st.anchor_at + recurrence.every * st.occurrences
            if due <= now:
                self._dispatch_occurrence(step, now, now)
            else:
                st.next_ready_at = due
            return
        st.status, st.finished_at = StepStatus.DONE, now
        self._release(now)

    # --- coordinator --------------------------------------------------------------------
    def check_reassign(self, c: cmd.Reassign) -> None:
        handover = self._handover(c.handover_id)
        self._require_active()
        step = self._step(handover)
        if c.provider_id not in {p.id for p in self.definition.providers_for(step)}:
            raise Refusal("invalid", [f"provider {c.provider_id} does not fill role {step.role}"])
        if handover.status in (TaskStatus.COMPLETED, TaskStatus.CANCELLED):
            raise Refusal("conflict", [f"handover {handover.id} is {handover.status.value}"])
        if handover.is_open and handover.provider_id == c.provider_id:
            raise Refusal(
                "conflict", [f"handover {handover.id} is already with provider {c.provider_id}"]
            )

    def apply_reassign(self, c: cmd.Reassign, now: datetime) -> Handover:
        self.check_reassign(c)
        handover = self.state.handovers[c.handover_id]
        provider = self.definition.provider(c.provider_id)
        assert provider is not None
        self._redispatch(handover, provider, now, c.actor, c.reason, outcome="reassigned")
        return handover

    def check_extend(self, c: cmd.ExtendDue, now: datetime | None = None) -> None:
        """Refuse an extension of a closed handover or one that would not move the due time
        later; `now` (when the caller has it) also refuses an `until` already past."""
        handover = self._handover(c.handover_id)
        self._require_unfinished()
        if not handover.is_open:
            raise Refusal(
                "conflict",
                [f"handover {handover.id} is {handover.status.value}: only an open one can be "
                 "extended"],
            )
        if c.until is None:
            return
        if c.until.tzinfo is None:
            raise Refusal("invalid", ["'until' needs a time zone"])
        if c.until <= handover.complete_by:
            raise Refusal("invalid", ["'until' must be later than the current due time"])
        if now is not None and c.until <= now:
            raise Refusal("invalid", ["'until' must be in the future"])
        if c.until - handover.complete_by > cmd.MAX_EXTENSION:
            raise Refusal("invalid", [
                f"'until' may be at most {format_duration(cmd.MAX_EXTENSION)} after the "
                "current due time"])

    def apply_extend(self, c: cmd.ExtendDue, now: datetime) -> Handover:
        """Move the completion due time later on purpose, recording who, why and from what.

        Rules 2: `by` counts from the current due time, or from now when the handover is
        already overdue (so "30 more minutes" gives 30 minutes); rungs that fired stay fired
        (once per attempt), while the due-time breach points re-arm if moved past now.
        """
        self.check_extend(c, now)
        handover = self.state.handovers[c.handover_id]
        old = handover.complete_by
        if not self._patient_clock:
            self._extend_original(handover, c, now)
            counted_from = "due"
        else:
            counted_from = "due" if old >= now else "now"
            base = max(old, now)
            new = base + c.by if c.by is not None else c.until
            assert new is not None
            gain = new - base
            handover.complete_by = new
            if handover.accepted_at is None:
                handover.accept_by = min(max(handover.accept_by, now) + gain, new)
            handover.fired_breaches = [
                clock for clock in handover.fired_breaches if clock_due(handover, clock) <= now
            ]
            running = [c for c in handover.fired_breaches if clock_running(handover, c)]
            handover.business_status = (
                BusinessStatus.BREACHED if running else BusinessStatus.ON_TRACK
            )
        self._touch(handover, now)
        detail = {"from": old.isoformat(), "to": handover.complete_by.isoformat(),
                  "counted_from": counted_from, "reason": c.reason}
        if c.by is not None:
            detail["by"] = format_duration(c.by)
        self._emit(EventKind.DUE_EXTENDED, now, handover=handover, actor=c.actor, detail=detail)
        return handover

    def _extend_original(self, handover: Handover, c: cmd.ExtendDue, now: datetime) -> None:
        """Rules 1: `by` counts from the due time even when overdue; fired rungs re-arm."""
        old = handover.complete_by
        delta = c.by if c.by is not None else c.until - old  # type: ignore[operator]
        handover.complete_by = old + delta
        if handover.accepted_at is None:
            handover.accept_by += delta
        ladder = self._ladder(handover)
        rearm_future(handover, ladder, now)
        if settled(handover, ladder):
            handover.business_status = BusinessStatus.ON_TRACK

    def check_hold(self, c: cmd.HoldPathway) -> None:
        self._require_active()

    def apply_hold(self, c: cmd.HoldPathway, now: datetime) -> PathwayState:
        self.check_hold(c)
        self.state.status, self.state.held_since = PathwayStatus.ON_HOLD, now
        self.state.updated_at = now
        self._emit(EventKind.PATHWAY_HELD, now, actor=c.actor, detail={"reason": c.reason})
        return self.state

    def check_resume(self, c: cmd.ResumePathway) -> None:
        if self.state.status is not PathwayStatus.ON_HOLD:
            raise Refusal("conflict", [f"pathway is {self.state.status.value}, not on hold"])

    def apply_resume(self, c: cmd.ResumePathway, now: datetime) -> PathwayState:
        """Resume: every running clock and pending recurrence moves later by the time held."""
        self.check_resume(c)
        assert self.state.held_since is not None
        held = now - self.state.held_since
        for handover in self._sorted(self.state.open_handovers):
            handover.accept_by += held
            handover.complete_by += held
            self._touch(handover, now)
        for st in self.state.steps.values():
            if st.status is StepStatus.ACTIVE and st.anchor_at is not None:
                st.anchor_at += held
            if st.next_ready_at is not None:
                st.next_ready_at += held
        self.state.status, self.state.held_since = PathwayStatus.ACTIVE, None
        self.state.held_total += held
        self.state.updated_at = now
        self._emit(EventKind.PATHWAY_RESUMED, now, actor=c.actor,
                   detail={"held": format_duration(held)})
        return self.state

    def check_cancel(self, c: cmd.CancelPathway) -> None:
        self._require_unfinished()

    def apply_cancel(self, c: cmd.CancelPathway, now: datetime) -> PathwayState:
        self.check_cancel(c)
        state = self.state
        for handover in self._sorted(h for h in state.handovers.values() if h.is_open):
            handover.status, handover.ended_at = TaskStatus.CANCELLED, now
            self._end_attempt(handover, now, "cancelled", c.reason)
            self._resolve_automatically(handover, "cancelled", now)
            self._touch(handover, now)
            self._emit(EventKind.CANCELLED, now, handover=handover, actor=c.actor,
                       detail={"reason": c.reason})
            self._notify(handover, NotificationKind.CANCELLED)
        for st in state.steps.values():
            st.next_ready_at = None
        if state.held_since is not None:
            state.held_total += now - state.held_since
            state.held_since = None
        state.status, state.ended_at, state.updated_at = PathwayStatus.CANCELLED, now, now
        self._emit(EventKind.PATHWAY_CANCELLED, now, actor=c.actor, detail={"reason": c.reason})
        return state

    def check_note(self, c: cmd.AddNote) -> None:
        """Notes are welcome while the pathway runs (on hold too), up to MAX_NOTES so the
        carried state stays bounded. A finished pathway's record is closed (see _require_open_record)."""
        self._require_open_record("notes")
        if len(self.state.notes) >= cmd.MAX_NOTES:
            raise Refusal("conflict", [f"this pathway already keeps {cmd.MAX_NOTES} notes, "
                                       "the most it can hold"])

    def apply_note(self, c: cmd.AddNote, now: datetime) -> Note:
        self.check_note(c)
        note = Note(at=now, author=c.actor, text=c.text)
        self.state.notes.append(note)
        self.state.updated_at = now
        # The text may name the patient: the event records only that a note was added.
        self._emit(EventKind.NOTE, now, actor=c.actor, detail={"note": len(self.state.notes)})
        return note

    def check_acknowledge(self, c: cmd.EscalationAction) -> None:
        self._require_open_record("acknowledgements")
        escalation = self._escalation(c.escalation_id)
        if escalation.status is not EscalationStatus.OPEN:
            raise Refusal("conflict", [f"escalation {escalation.id} is {escalation.status.value}"])

    def apply_acknowledge(self, c: cmd.EscalationAction, now: datetime) -> Escalation:
        self.check_acknowledge(c)
        escalation = self._escalation(c.escalation_id)
        escalation.status = EscalationStatus.ACKNOWLEDGED
        escalation.acknowledged_at, escalation.acknowledged_by = now, c.actor
        escalation.acknowledged_note = c.note
        self._escalation_event(EventKind.ESCALATION_ACKNOWLEDGED, escalation, c.actor, now,
                               noted=c.note is not None)
        return escalation

    def check_resolve(self, c: cmd.EscalationAction) -> None:
        self._require_open_record("resolutions")
        escalation = self._escalation(c.escalation_id)
        if escalation.status is EscalationStatus.RESOLVED:
            raise Refusal("conflict", [f"escalation {escalation.id} is already resolved"])

    def apply_resolve(self, c: cmd.EscalationAction, now: datetime) -> Escalation:
        self.check_resolve(c)
        escalation = self._escalation(c.escalation_id)
        escalation.status, escalation.resolution = EscalationStatus.RESOLVED, "coordinator"
        escalation.resolved_at, escalation.resolved_by = now, c.actor
        escalation.resolved_note = c.note
        self._escalation_event(EventKind.ESCALATION_RESOLVED, escalation, c.actor, now,
                               noted=c.note is not None)
        return escalation

    # --- flow ---------------------------------------------------------------------------
    def _release(self, now: datetime) -> None:
        """Start every waiting step whose inputs are all done or skipped; finish when all are."""
        progressed = True
        while progressed:
            progressed = False
            for step in self.definition.steps:
                st = self.state.steps[step.id]
                if st.status is StepStatus.WAITING and all(
                    self.state.steps[a].status in _FINISHED_STEP for a in step.after
                ):
                    self._start_step(step, now)
                    progressed = True
        if all(st.status in _FINISHED_STEP for st in self.state.steps.values()):
            self.state.status, self.state.ended_at = PathwayStatus.COMPLETED, now
            self.state.updated_at = now
            self._emit(EventKind.PATHWAY_COMPLETED, now)

    def _start_step(self, step: Step, now: datetime) -> None:
        st = self.state.steps[step.id]
        when = step.when
        if when is not None and not when.holds(self._delivered(when.step, when.field)):
            st.status, st.finished_at = StepStatus.SKIPPED, now
            self.state.updated_at = now
            detail = {"condition_step": when.step, "field": when.field}
            self._emit(EventKind.SKIPPED, now, step_id=step.id, detail=detail)
            return
        st.status, st.anchor_at = StepStatus.ACTIVE, now
        finished = [self.state.steps[a].finished_at for a in step.after]
        inputs = max((t for t in finished if t is not None), default=self.state.started_at)
        self._dispatch_occurrence(step, inputs, now)

    def _delivered(self, step_id: str, field: str) -> Any:
        """The field as delivered by the step's latest completed occurrence (None if absent)."""
        latest = self.state.latest_delivery(step_id)
        return None if latest is None else latest.output.get(field)

    def _dispatch_occurrence(self, step: Step, inputs_complete_at: datetime, now: datetime) -> None:
        st = self.state.steps[step.id]
        st.occurrences += 1
        st.next_ready_at = None
        provider = self.definition.providers_for(step)[0]
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
        self.state.handovers[handover.id] = handover
        self.state.updated_at = now
        self._emit(EventKind.READY, now, handover=handover,
                   detail={"occurrence": handover.occurrence})
        self._emit(EventKind.DISPATCHED, now, handover=handover)
        self._notify(handover, NotificationKind.DISPATCHED)

    def _redispatch(
        self, handover: Handover, provider: Provider, now: datetime, actor: str, reason: str,
        outcome: str,
    ) -> None:
        """Start a new attempt with `provider`: clocks restart, fired rungs reset."""
        previous, was_open = handover.provider_id, handover.is_open
        self._resolve_automatically(handover, "reassigned", now)
        self._end_attempt(handover, now, outcome, reason)
        handover.provider_id = provider.id
        handover.status = TaskStatus.REQUESTED
        handover.accepted_at = handover.started_at = handover.ended_at = None
        handover.status_reason = None
        handover.dispatched_at = now
        self._restart_clocks(handover, now)
        handover.applied_commands = [  # the new provider starts afresh, even if tried before
            f for f in handover.applied_commands if not f.startswith(f"{provider.id}:")
        ]
        handover.attempts.append(Attempt(provider_id=provider.id, dispatched_at=now))
        self._touch(handover, now)
        detail = {"from": previous, "to": provider.id, "reason": reason}
        self._emit(EventKind.REASSIGNED, now, handover=handover, actor=actor, detail=detail)
        self._emit(EventKind.DISPATCHED, now, handover=handover, actor=actor)
        if was_open:
            self._notify(handover, NotificationKind.CANCELLED, previous)
        self._notify(handover, NotificationKind.DISPATCHED)

    def _restart_clocks(self, handover: Handover, now: datetime) -> None:
        """A new attempt: the acceptance clock always restarts; the completion clock is the
        patient's and keeps running (rules 2, complete_clock ready), else it restarts too.

        On the patient's clock, completion rungs and the breach already passed stay passed, so
        the new provider is not reminded of a past point and a breached handover stays breached.
        """
        step = self._step(handover)
        accept_by, complete_by = due_times(step.sla, now)
        handover.accept_by = accept_by
        if not self._patient_clock or step.sla.complete_clock is CompleteClock.ATTEMPT:
            handover.complete_by = complete_by
            handover.fired_rungs, handover.fired_breaches = [], []
            handover.business_status = BusinessStatus.ON_TRACK
            return
        ladder = self._ladder(handover)
        handover.fired_rungs = [
            i for i, rung in enumerate(ladder)
            if rung.clock is Clock.COMPLETE and rung_time(handover, rung) <= now
        ]
        handover.fired_breaches = [c for c in handover.fired_breaches if c is Clock.COMPLETE]
        handover.business_status = (
            BusinessStatus.BREACHED if handover.fired_breaches else BusinessStatus.ON_TRACK
        )

    @staticmethod
    def _end_attempt(handover: Handover, now: datetime, outcome: str, reason: str | None) -> None:
        attempt = handover.attempts[-1]
        if attempt.ended_at is None:
            attempt.ended_at, attempt.outcome, attempt.reason = now, outcome, reason

    def _next_untried(self, handover: Handover) -> Provider | None:
        tried = {a.provider_id for a in handover.attempts}
        providers = self.definition.providers_for(self._step(handover))
        return next((p for p in providers if p.id not in tried), None)

    def _escalate(
        self, handover: Handover, level: EscalationAction, reason: str, at: datetime,
        provider_id: str | None = None, cause: str | None = None,
    ) -> Escalation:
        """Open an escalation for the handover, or (rules 2) raise the one already open for it.

        A rise in level re-opens an acknowledged escalation: it is news for the coordinator.
        """
        current = self._live_escalation(handover.id) if self._patient_clock else None
        if current is None:
            escalation = Escalation(
                id=len(self.state.escalations) + 1,
                handover_id=handover.id,
                step_id=handover.step_id,
                provider_id=provider_id or handover.provider_id,
                level=level,
                reason=reason,
                at=at,
                raised_at=at,
            )
            self.state.escalations.append(escalation)
        else:
            escalation = current
            if _SEVERITY.index(level) > _SEVERITY.index(escalation.level):
                escalation.level, escalation.raised_at = level, at
                escalation.status = EscalationStatus.OPEN
            escalation.reason = reason
        self.state.updated_at = at
        detail = {"escalation_id": escalation.id, "level": escalation.level.value,
                  "cause": cause or level.value, "reason": reason}
        self._emit(EventKind.ESCALATED, at, handover=handover, actor=ENGINE,
                   provider_id=escalation.provider_id, detail=detail)
        return escalation

    def _live_escalation(self, handover_id: str) -> Escalation | None:
        """The unresolved escalation of a handover, if any (the latest one)."""
        return next(
            (e for e in reversed(self.state.escalations)
             if e.handover_id == handover_id and e.status is not EscalationStatus.RESOLVED),
            None,
        )

    def _resolve_automatically(self, handover: Handover, resolution: str, at: datetime) -> None:
        """Rules 2: a reassignment, completion or cancellation settles the handover's escalation."""
        if not self._patient_clock:
            return
        escalation = self._live_escalation(handover.id)
        if escalation is None:
            return
        escalation.status, escalation.resolution = EscalationStatus.RESOLVED, resolution
        escalation.resolved_at, escalation.resolved_by = at, ENGINE
        self.state.updated_at = at
        self._emit(EventKind.ESCALATION_RESOLVED, at, handover=handover,
                   provider_id=escalation.provider_id, actor=ENGINE,
                   detail={"escalation_id": escalation.id, "resolution": resolution})

    @property
    def _patient_clock(self) -> bool:
        return self.state.rules_version >= RULES_PATIENT_CLOCK

    # --- notifications ------------------------------------------------------------------
    def notification_failed(
        self, handover_id: str, provider_id: str, kind: NotificationKind, version: int,
        reason: str, now: datetime,
    ) -> None:
        """A webhook could not be delivered after bounded retries: record it and escalate.

        Never raises. The event always lands; the coordinator escalation is raised (alert level)
        only while the handover is still to be delivered in a running pathway, since a closed
        handover has nothing left to act on. `reason` is cut to a safe alphabet and length so
        that a provider's error body cannot put patient data in the event log.
        """
        safe = _safe_reason(reason)
        handover = self.state.handovers.get(handover_id)
        detail = {"kind": kind.value, "version": version, "provider": provider_id,
                  "reason": safe}
        self.state.updated_at = max(self.state.updated_at, now)
        self._emit(EventKind.NOTIFICATION_FAILED, now, handover=handover,
                   handover_id=handover_id if handover is None else None,
                   provider_id=provider_id, actor=ENGINE, detail=detail)
        if handover is None or self.state.is_finished or not handover.is_unfinished:
            return
        text = f"{kind.value} notification (version {version}) to {provider_id} failed: {safe}"
        status = raised(handover.business_status, BusinessStatus.ESCALATED)
        if status is not handover.business_status:  # the Task changed: a new version
            handover.business_status = status
            self._touch(handover, now)
        self._escalate(handover, EscalationAction.ALERT_COORDINATOR, text, now, provider_id,
                      cause=EventKind.NOTIFICATION_FAILED.value)

    # --- helpers ------------------------------------------------------------------------
    def _step(self, handover: Handover) -> Step:
        return self.definition.step(handover.step_id)

    def _ladder(self, handover: Handover) -> tuple[EscalationRung, ...]:
        return self.definition.ladder(self._step(handover))

    def _handover(self, handover_id: str) -> Handover:
        handover = self.state.handovers.get(handover_id)
        if handover is None:
            raise Refusal("not-found", [f"handover {handover_id} not found"])
        return handover

    def _escalation(self, escalation_id: int) -> Escalation:
        for escalation in self.state.escalations:
            if escalation.id == escalation_id:
                return escalation
        raise Refusal("not-found", [f"escalation {escalation_id} not found"])

    def _require_active(self) -> None:
        if self.state.status is PathwayStatus.ON_HOLD:
            raise Refusal("conflict", ["pathway is on hold"])
        self._require_unfinished()

    def _require_open_record(self, what: str) -> None:
        """A finished pathway's record is closed: its workflow completes with it, so a note,
        acknowledgement or resolution after that is refused (409) rather than half-kept."""
        if self.state.is_finished:
            raise Refusal("conflict", [
                f"pathway is {self.state.status.value}: its record is closed to {what}"])

    def _require_unfinished(self) -> None:
        if self.state.is_finished:
            raise Refusal("conflict", [f"pathway is {self.state.status.value}"])

    @staticmethod
    def _sorted(handovers: Iterable[Handover]) -> list[Handover]:
        return sorted(handovers, key=lambda h: h.id)

    def _touch(self, handover: Handover, now: datetime) -> None:
        handover.version += 1
        handover.updated_at = self.state.updated_at = now

    def _emit(
        self,
        kind: EventKind,
        at: datetime,
        *,
        handover: Handover | None = None,
        handover_id: str | None = None,
        step_id: str | None = None,
        provider_id: str | None = None,
        actor: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        state = self.state
        state.event_seq += 1
        self.outbox.events.append(
            PathwayEvent(
                event_id=f"{state.pathway_id}:{state.event_seq}",
                pathway_id=state.pathway_id,
                definition_id=self.definition.id,
                definition_version=self.definition.version,
                seq=state.event_seq,
                kind=kind,
                at=at,
                handover_id=handover.id if handover else handover_id,
                step_id=handover.step_id if handover else step_id,
                provider_id=provider_id or (handover.provider_id if handover else None),
                actor=actor,
                detail=detail or {},
            )
        )

    def _escalation_event(
        self, kind: EventKind, escalation: Escalation, actor: str, now: datetime, noted: bool
    ) -> None:
        """The note itself stays in the state (it may name the patient); the event only says
        that there is one, as a note event does."""
        self.state.updated_at = now
        handover = self.state.handovers[escalation.handover_id]
        detail: dict[str, Any] = {"escalation_id": escalation.id}
        if kind is EventKind.ESCALATION_RESOLVED:
            detail["resolution"] = "coordinator"
        if noted:
            detail["noted"] = True
        self._emit(kind, now, handover=handover, provider_id=escalation.provider_id, actor=actor,
                   detail=detail)

    def _notify(
        self, handover: Handover, kind: NotificationKind, provider_id: str | None = None
    ) -> None:
        provider = self.definition.provider(provider_id or handover.provider_id)
        if provider is None or provider.webhook is None:
            return
        self.outbox.notifications.append(
            Notification(
                pathway_id=self.state.pathway_id,
                handover_id=handover.id,
                provider_id=provider.id,
                webhook=str(provider.webhook),
                kind=kind,
                version=handover.version,
            )
        )


_SEVERITY = (
    EscalationAction.REMIND_PROVIDER,
    EscalationAction.ALERT_COORDINATOR,
    EscalationAction.REASSIGN,
    EscalationAction.MARK_BREACHED,
)
"""Escalation levels from mild to severe: an escalation's level only rises."""

_SAFE_REASON = re.compile(r"[^A-Za-z0-9 .,:;()/_+-]")
REASON_LIMIT = 200


def _safe_reason(reason: str) -> str:
    """An operational reason fit for the event log: safe characters, bounded, no long digit runs
    (an NHS number is ten digits)."""
    text = _SAFE_REASON.sub(" ", str(reason))[:REASON_LIMIT]
    text = re.sub(r"\d{6,}", "#", text)
    return " ".join(text.split()) or "unspecified"


def _provider_event(previous: TaskStatus, target: TaskStatus) -> EventKind:
    """The event a provider's move records (on-hold back to in-progress is a resumption)."""
    if target is TaskStatus.IN_PROGRESS:
        return EventKind.RESUMED if previous is TaskStatus.ON_HOLD else EventKind.STARTED
    return {
        TaskStatus.ACCEPTED: EventKind.ACCEPTED,
        TaskStatus.ON_HOLD: EventKind.HELD,
        TaskStatus.COMPLETED: EventKind.COMPLETED,
        TaskStatus.REJECTED: EventKind.REJECTED,
        TaskStatus.FAILED: EventKind.FAILED,
    }[target]
