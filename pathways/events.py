"""What a pathway tells the outside world: event-log records and provider notifications.

The engine emits these as it applies commands and timers; the workflow hands them to
activities (record events, notify provider). They carry no patient-identifying data.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from pathways.state import Model


class EventKind(StrEnum):
    READY = "ready"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    STARTED = "started"
    HELD = "held"
    RESUMED = "resumed"
    COMPLETED = "completed"
    REFUSED_DELIVERY = "refused-delivery"
    REJECTED = "rejected"
    FAILED = "failed"
    SKIPPED = "skipped"
    ESCALATED = "escalated"
    BREACHED = "breached"
    REASSIGNED = "reassigned"
    DUE_EXTENDED = "due-extended"
    NOTIFICATION_FAILED = "notification-failed"
    CANCELLED = "cancelled"
    ESCALATION_ACKNOWLEDGED = "escalation-acknowledged"
    ESCALATION_RESOLVED = "escalation-resolved"
    NOTE = "note"
    PATHWAY_STARTED = "pathway-started"
    PATHWAY_HELD = "pathway-held"
    PATHWAY_RESUMED = "pathway-resumed"
    PATHWAY_COMPLETED = "pathway-completed"
    PATHWAY_CANCELLED = "pathway-cancelled"
    PATHWAY_TERMINATED = "pathway-terminated"
    PATHWAY_FAILED = "pathway-failed"


class PathwayEvent(Model):
    """One row of the event log (a process-mining event: case, activity, time, resource)."""

    event_id: str = Field(description="'{pathway_id}:{seq}', unique and stable across retries")
    pathway_id: str
    definition_id: str
    definition_version: int
    seq: int
    kind: EventKind
    at: datetime
    handover_id: str | None = None
    step_id: str | None = None
    provider_id: str | None = None
    actor: str | None = None
    detail: dict[str, Any] = Field(
        default_factory=dict, description="reasons, levels, field names; never patient data"
    )


class NotificationKind(StrEnum):
    DISPATCHED = "dispatched"
    REMINDER = "reminder"
    CANCELLED = "cancelled"


class Notification(Model):
    """Tell one provider system about a handover (webhook POST of the FHIR Task)."""

    pathway_id: str
    handover_id: str
    provider_id: str
    webhook: str
    kind: NotificationKind
    version: int = Field(description="handover version: with the id, the idempotency key")
    task: dict[str, Any] = Field(
        default_factory=dict, description="the FHIR R4 Task body, rendered by the workflow"
    )
    portal: bool = Field(
        default=False, description="the provider is marked `portal: true`: send its page link"
    )


class Effects(Model):
    """Everything a state change asks the outside world to do, in order."""

    events: list[PathwayEvent] = Field(default_factory=list)
    notifications: list[Notification] = Field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.notifications)


class HandoverRow(Model):
    """Read-model row of one handover (FHIR Task search reads these)."""

    task_id: str
    pathway_id: str
    definition_id: str
    handover_id: str
    step_id: str
    occurrence: int
    provider_id: str
    status: str
    business_status: str
    version: int
    ready_at: datetime
    complete_by: datetime
    updated_at: datetime


class PathwayRow(Model):
    """Read-model row of one pathway (coordinator lists and filters read these)."""

    pathway_id: str
    definition_id: str
    definition_version: int
    lead_provider: str
    status: str
    sla_state: str
    open_steps: list[str]
    open_providers: list[str]
    open_step_titles: list[str]
    patient_key: str | None = None
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None


class TaskVersion(Model):
    """A handover's FHIR Task as rendered at one version: the body of its webhooks."""

    task_id: str
    version: int
    task: dict[str, Any]


class RecordBatch(Model):
    """One write to the event store: new events plus the rows they changed (idempotent)."""

    events: list[PathwayEvent] = Field(default_factory=list)
    handovers: list[HandoverRow] = Field(default_factory=list)
    pathway: PathwayRow
    tasks: list[TaskVersion] = Field(default_factory=list)
