"""PathwayRun: the facade the workflow, the API and the tests use; every method delegates to the
module that owns its concept (see the package docstring)."""

from __future__ import annotations

from datetime import datetime

from pathways import commands as cmd
from pathways.engine import broker, clocks, coordinator, escalations, flow, provider
from pathways.engine.base import RunBase
from pathways.events import Effects, EventKind, NotificationKind
from pathways.model import PathwayDefinition
from pathways.state import (
    RULES_LATEST,
    Escalation,
    Handover,
    Note,
    PathwayState,
    Patient,
    StepState,
)


class PathwayRun(RunBase):
    """Wraps a PathwayState and owns every change to it; changes append to `outbox`."""

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
        run.emit(EventKind.PATHWAY_STARTED, now, detail={"definition": definition.key})
        flow.release(run, now)
        return run

    def take_effects(self) -> Effects:
        """Drain the outbox: the events and notifications produced since the last call."""
        effects, self.outbox = self.outbox, Effects()
        return effects

    # --- timers ---------------------------------------------------------------------------
    def next_wakeup(self) -> datetime | None:
        """Earliest time-driven thing still to fire (rung, due time, recurrence); None if none."""
        return clocks.next_wakeup(self)

    def tick(self, now: datetime) -> None:
        """Fire everything due at or before `now`, one at a time in time order."""
        clocks.tick(self, now)

    # --- provider -------------------------------------------------------------------------
    def check_provider(self, c: cmd.ProviderCommand) -> None:
        provider.check_provider(self, c)

    def apply_provider(self, c: cmd.ProviderCommand, now: datetime) -> Handover:
        return provider.apply_provider(self, c, now)

    # --- coordinator ----------------------------------------------------------------------
    def check_reassign(self, c: cmd.Reassign) -> None:
        broker.check_reassign(self, c)

    def apply_reassign(self, c: cmd.Reassign, now: datetime) -> Handover:
        return broker.apply_reassign(self, c, now)

    def check_extend(self, c: cmd.ExtendDue, now: datetime | None = None) -> None:
        """`now`, when the caller has it (workflow.now() in a validator), also refuses an
        `until` already in the past; otherwise the handler refuses it."""
        clocks.check_extend(self, c, now)

    def apply_extend(self, c: cmd.ExtendDue, now: datetime) -> Handover:
        return clocks.apply_extend(self, c, now)

    def check_hold(self, c: cmd.HoldPathway) -> None:
        coordinator.check_hold(self, c)

    def apply_hold(self, c: cmd.HoldPathway, now: datetime) -> PathwayState:
        return coordinator.apply_hold(self, c, now)

    def check_resume(self, c: cmd.ResumePathway) -> None:
        coordinator.check_resume(self, c)

    def apply_resume(self, c: cmd.ResumePathway, now: datetime) -> PathwayState:
        return coordinator.apply_resume(self, c, now)

    def check_cancel(self, c: cmd.CancelPathway) -> None:
        coordinator.check_cancel(self, c)

    def apply_cancel(self, c: cmd.CancelPathway, now: datetime) -> PathwayState:
        return coordinator.apply_cancel(self, c, now)

    def check_note(self, c: cmd.AddNote) -> None:
        coordinator.check_note(self, c)

    def apply_note(self, c: cmd.AddNote, now: datetime) -> Note:
        return coordinator.apply_note(self, c, now)

    def check_acknowledge(self, c: cmd.EscalationAction) -> None:
        escalations.check_acknowledge(self, c)

    def apply_acknowledge(self, c: cmd.EscalationAction, now: datetime) -> Escalation:
        return escalations.apply_acknowledge(self, c, now)

    def check_resolve(self, c: cmd.EscalationAction) -> None:
        escalations.check_resolve(self, c)

    def apply_resolve(self, c: cmd.EscalationAction, now: datetime) -> Escalation:
        return escalations.apply_resolve(self, c, now)

    # --- effects reported back ------------------------------------------------------------
    def notification_failed(
        self, handover_id: str, provider_id: str, kind: NotificationKind, version: int,
        reason: str, now: datetime,
    ) -> None:
        """A webhook could not be delivered after bounded retries: record a notification-failed
        event and raise the handover's coordinator escalation. Never raises."""
        escalations.notification_failed(self, handover_id, provider_id, kind, version, reason, now)
