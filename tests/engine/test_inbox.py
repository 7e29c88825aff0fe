"""The escalation inbox folded from escalation events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pathways.events import EventKind, PathwayEvent
from pathways.inbox import open_escalations
from pathways.model import EscalationAction
from pathways.state import EscalationStatus

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def ev(pathway: str, seq: int, kind: EventKind, escalation: int, **detail: object) -> PathwayEvent:
    return PathwayEvent(
        event_id=f"{pathway}:{seq}", pathway_id=pathway, definition_id="hip",
        definition_version=1, seq=seq, kind=kind, at=T0 + timedelta(hours=seq),
        handover_id="gp-review.1", step_id="gp-review", provider_id="gp-1",
        actor="engine" if kind is EventKind.ESCALATED else "coordinator:amy",
        detail={"escalation_id": escalation, **detail},
    )


def raised(pathway: str, seq: int, escalation: int, level: str) -> PathwayEvent:
    return ev(pathway, seq, EventKind.ESCALATED, escalation, level=level, reason="late")


def test_raised_escalations_stay_until_resolved_and_show_acknowledgement() -> None:
    items = open_escalations([
        raised("pw-a", 1, 1, "alert-coordinator"),
        raised("pw-a", 2, 2, "alert-coordinator"),
        ev("pw-a", 3, EventKind.ESCALATION_ACKNOWLEDGED, 2),
        ev("pw-a", 4, EventKind.ESCALATION_RESOLVED, 1),
        raised("pw-b", 1, 1, "mark-breached"),
    ])
    assert [(i.pathway_id, i.escalation.id) for i in items] == [("pw-b", 1), ("pw-a", 2)]
    acknowledged = items[1].escalation
    assert acknowledged.status is EscalationStatus.ACKNOWLEDGED
    assert acknowledged.acknowledged_by == "coordinator:amy"
    assert acknowledged.level is EscalationAction.ALERT_COORDINATOR
    assert items[0].escalation.status is EscalationStatus.OPEN
    assert items[0].definition == "hip" and items[0].escalation.reason == "late"


def test_same_escalation_number_in_two_pathways_is_two_items() -> None:
    items = open_escalations([
        raised("pw-a", 1, 1, "alert-coordinator"),
        raised("pw-b", 2, 1, "alert-coordinator"),
        ev("pw-a", 3, EventKind.ESCALATION_RESOLVED, 1),
    ])
    assert [i.pathway_id for i in items] == ["pw-b"]


def test_provider_reminders_are_not_coordinator_work_until_a_later_rung_raises_them() -> None:
    reminder = [raised("pw-a", 1, 1, "remind-provider")]
    assert open_escalations(reminder) == []
    items = open_escalations([
        *reminder,
        ev("pw-a", 2, EventKind.ESCALATION_ACKNOWLEDGED, 1),
        raised("pw-a", 3, 1, "alert-coordinator"),
    ])
    (item,) = items
    assert item.escalation.level is EscalationAction.ALERT_COORDINATOR
    assert item.escalation.status is EscalationStatus.OPEN, "a higher level is news"
    assert item.escalation.at == T0 + timedelta(hours=1)
    assert item.escalation.raised_at == T0 + timedelta(hours=3)
