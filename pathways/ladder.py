"""SLA and escalation-ladder arithmetic: when each clock is due and which points are still to fire.

A handover has two clocks: accept, the provider's (from each dispatch to a provider, until it
accepts) and complete, the patient's (from the moment the step became ready until it is
completed; under rules 2 a change of provider does not restart it, see engine/broker.py). Each
ladder rung fires once per attempt at its clock's due time plus its offset; each clock also has
an implicit breach point at its due time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pathways.model import Clock, EscalationRung, Sla
from pathways.state import BusinessStatus, Handover

_SEVERITY = (
    BusinessStatus.ON_TRACK,
    BusinessStatus.AT_RISK,
    BusinessStatus.ESCALATED,
    BusinessStatus.BREACHED,
)


@dataclass(frozen=True)
class DuePoint:
    """One moment something fires for a handover: a ladder rung, or a clock's breach (rung None)."""

    at: datetime
    handover_id: str
    clock: Clock
    rung: int | None = None

    @property
    def sort_key(self) -> tuple[datetime, str, int, int, str]:
        """Time order; at equal times rungs before breach points, then by rung index."""
        is_breach = self.rung is None
        return (self.at, self.handover_id, int(is_breach), self.rung or 0, self.clock.value)


def due_times(sla: Sla, start: datetime) -> tuple[datetime, datetime]:
    """(accept_by, complete_by) for a handover first dispatched at `start` (its ready time)."""
    return start + sla.accept_within, start + sla.complete_within


def clock_due(handover: Handover, clock: Clock) -> datetime:
    return handover.accept_by if clock is Clock.ACCEPT else handover.complete_by


def rung_time(handover: Handover, rung: EscalationRung) -> datetime:
    return clock_due(handover, rung.clock) + rung.at


def clock_running(handover: Handover, clock: Clock) -> bool:
    """Accept runs until accepted; complete runs until the handover is finished."""
    if not handover.is_unfinished:
        return False
    return clock is Clock.COMPLETE or handover.accepted_at is None


def pending_points(handover: Handover, ladder: tuple[EscalationRung, ...]) -> list[DuePoint]:
    """Points not yet fired this attempt. Rungs need a provider holding the handover; breach
    points also apply while it waits for a coordinator (the patient is still waiting)."""
    return [DuePoint(at, handover.id, clock, rung) for at, clock, rung in _pending(handover, ladder)]


def earliest_pending(handover: Handover, ladder: tuple[EscalationRung, ...]) -> datetime | None:
    """The time of the first of `pending_points`, without building them (next_wakeup asks this
    after every change)."""
    return min((at for at, _, _ in _pending(handover, ladder)), default=None)


def _pending(
    handover: Handover, ladder: tuple[EscalationRung, ...]
) -> list[tuple[datetime, Clock, int | None]]:
    if not handover.is_unfinished:  # no clock runs (see clock_running)
        return []
    accept_running = handover.accepted_at is None  # complete runs while unfinished
    points: list[tuple[datetime, Clock, int | None]] = []
    if handover.is_open:
        fired = handover.fired_rungs
        for index, rung in enumerate(ladder):
            clock = rung.clock
            if index not in fired and (accept_running or clock is Clock.COMPLETE):
                points.append((rung_time(handover, rung), clock, index))
    breaches = handover.fired_breaches
    if accept_running and Clock.ACCEPT not in breaches:
        points.append((handover.accept_by, Clock.ACCEPT, None))
    if Clock.COMPLETE not in breaches:
        points.append((handover.complete_by, Clock.COMPLETE, None))
    return points


def rearm_future(handover: Handover, ladder: tuple[EscalationRung, ...], now: datetime) -> None:
    """After due times moved: points whose new time is after `now` may fire again."""
    handover.fired_rungs = [
        i for i in handover.fired_rungs if rung_time(handover, ladder[i]) <= now
    ]
    handover.fired_breaches = [c for c in handover.fired_breaches if clock_due(handover, c) <= now]


def settled(handover: Handover, ladder: tuple[EscalationRung, ...]) -> bool:
    """Nothing has fired this attempt on a clock that is still running."""
    rungs = (ladder[i].clock for i in handover.fired_rungs)
    return not any(clock_running(handover, c) for c in (*rungs, *handover.fired_breaches))


def raised(current: BusinessStatus, level: BusinessStatus) -> BusinessStatus:
    """Business status only rises within an attempt: on-track < at-risk < escalated < breached."""
    return max(current, level, key=_SEVERITY.index)
