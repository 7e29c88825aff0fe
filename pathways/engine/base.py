"""What every part of the engine shares: the state, the outbox of effects, look-ups and guards."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pathways.commands import Refusal
from pathways.events import Effects, EventKind, Notification, NotificationKind, PathwayEvent
from pathways.model import EscalationRung, PathwayDefinition, Step
from pathways.state import (
    RULES_PATIENT_CLOCK,
    Escalation,
    Handover,
    PathwayState,
    PathwayStatus,
)

REMEMBERED_COMMANDS = 16
"""Provider command fingerprints kept per handover to acknowledge retries."""

ENGINE = "engine"
"""Actor recorded for changes the engine makes on its own (ladder, broker)."""


class RunBase:
    """A PathwayState and the effects its changes produce (`outbox`), with shared helpers."""

    def __init__(self, state: PathwayState) -> None:
        self.state = state
        self.outbox = Effects()

    @property
    def definition(self) -> PathwayDefinition:
        return self.state.definition

    @property
    def patient_clock(self) -> bool:
        """Rules 2 or later: the completion clock is the patient's (see pathways.state)."""
        return self.state.rules_version >= RULES_PATIENT_CLOCK

    # --- look-ups -------------------------------------------------------------------------
    def step(self, handover: Handover) -> Step:
        return self.definition.step(handover.step_id)

    def ladder(self, handover: Handover) -> tuple[EscalationRung, ...]:
        return self.definition.ladder(self.step(handover))

    def handover(self, handover_id: str) -> Handover:
        handover = self.state.handovers.get(handover_id)
        if handover is None:
            raise Refusal("not-found", [f"handover {handover_id} not found"])
        return handover

    def escalation(self, escalation_id: int) -> Escalation:
        for escalation in self.state.escalations:
            if escalation.id == escalation_id:
                return escalation
        raise Refusal("not-found", [f"escalation {escalation_id} not found"])

    # --- guards ---------------------------------------------------------------------------
    def require_active(self) -> None:
        if self.state.status is PathwayStatus.ON_HOLD:
            raise Refusal("conflict", ["pathway is on hold"])
        self.require_unfinished()

    def require_unfinished(self) -> None:
        if self.state.is_finished:
            raise Refusal("conflict", [f"pathway is {self.state.status.value}"])

    def require_open_record(self, what: str) -> None:
        """A finished pathway's record is closed: its workflow completes with it, so a note,
        acknowledgement or resolution after that is refused (409) rather than half-kept."""
        if self.state.is_finished:
            raise Refusal("conflict", [
                f"pathway is {self.state.status.value}: its record is closed to {what}"])

    # --- changes and effects --------------------------------------------------------------
    def touch(self, handover: Handover, now: datetime) -> None:
        """The handover (a FHIR Task) changed: a new version."""
        handover.version += 1
        handover.updated_at = self.state.updated_at = now

    def emit(
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
        """Append one event-log record (numbered in the pathway) to the outbox."""
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

    def notify(
        self, handover: Handover, kind: NotificationKind, provider_id: str | None = None
    ) -> None:
        """Ask for a webhook to the provider (the current one unless named), if it has one."""
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
                portal=provider.portal,
            )
        )


def by_id(handovers: Iterable[Handover]) -> list[Handover]:
    """Handovers in a stable order, so effects come out the same on every replay."""
    return sorted(handovers, key=lambda h: h.id)
