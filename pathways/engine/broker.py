"""Attempts and reassignment: the FHIR workflow-broker pattern, the ladder's reassign rung and a
coordinator's reassignment all start a new attempt here, and here is decided which clocks
restart (the provider's always; the patient's only under the original rules or
`complete_clock: attempt`)."""

from __future__ import annotations

from datetime import datetime

from pathways import commands as cmd
from pathways.commands import Refusal
from pathways.engine import escalations
from pathways.engine.base import ENGINE, RunBase
from pathways.events import EventKind, NotificationKind
from pathways.ladder import due_times, raised, rung_time
from pathways.model import Clock, CompleteClock, EscalationAction, Provider
from pathways.state import Attempt, BusinessStatus, Handover, TaskStatus


def after_refusal(run: RunBase, handover: Handover, now: datetime) -> None:
    """A provider rejected or failed the handover: offer it to the next provider (the engine's
    doing, recorded as such), or put it in front of the coordinator when none is left."""
    provider = next_untried(run, handover)
    if provider is None:
        no_provider_left(
            run, handover, f"no alternate provider left after handover was {handover.status}", now
        )
    else:
        reason = f"handover {handover.status.value} by {handover.provider_id}"
        redispatch(run, handover, provider, now, ENGINE, reason, outcome=handover.status.value)


def by_ladder(run: RunBase, handover: Handover, reason: str, at: datetime) -> None:
    """A reassign rung fired: escalate at reassign level and offer the next provider."""
    provider = next_untried(run, handover)
    if provider is None:
        no_provider_left(run, handover, f"{reason}: no alternate provider left", at)
        return
    escalations.escalate(run, handover, EscalationAction.REASSIGN, reason, at)
    redispatch(run, handover, provider, at, ENGINE, reason, outcome="reassigned")


def no_provider_left(run: RunBase, handover: Handover, reason: str, at: datetime) -> None:
    handover.business_status = raised(handover.business_status, BusinessStatus.ESCALATED)
    run.touch(handover, at)
    escalations.escalate(run, handover, EscalationAction.ALERT_COORDINATOR, reason, at)


def check_reassign(run: RunBase, c: cmd.Reassign) -> None:
    handover = run.handover(c.handover_id)
    run.require_active()
    step = run.step(handover)
    if c.provider_id not in {p.id for p in run.definition.providers_for(step)}:
        raise Refusal("invalid", [f"provider {c.provider_id} does not fill role {step.role}"])
    if handover.status in (TaskStatus.COMPLETED, TaskStatus.CANCELLED):
        raise Refusal("conflict", [f"handover {handover.id} is {handover.status.value}"])
    if handover.is_open and handover.provider_id == c.provider_id:
        raise Refusal(
            "conflict", [f"handover {handover.id} is already with provider {c.provider_id}"]
        )


def apply_reassign(run: RunBase, c: cmd.Reassign, now: datetime) -> Handover:
    check_reassign(run, c)
    handover = run.state.handovers[c.handover_id]
    provider = run.definition.provider(c.provider_id)
    assert provider is not None
    redispatch(run, handover, provider, now, c.actor, c.reason, outcome="reassigned")
    return handover


def redispatch(
    run: RunBase, handover: Handover, provider: Provider, now: datetime, actor: str, reason: str,
    outcome: str,
) -> None:
    """Start a new attempt with `provider`; the previous one's escalation is settled (rules 2)
    and the provider that lost an open handover is told."""
    previous, was_open = handover.provider_id, handover.is_open
    escalations.resolve_automatically(run, handover, "reassigned", now)
    end_attempt(handover, now, outcome, reason)
    handover.provider_id = provider.id
    handover.status = TaskStatus.REQUESTED
    handover.accepted_at = handover.started_at = handover.ended_at = None
    handover.status_reason = None
    handover.dispatched_at = now
    restart_clocks(run, handover, now)
    handover.applied_commands = [  # the new provider starts afresh, even if tried before
        f for f in handover.applied_commands if not f.startswith(f"{provider.id}:")
    ]
    handover.attempts.append(Attempt(provider_id=provider.id, dispatched_at=now))
    run.touch(handover, now)
    detail = {"from": previous, "to": provider.id, "reason": reason}
    run.emit(EventKind.REASSIGNED, now, handover=handover, actor=actor, detail=detail)
    run.emit(EventKind.DISPATCHED, now, handover=handover, actor=actor)
    if was_open:
        run.notify(handover, NotificationKind.CANCELLED, previous)
    run.notify(handover, NotificationKind.DISPATCHED)


def restart_clocks(run: RunBase, handover: Handover, now: datetime) -> None:
    """A new attempt: the acceptance clock always restarts; the completion clock is the
    patient's and keeps running (rules 2, complete_clock ready), else it restarts too.

    On the patient's clock, completion rungs and the breach already passed stay passed, so the
    new provider is not reminded of a past point and a breached handover stays breached.
    """
    step = run.step(handover)
    accept_by, complete_by = due_times(step.sla, now)
    handover.accept_by = accept_by
    if not run.patient_clock or step.sla.complete_clock is CompleteClock.ATTEMPT:
        handover.complete_by = complete_by
        handover.fired_rungs, handover.fired_breaches = [], []
        handover.business_status = BusinessStatus.ON_TRACK
        return
    handover.fired_rungs = [
        i for i, rung in enumerate(run.ladder(handover))
        if rung.clock is Clock.COMPLETE and rung_time(handover, rung) <= now
    ]
    handover.fired_breaches = [c for c in handover.fired_breaches if c is Clock.COMPLETE]
    handover.business_status = (
        BusinessStatus.BREACHED if handover.fired_breaches else BusinessStatus.ON_TRACK
    )


def end_attempt(handover: Handover, now: datetime, outcome: str, reason: str | None) -> None:
    attempt = handover.attempts[-1]
    if attempt.ended_at is None:
        attempt.ended_at, attempt.outcome, attempt.reason = now, outcome, reason


def next_untried(run: RunBase, handover: Handover) -> Provider | None:
    tried = {a.provider_id for a in handover.attempts}
    providers = run.definition.providers_for(run.step(handover))
    return next((p for p in providers if p.id not in tried), None)
