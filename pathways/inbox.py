"""The escalation inbox: unresolved escalations across pathways, folded from the event log.

Read from the event store rather than by querying every running workflow, so the inbox costs
one indexed read however many patients the lead provider holds.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

from pathways.events import EventKind, PathwayEvent
from pathways.model import EscalationAction
from pathways.state import Escalation, EscalationStatus


class InboxItem(BaseModel):
    pathway_id: str
    definition: str
    escalation: Escalation


def _raised(event: PathwayEvent) -> Escalation:
    return Escalation(
        id=int(event.detail["escalation_id"]),
        handover_id=event.handover_id or "",
        step_id=event.step_id or "",
        provider_id=event.provider_id or "",
        level=EscalationAction(event.detail["level"]),
        reason=str(event.detail.get("reason", "")),
        at=event.at,
        raised_at=event.at,
    )


def _raise(item: InboxItem, event: PathwayEvent) -> None:
    """A later rung on the same escalation (rules 2): its level rises; a rise re-opens it."""
    escalation = item.escalation
    level = EscalationAction(event.detail["level"])
    if level is not escalation.level:
        escalation.level, escalation.raised_at = level, event.at
        escalation.status = EscalationStatus.OPEN
        escalation.acknowledged_at = escalation.acknowledged_by = None
    escalation.reason = str(event.detail.get("reason", escalation.reason))


def open_escalations(events: Iterable[PathwayEvent]) -> list[InboxItem]:
    """Coordinator work: escalations raised and not yet resolved, oldest first, folded from
    their events in seq order. An escalation that is only a provider reminder is the provider's
    business and stays out (it joins the inbox if a later rung raises its level)."""
    items: dict[tuple[str, int], InboxItem] = {}
    for event in events:
        key = (event.pathway_id, int(event.detail.get("escalation_id", 0)))
        if event.kind is EventKind.ESCALATED:
            if key in items:
                _raise(items[key], event)
            else:
                items[key] = InboxItem(
                    pathway_id=event.pathway_id,
                    definition=event.definition_id,
                    escalation=_raised(event),
                )
        elif key in items and event.kind is EventKind.ESCALATION_ACKNOWLEDGED:
            escalation = items[key].escalation
            escalation.status = EscalationStatus.ACKNOWLEDGED
            escalation.acknowledged_at, escalation.acknowledged_by = event.at, event.actor
        elif event.kind is EventKind.ESCALATION_RESOLVED:
            items.pop(key, None)
    work = [item for item in items.values() if item.escalation.is_coordinator_work]
    return sorted(work, key=lambda item: (item.escalation.at, item.pathway_id))
