"""JSON shapes of the coordinator API (/api): what coordinators send and get back."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from pathways.events import PathwayEvent, PathwayRow
from pathways.graph import to_mermaid
from pathways.inbox import InboxItem
from pathways.lean import PathwayMetrics
from pathways.model import HandoverField, PathwayDefinition, Sla
from pathways.nhs_number import NhsNumber
from pathways.state import (
    Escalation,
    Handover,
    Note,
    PathwayStatus,
    PathwaySummary,
    Patient,
    StepStatus,
)

__all__ = ["PathwaySummary"]


class Body(BaseModel):
    """Request bodies: unknown members are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class StartRequest(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "definition": "hip-replacement-d2a",
                    "patient": {"nhs_number": "943 476 5919", "name": "Example Patient"},
                }
            ]
        }
    )

    definition: str = Field(
        min_length=1, max_length=80, description="definition id, or id@version to pin one"
    )
    patient: Patient
    allow_duplicate: bool = Field(
        default=False,
        description="start even if this definition already runs for this patient "
        "(otherwise 409 naming the running pathway)",
    )


class ReassignRequest(Body):
    handover_id: str = Field(min_length=1, max_length=120)
    provider_id: str = Field(min_length=1, max_length=40)
    reason: str = Field(min_length=1, max_length=2000)


class ExtendRequest(Body):
    """Give exactly one of `by` (ISO 8601 duration, e.g. PT4H) or `until` (an instant)."""

    handover_id: str = Field(min_length=1, max_length=120)
    by: timedelta | None = None
    until: datetime | None = None
    reason: str = Field(min_length=1, max_length=2000)


class ReasonRequest(Body):
    reason: str = Field(min_length=1, max_length=2000)


class NoteRequest(Body):
    text: str = Field(min_length=1, max_length=4000)


class EscalationRequest(Body):
    note: str | None = Field(default=None, max_length=2000)


class RoleView(BaseModel):
    id: str
    title: str
    providers: list[str]


class StepView(BaseModel):
    id: str
    title: str
    role: str
    after: list[str]
    conditional: bool
    recurring: bool
    sla: Sla
    handover: list[HandoverField]


class DefinitionView(BaseModel):
    id: str
    version: int
    title: str
    description: str
    lead_provider: str
    roles: list[RoleView]
    steps: list[StepView]
    mermaid: str = Field(description="the step graph as a Mermaid flowchart")

    @classmethod
    def of(cls, definition: PathwayDefinition) -> DefinitionView:
        return cls(
            id=definition.id,
            version=definition.version,
            title=definition.title,
            description=definition.description,
            lead_provider=definition.lead_provider.id,
            roles=[
                RoleView(id=r.id, title=r.title, providers=[p.id for p in r.providers])
                for r in definition.roles
            ],
            steps=[
                StepView(
                    id=s.id,
                    title=s.title,
                    role=s.role,
                    after=list(s.after),
                    conditional=s.when is not None,
                    recurring=s.recurrence is not None,
                    sla=s.sla,
                    handover=list(s.handover),
                )
                for s in definition.steps
            ],
            mermaid=to_mermaid(definition),
        )


class CatalogueView(BaseModel):
    definitions: list[DefinitionView]


class PathwayCreated(BaseModel):
    id: str
    status: PathwayStatus
    definition: str
    version: int


def for_people(duration: timedelta) -> str:
    """An ISO 8601 duration rounded for a person to read: PT22M, PT3H5M, P2DT4H, PT40S."""
    seconds = max(0, round(duration.total_seconds()))
    if seconds < 60:
        return f"PT{seconds}S"
    minutes = round(seconds / 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"P{days}DT{hours}H" if hours else f"P{days}D"
    return "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")


class Waited(BaseModel):
    """A duration twice: exact for machines, rounded for people."""

    seconds: float = Field(description="exact, for machines")
    display: str = Field(description="ISO 8601, rounded for people, e.g. PT22M")

    @classmethod
    def of(cls, duration: timedelta | None) -> Waited | None:
        if duration is None:
            return None
        return cls(seconds=duration.total_seconds(), display=for_people(duration))


class PathwayListItem(PathwayRow):
    """A listed pathway with what a coordinator sorts and chases by (a plain PathwayRow is
    accepted too, e.g. from the CLI: the extras are then empty)."""

    model_config = ConfigDict(from_attributes=True)

    next_due: datetime | None = Field(
        default=None, description="soonest due time of its open handovers"
    )
    waited: Waited | None = Field(
        default=None, description="since its longest-waiting open handover became ready"
    )
    patient_name: str | None = Field(
        default=None, description="display name (with include=patient, or in a patient search)"
    )


class PathwayPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[PathwayListItem]


class PathwaySearch(Body):
    """Find a patient's pathways by NHS number (sent in the body, never in a URL); matched
    through the keyed patient hash, so the number itself is never stored or compared."""

    nhs_number: NhsNumber
    status: list[PathwayStatus] | None = Field(default=None, max_length=4)
    definition: list[str] | None = Field(default=None, max_length=50)
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class HandoverView(Handover):
    """A handover with live times: an open one has waited (since ready) and worked (since
    started or accepted) up to now; a finished one its final figures."""

    waited: Waited | None = None
    worked: Waited | None = None

    @classmethod
    def of(cls, handover: Handover, now: datetime) -> HandoverView:
        end = handover.completed_at or handover.ended_at or now
        begun = handover.started_at or handover.accepted_at
        worked = end - begun if begun is not None else None
        return cls(
            **handover.model_dump(exclude={"lead_time", "work_time"}),
            waited=Waited.of(end - handover.ready_at),
            worked=Waited.of(worked),
        )


class StepProgress(BaseModel):
    id: str
    title: str
    status: StepStatus
    occurrences: int


class PathwayDetail(PathwaySummary):
    """Everything a coordinator sees about one pathway, patient included."""

    definition: str
    version: int
    title: str
    patient: Patient
    started_at: datetime
    ended_at: datetime | None
    held_since: datetime | None
    steps: list[StepProgress]
    handovers: list[HandoverView]
    escalations: list[Escalation]
    notes: list[Note]
    lean: PathwayMetrics = Field(description="lean measures of this pathway, so far")
    timeline: list[PathwayEvent] = Field(description="the event log, oldest first")


class Inbox(BaseModel):
    """Open and acknowledged escalations across running pathways, oldest first."""

    items: list[InboxItem]
