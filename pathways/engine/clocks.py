"""Clocks: the SLA agenda (ladder rungs, due-time breaches, recurrences), extensions and holds.

This is where an escalation rule changes: what each rung does when it fires (`_fire_point`),
when a breach is recorded (`_breach`), how `extend` moves due times and what it re-arms. The
arithmetic of due times and pending points is in pathways.ladder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pathways import commands as cmd
from pathways.commands import Refusal
from pathways.engine import broker, escalations, flow
from pathways.engine.base import ENGINE, RunBase, by_id
from pathways.events import EventKind, NotificationKind
from pathways.ladder import (
    DuePoint,
    clock_due,
    clock_running,
    earliest_pending,
    pending_points,
    raised,
    rearm_future,
    settled,
)
from pathways.model import Clock, EscalationAction, format_duration
from pathways.state import BusinessStatus, Handover, PathwayStatus, StepStatus


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


def next_wakeup(run: RunBase) -> datetime | None:
    """Earliest time-driven thing still to fire (rung, due time, recurrence); None if none."""
    state = run.state
    if state.status is not PathwayStatus.ACTIVE:
        return None
    times = [
        at for handover in state.handovers.values()
        if handover.is_unfinished
        and (at := earliest_pending(handover, run.ladder(handover))) is not None
    ]
    times.extend(st.next_ready_at for st in state.steps.values() if st.next_ready_at is not None)
    return min(times, default=None)


def tick(run: RunBase, now: datetime) -> None:
    """Fire everything due at or before `now`, one at a time in time order.

    What fires is recorded at `now`, when it really happens (a provider told late was told
    late); a breach event keeps the due time it missed in its detail.
    """
    while run.state.status is PathwayStatus.ACTIVE:
        due = [item for item in _agenda(run) if item.at <= now]
        if not due:
            return
        item = min(due, key=_order)
        if isinstance(item, _Recurrence):
            flow.fire_recurrence(run, item.step_id, now)
        else:
            _fire_point(run, item, now)


def _agenda(run: RunBase) -> list[_Due]:
    items: list[_Due] = []
    for handover in run.state.handovers.values():
        if handover.is_unfinished:  # a finished handover has no running clock: no points
            items.extend(pending_points(handover, run.ladder(handover)))
    items.extend(
        _Recurrence(st.next_ready_at, step_id)
        for step_id, st in run.state.steps.items()
        if st.next_ready_at is not None
    )
    return items


def _fire_point(run: RunBase, point: DuePoint, at: datetime) -> None:
    handover = run.state.handovers[point.handover_id]
    if point.rung is None:
        _breach(run, handover, point.clock, at)
        return
    rung = run.ladder(handover)[point.rung]
    handover.fired_rungs.append(point.rung)
    reason = (
        f"rung {point.rung + 1} ({rung.action.value}) at {format_duration(rung.at)} "
        f"from the {rung.clock.value} due time"
    )
    if rung.action is EscalationAction.REASSIGN:
        broker.by_ladder(run, handover, reason, at)
        return
    if rung.action is EscalationAction.REMIND_PROVIDER:
        handover.business_status = raised(handover.business_status, BusinessStatus.AT_RISK)
    elif rung.action is EscalationAction.ALERT_COORDINATOR:
        handover.business_status = raised(handover.business_status, BusinessStatus.ESCALATED)
    else:
        _flag_breach(handover, rung.clock)
        if run.patient_clock and rung.clock not in handover.fired_breaches:
            handover.fired_breaches.append(rung.clock)  # the due point will not repeat it
    run.touch(handover, at)
    escalations.escalate(run, handover, rung.action, reason, at)
    if rung.action is EscalationAction.REMIND_PROVIDER:
        run.notify(handover, NotificationKind.REMINDER)


def _breach(run: RunBase, handover: Handover, clock: Clock, at: datetime) -> None:
    handover.fired_breaches.append(clock)
    if not run.patient_clock and _marked_breached(run, handover, clock):
        return
    _flag_breach(handover, clock)
    run.touch(handover, at)
    detail = {"clock": clock.value, "due": clock_due(handover, clock).isoformat()}
    run.emit(EventKind.BREACHED, at, handover=handover, actor=ENGINE, detail=detail)


def _marked_breached(run: RunBase, handover: Handover, clock: Clock) -> bool:
    """A mark-breached rung already fired on this clock in this attempt (original rules)."""
    ladder = run.ladder(handover)
    return any(
        ladder[i].action is EscalationAction.MARK_BREACHED and ladder[i].clock is clock
        for i in handover.fired_rungs
    )


def _flag_breach(handover: Handover, clock: Clock) -> None:
    if clock is Clock.ACCEPT:
        handover.accept_breached = True
    else:
        handover.complete_breached = True
    handover.business_status = BusinessStatus.BREACHED


# --- extend ---------------------------------------------------------------------------------
def check_extend(run: RunBase, c: cmd.ExtendDue, now: datetime | None = None) -> None:
    """Refuse an extension of a closed handover or one that would not move the due time later;
    `now` (when the caller has it) also refuses an `until` already past."""
    handover = run.handover(c.handover_id)
    run.require_unfinished()
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
            f"'until' may be at most {format_duration(cmd.MAX_EXTENSION)} after the current "
            "due time"])


def apply_extend(run: RunBase, c: cmd.ExtendDue, now: datetime) -> Handover:
    """Move the completion due time later on purpose, recording who, why and from what.

    Rules 2: `by` counts from the current due time, or from now when the handover is already
    overdue (so "30 more minutes" gives 30 minutes); rungs that fired stay fired (once per
    attempt), while the due-time breach points re-arm if moved past now.
    """
    check_extend(run, c, now)
    handover = run.state.handovers[c.handover_id]
    old = handover.complete_by
    if run.patient_clock:
        counted_from = _extend(handover, c, now)
    else:
        counted_from = _extend_original(run, handover, c, now)
    run.touch(handover, now)
    detail = {"from": old.isoformat(), "to": handover.complete_by.isoformat(),
              "counted_from": counted_from, "reason": c.reason}
    if c.by is not None:
        detail["by"] = format_duration(c.by)
    run.emit(EventKind.DUE_EXTENDED, now, handover=handover, actor=c.actor, detail=detail)
    return handover


def _extend(handover: Handover, c: cmd.ExtendDue, now: datetime) -> str:
    """Rules 2; returns what `by` counted from ("due" or "now")."""
    old = handover.complete_by
    base = max(old, now)
    new = base + c.by if c.by is not None else c.until
    assert new is not None
    handover.complete_by = new
    if handover.accepted_at is None:
        handover.accept_by = min(max(handover.accept_by, now) + (new - base), new)
    handover.fired_breaches = [
        clock for clock in handover.fired_breaches if clock_due(handover, clock) <= now
    ]
    running = [clock for clock in handover.fired_breaches if clock_running(handover, clock)]
    handover.business_status = BusinessStatus.BREACHED if running else BusinessStatus.ON_TRACK
    return "due" if old >= now else "now"


def _extend_original(run: RunBase, handover: Handover, c: cmd.ExtendDue, now: datetime) -> str:
    """Rules 1: `by` counts from the due time even when overdue; fired rungs re-arm."""
    old = handover.complete_by
    delta = c.by if c.by is not None else c.until - old  # type: ignore[operator]
    handover.complete_by = old + delta
    if handover.accepted_at is None:
        handover.accept_by += delta
    ladder = run.ladder(handover)
    rearm_future(handover, ladder, now)
    if settled(handover, ladder):
        handover.business_status = BusinessStatus.ON_TRACK
    return "due"


# --- holds ----------------------------------------------------------------------------------
def shift_for_hold(run: RunBase, held: timedelta, now: datetime) -> None:
    """After a pathway hold, every running clock and pending recurrence moves later by the time
    held: both clocks of every unfinished handover, and recurring steps' schedules."""
    for handover in by_id(run.state.open_handovers):
        handover.accept_by += held
        handover.complete_by += held
        run.touch(handover, now)
    for st in run.state.steps.values():
        if st.status is StepStatus.ACTIVE and st.anchor_at is not None:
            st.anchor_at += held
        if st.next_ready_at is not None:
            st.next_ready_at += held
