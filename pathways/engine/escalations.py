"""Escalations: one record per late or troubled handover (rules 2), its level only rising.

Raised by ladder rungs (clocks.py), by the broker running out of providers (broker.py) and by
notifications that could not be delivered; resolved by a coordinator or, under rules 2,
automatically when the handover is reassigned, completed or cancelled. Under the original rules
every rung opens a record of its own and nothing resolves automatically.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pathways import commands as cmd
from pathways.commands import Refusal
from pathways.engine.base import ENGINE, RunBase
from pathways.events import EventKind, NotificationKind
from pathways.ladder import raised
from pathways.model import EscalationAction
from pathways.state import BusinessStatus, Escalation, EscalationStatus, Handover

SEVERITY = (
    EscalationAction.REMIND_PROVIDER,
    EscalationAction.ALERT_COORDINATOR,
    EscalationAction.REASSIGN,
    EscalationAction.MARK_BREACHED,
)
"""Escalation levels from mild to severe: an escalation's level only rises."""

REASON_LIMIT = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9 .,:;()/_+-]")


def escalate(
    run: RunBase, handover: Handover, level: EscalationAction, reason: str, at: datetime,
    provider_id: str | None = None, cause: str | None = None,
) -> Escalation:
    """Open an escalation for the handover, or (rules 2) raise the one already open for it.

    A rise in level re-opens an acknowledged escalation: it is news for the coordinator.
    """
    state = run.state
    current = live_escalation(run, handover.id) if run.patient_clock else None
    if current is None:
        escalation = Escalation(
            id=len(state.escalations) + 1,
            handover_id=handover.id,
            step_id=handover.step_id,
            provider_id=provider_id or handover.provider_id,
            level=level,
            reason=reason,
            at=at,
            raised_at=at,
        )
        state.escalations.append(escalation)
    else:
        escalation = current
        if SEVERITY.index(level) > SEVERITY.index(escalation.level):
            escalation.level, escalation.raised_at = level, at
            escalation.status = EscalationStatus.OPEN
        escalation.reason = reason
    state.updated_at = at
    detail = {"escalation_id": escalation.id, "level": escalation.level.value,
              "cause": cause or level.value, "reason": reason}
    run.emit(EventKind.ESCALATED, at, handover=handover, actor=ENGINE,
             provider_id=escalation.provider_id, detail=detail)
    return escalation


def live_escalation(run: RunBase, handover_id: str) -> Escalation | None:
    """The unresolved escalation of a handover, if any (the latest one)."""
    return next(
        (e for e in reversed(run.state.escalations)
         if e.handover_id == handover_id and e.status is not EscalationStatus.RESOLVED),
        None,
    )


def resolve_automatically(run: RunBase, handover: Handover, resolution: str, at: datetime) -> None:
    """Rules 2: a reassignment, completion or cancellation settles the handover's escalation."""
    if not run.patient_clock:
        return
    escalation = live_escalation(run, handover.id)
    if escalation is None:
        return
    escalation.status, escalation.resolution = EscalationStatus.RESOLVED, resolution
    escalation.resolved_at, escalation.resolved_by = at, ENGINE
    run.state.updated_at = at
    run.emit(EventKind.ESCALATION_RESOLVED, at, handover=handover,
             provider_id=escalation.provider_id, actor=ENGINE,
             detail={"escalation_id": escalation.id, "resolution": resolution})


# --- coordinator commands -------------------------------------------------------------------
def check_acknowledge(run: RunBase, c: cmd.EscalationAction) -> None:
    run.require_open_record("acknowledgements")
    escalation = run.escalation(c.escalation_id)
    if escalation.status is not EscalationStatus.OPEN:
        raise Refusal("conflict", [f"escalation {escalation.id} is {escalation.status.value}"])


def apply_acknowledge(run: RunBase, c: cmd.EscalationAction, now: datetime) -> Escalation:
    check_acknowledge(run, c)
    escalation = run.escalation(c.escalation_id)
    escalation.status = EscalationStatus.ACKNOWLEDGED
    escalation.acknowledged_at, escalation.acknowledged_by = now, c.actor
    escalation.acknowledged_note = c.note
    _record(run, EventKind.ESCALATION_ACKNOWLEDGED, escalation, c.actor, now, c.note is not None)
    return escalation


def check_resolve(run: RunBase, c: cmd.EscalationAction) -> None:
    run.require_open_record("resolutions")
    escalation = run.escalation(c.escalation_id)
    if escalation.status is EscalationStatus.RESOLVED:
        raise Refusal("conflict", [f"escalation {escalation.id} is already resolved"])


def apply_resolve(run: RunBase, c: cmd.EscalationAction, now: datetime) -> Escalation:
    check_resolve(run, c)
    escalation = run.escalation(c.escalation_id)
    escalation.status, escalation.resolution = EscalationStatus.RESOLVED, "coordinator"
    escalation.resolved_at, escalation.resolved_by = now, c.actor
    escalation.resolved_note = c.note
    _record(run, EventKind.ESCALATION_RESOLVED, escalation, c.actor, now, c.note is not None)
    return escalation


def _record(
    run: RunBase, kind: EventKind, escalation: Escalation, actor: str, now: datetime, noted: bool
) -> None:
    """The note itself stays in the state (it may name the patient); the event only says that
    there is one, as a note event does."""
    run.state.updated_at = now
    handover = run.state.handovers[escalation.handover_id]
    detail: dict[str, Any] = {"escalation_id": escalation.id}
    if kind is EventKind.ESCALATION_RESOLVED:
        detail["resolution"] = "coordinator"
    if noted:
        detail["noted"] = True
    run.emit(kind, now, handover=handover, provider_id=escalation.provider_id, actor=actor,
             detail=detail)


# --- undeliverable notifications ------------------------------------------------------------
def notification_failed(
    run: RunBase, handover_id: str, provider_id: str, kind: NotificationKind, version: int,
    reason: str, now: datetime,
) -> None:
    """A webhook could not be delivered after bounded retries: record it and escalate.

    Never raises. The event always lands; the coordinator escalation is raised (alert level)
    only while the handover is still to be delivered in a running pathway, since a closed
    handover has nothing left to act on. `reason` is cut to a safe alphabet and length so that
    a provider's error body cannot put patient data in the event log.
    """
    state = run.state
    safe = safe_reason(reason)
    handover = state.handovers.get(handover_id)
    detail = {"kind": kind.value, "version": version, "provider": provider_id, "reason": safe}
    state.updated_at = max(state.updated_at, now)
    run.emit(EventKind.NOTIFICATION_FAILED, now, handover=handover,
             handover_id=handover_id if handover is None else None,
             provider_id=provider_id, actor=ENGINE, detail=detail)
    if handover is None or state.is_finished or not handover.is_unfinished:
        return
    text = f"{kind.value} notification (version {version}) to {provider_id} failed: {safe}"
    status = raised(handover.business_status, BusinessStatus.ESCALATED)
    if status is not handover.business_status:  # the Task changed: a new version
        handover.business_status = status
        run.touch(handover, now)
    escalate(run, handover, EscalationAction.ALERT_COORDINATOR, text, now, provider_id,
             cause=EventKind.NOTIFICATION_FAILED.value)


def safe_reason(reason: str) -> str:
    """An operational reason fit for the event log: safe characters, bounded, no long digit
    runs (an NHS number is ten digits)."""
    text = _UNSAFE.sub(" ", str(reason))[:REASON_LIMIT]
    text = re.sub(r"\d{6,}", "#", text)
    return " ".join(text.split()) or "unspecified"
