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
    )


def open_escalations(events: Iterable[PathwayEvent]) -> list[InboxItem]:
    """Escalations raised and not yet resolved, oldest first, from their events in seq order."""
    items: dict[tuple[str, int], InboxItem] = {}
    for event in events:
        key = (event.pathway_id, int(event.detail.get("escalation_id", 0)))
        if event.kind is EventKind.ESCALATED:
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
    return sorted(items.values(), key=lambda item: (item.escalation.at, item.pathway_id))
