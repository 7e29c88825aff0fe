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
        raised("pw-a", 1, 1, "remind-provider"),
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
        raised("pw-a", 1, 1, "remind-provider"),
        raised("pw-b", 2, 1, "remind-provider"),
        ev("pw-a", 3, EventKind.ESCALATION_RESOLVED, 1),
    ])
    assert [i.pathway_id for i in items] == ["pw-b"]
