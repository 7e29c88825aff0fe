"""Runtime state of one patient's pathway: the model the workflow carries across continue-as-new.

Everything here is plain data. `pathways.engine.PathwayRun` is the only code that changes it; the
Temporal workflow stores it, the Query returns it, the API renders it as FHIR Tasks or JSON.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    model_validator,
)

from pathways.dates import calendar_date
from pathways.model import Clock, EscalationAction, PathwayDefinition
from pathways.nhs_number import NhsNumber

RULES_ORIGINAL = 1
"""Original rules: a reassignment restarts both clocks; extend re-arms rungs; one escalation per
rung. Kept for pathways that were in flight when rules 2 shipped."""

RULES_PATIENT_CLOCK = 2
"""The patient's clock: completion due from the moment the step became ready, never reset by a
change of provider; acceptance per attempt; rungs fire once per attempt; one escalation per late
handover attempt, resolved automatically by reassignment or completion."""

RULES_LATEST = RULES_PATIENT_CLOCK


class Model(BaseModel):
    """Base for runtime models: unknown keys are errors so typos never pass silently.

    Errors hide the input: a command or state may carry patient data, which must not reach logs.
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        """Computed fields are serialised for readers; read back (continue-as-new), ignored."""
        # The class attribute, not the model_computed_fields class property: this runs for every
        # model built (events, attempts, handovers), so the property's lookup cost showed up.
        computed = cls.__pydantic_computed_fields__
        if computed and isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in computed}
        return data


class TaskStatus(StrEnum):
    """FHIR R4 Task.status values used for handovers."""

    REQUESTED = "requested"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    IN_PROGRESS = "in-progress"
    ON_HOLD = "on-hold"
    FAILED = "failed"
    COMPLETED = "completed"


OPEN_STATUSES = frozenset(
    {TaskStatus.REQUESTED, TaskStatus.ACCEPTED, TaskStatus.IN_PROGRESS, TaskStatus.ON_HOLD}
)
"""Statuses in which a provider holds the handover and its clocks run."""


class BusinessStatus(StrEnum):
    """FHIR Task.businessStatus: the SLA view of a handover."""

    ON_TRACK = "on-track"
    AT_RISK = "at-risk"
    BREACHED = "breached"
    ESCALATED = "escalated"


class SlaState(StrEnum):
    """Worst SLA state over a pathway's open handovers (a search attribute)."""

    ON_TRACK = "on-track"
    AT_RISK = "at-risk"
    BREACHED = "breached"


class PathwayStatus(StrEnum):
    ACTIVE = "active"
    ON_HOLD = "on-hold"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    WAITING = "waiting"
    ACTIVE = "active"
    SKIPPED = "skipped"
    DONE = "done"


def _calendar_date(value: str) -> str:
    clean = calendar_date(value)
    if clean is None:
        raise ValueError("birth date must be a calendar date YYYY-MM-DD")
    return clean


CalendarDate = Annotated[str, AfterValidator(_calendar_date)]
"""A date kept as its ISO text YYYY-MM-DD (as FHIR Patient.birthDate carries it)."""


class Patient(Model):
    """Who the pathway is for. Never logged, never in ids or search attributes."""

    nhs_number: NhsNumber
    name: str | None = Field(default=None, min_length=1, max_length=200)
    birth_date: CalendarDate | None = None


class Attempt(Model):
    """One provider's turn at a handover (a reassignment starts a new attempt)."""

    provider_id: str
    dispatched_at: datetime
    accepted_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str | None = Field(
        default=None, description="rejected, failed, reassigned, cancelled or completed"
    )
    reason: str | None = None


class Handover(Model):
    """One step for one patient at one provider: a FHIR Task in the broker pattern."""

    id: str = Field(description="step id and occurrence, e.g. 'gp-review.2'")
    step_id: str
    occurrence: int = 1
    status: TaskStatus = TaskStatus.REQUESTED
    business_status: BusinessStatus = BusinessStatus.ON_TRACK
    provider_id: str
    inputs_complete_at: datetime = Field(description="when everything it waits for was done")
    ready_at: datetime
    dispatched_at: datetime
    accepted_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    ended_at: datetime | None = None
    accept_by: datetime
    complete_by: datetime
    accept_breached: bool = False
    complete_breached: bool = False
    fired_rungs: list[int] = Field(default_factory=list, description="ladder rungs fired this attempt")
    fired_breaches: list[Clock] = Field(
        default_factory=list, description="due times (accept, complete) passed this attempt"
    )
    applied_commands: list[str] = Field(
        default_factory=list, description="fingerprints of recent provider commands (idempotency)"
    )
    attempts: list[Attempt] = Field(default_factory=list)
    output: dict[str, Any] = Field(default_factory=dict)
    status_reason: str | None = None
    refused_deliveries: int = 0
    version: int = 1
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def lead_time(self) -> timedelta | None:
        """Ready to completed."""
        return None if self.completed_at is None else self.completed_at - self.ready_at

    @computed_field  # type: ignore[prop-decorator]
    @property
    def work_time(self) -> timedelta | None:
        """Started (or accepted, when never started) to completed: the value-adding part."""
        begun = self.started_at or self.accepted_at or self.completed_at
        return None if self.completed_at is None or begun is None else self.completed_at - begun

    @computed_field  # type: ignore[prop-decorator]
    @property
    def wait_time(self) -> timedelta | None:
        """Lead time that was not work: waiting for acceptance or a decision."""
        if self.lead_time is None or self.work_time is None:
            return None
        return self.lead_time - self.work_time

    @computed_field  # type: ignore[prop-decorator]
    @property
    def handover_gap(self) -> timedelta:
        """From the inputs being complete to this provider being told."""
        return self.dispatched_at - self.inputs_complete_at

    @property
    def is_open(self) -> bool:
        """A provider holds it and its clocks run."""
        return self.status in OPEN_STATUSES

    @property
    def awaiting_coordinator(self) -> bool:
        """Rejected or failed with no alternate provider left: a coordinator must reassign it."""
        return self.status in (TaskStatus.REJECTED, TaskStatus.FAILED)

    @property
    def is_unfinished(self) -> bool:
        """Still to be delivered: held by a provider or waiting for a coordinator."""
        return self.is_open or self.awaiting_coordinator


class EscalationStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Escalation(Model):
    """A late or troubled handover needing attention: raised by a ladder rung, a broker that ran
    out of providers or an undeliverable notification.

    Under rules 2 there is one per late handover attempt: later rungs raise `level` on the same
    record, and a reassignment or completion resolves it automatically (`resolution`).
    """

    id: int
    handover_id: str
    step_id: str
    provider_id: str
    level: EscalationAction
    reason: str
    at: datetime
    raised_at: datetime | None = Field(default=None, description="when the level last rose")
    status: EscalationStatus = EscalationStatus.OPEN
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_note: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolved_note: str | None = None
    resolution: str | None = Field(
        default=None, description="coordinator, or automatic: reassigned, completed, cancelled"
    )

    @property
    def is_coordinator_work(self) -> bool:
        """Provider reminders are the provider's business, not the coordinator's inbox."""
        return self.level is not EscalationAction.REMIND_PROVIDER


class Note(Model):
    at: datetime
    author: str
    text: str


class StepState(Model):
    status: StepStatus = StepStatus.WAITING
    occurrences: int = Field(default=0, description="occurrences dispatched so far")
    next_ready_at: datetime | None = Field(
        default=None, description="when the next occurrence of a recurring step becomes ready"
    )
    anchor_at: datetime | None = Field(
        default=None,
        description="ready time of occurrence 1, moved later by holds: occurrence k+1 is due "
        "at anchor_at + k * every",
    )
    finished_at: datetime | None = Field(default=None, description="when it was done or skipped")


class PathwayState(Model):
    """The whole state of one pathway: carried across continue-as-new, returned by the Query."""

    pathway_id: str
    definition: PathwayDefinition
    patient: Patient
    rules_version: int = Field(
        default=RULES_ORIGINAL,
        description="engine rules this pathway runs under; states carried from before rules "
        "were versioned run the original ones (see RULES_*)",
    )
    status: PathwayStatus = PathwayStatus.ACTIVE
    started_at: datetime
    ended_at: datetime | None = None
    held_since: datetime | None = None
    held_total: timedelta = timedelta(0)
    steps: dict[str, StepState] = Field(default_factory=dict)
    handovers: dict[str, Handover] = Field(default_factory=dict)
    escalations: list[Escalation] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list)
    event_seq: int = Field(default=0, description="last event number issued (event ids)")
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sla_state(self) -> SlaState:
        """Breached if an unfinished handover is breached now; at risk if one is at risk/escalated.

        Business status, not the breach flags (which keep history), so that extending a due
        time or reassigning puts the pathway back on track.
        """
        statuses = {h.business_status for h in self.open_handovers}
        if BusinessStatus.BREACHED in statuses:
            return SlaState.BREACHED
        if statuses - {BusinessStatus.ON_TRACK}:
            return SlaState.AT_RISK
        return SlaState.ON_TRACK

    @computed_field  # type: ignore[prop-decorator]
    @property
    def refused_deliveries(self) -> int:
        return sum(h.refused_deliveries for h in self.handovers.values())

    @property
    def open_handovers(self) -> list[Handover]:
        """Handovers still to be delivered, including those awaiting a coordinator (open steps);
        none once the pathway is finished."""
        if self.is_finished:
            return []
        return [h for h in self.handovers.values() if h.is_unfinished]

    @property
    def is_finished(self) -> bool:
        return self.status in (PathwayStatus.COMPLETED, PathwayStatus.CANCELLED)

    def latest_delivery(self, step_id: str) -> Handover | None:
        """The step's latest completed occurrence: what conditions test and what later steps
        receive as input (one rule for the engine and the FHIR rendering)."""
        completed = [
            h for h in self.handovers.values()
            if h.step_id == step_id and h.status is TaskStatus.COMPLETED
        ]
        return max(completed, key=lambda h: h.occurrence, default=None)


def task_id(pathway_id: str, handover_id: str) -> str:
    """Global FHIR Task id of a handover: '{pathway_id}.{step_id}.{occurrence}'."""
    return f"{pathway_id}.{handover_id}"


def parse_task_id(value: str) -> tuple[str, str]:
    """Split a Task id into (pathway_id, handover_id); ValueError if it is not one of ours."""
    pathway_id, sep, handover_id = value.partition(".")
    if not sep or not pathway_id.startswith("pw-") or "." not in handover_id:
        raise ValueError(f"{value!r} is not a handover task id")
    return pathway_id, handover_id


class PathwaySummary(BaseModel):
    """A pathway's status after a coordinator command: what an Update returns, so history holds
    the answer, not the whole state (which names the patient)."""

    id: str
    status: PathwayStatus
    sla_state: SlaState
    updated_at: datetime

    @classmethod
    def of(cls, state: PathwayState) -> PathwaySummary:
        return cls(
            id=state.pathway_id,
            status=state.status,
            sla_state=state.sla_state,
            updated_at=state.updated_at,
        )
