"""Commands that providers and coordinators send to a running pathway.

Each is one Temporal Update on the workflow. `PathwayRun.check_*` says whether a command may be
applied (the Update validator) and `PathwayRun.apply_*` applies it (the Update handler).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field, model_validator

from pathways.state import Model, TaskStatus

MAX_EXTENSION = timedelta(days=366)
"""The most one extension may move a due time: a year (and a day); far more than any care
standard, and far from datetime overflow."""


class Refusal(Exception):
    """A command that cannot be applied; `problems` lists every reason, `kind` classifies it.

    kinds: "not-found" (unknown handover or escalation, or another provider's), "conflict" (a
    transition the life cycle forbids, a stale version, a finished pathway), "non-conforming"
    (handover data that breaks the step's contract), "invalid" (a malformed command).
    """

    def __init__(self, kind: str, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.kind = kind
        self.problems = problems


class ProviderCommand(Model):
    """A provider moves its handover to `status` (FHIR Task PUT or a console button)."""

    handover_id: str
    provider_id: str
    status: TaskStatus
    output: dict[str, Any] = Field(default_factory=dict, description="handover data, on completion")
    reason: str | None = Field(default=None, description="statusReason, for rejected or failed")
    expected_version: int | None = Field(default=None, description="If-Match: refuse if stale")
    actor: str = Field(description="who sent it, e.g. 'provider:community-nursing-north'")


class Reassign(Model):
    handover_id: str
    provider_id: str
    reason: str = Field(min_length=1)
    actor: str


class ExtendDue(Model):
    """Move a handover's completion due time later (and its accept-by, if still pending)."""

    handover_id: str
    by: timedelta | None = None
    until: datetime | None = None
    reason: str = Field(min_length=1)
    actor: str

    @model_validator(mode="after")
    def _one_of(self) -> ExtendDue:
        if (self.by is None) == (self.until is None):
            raise ValueError("give exactly one of 'by' or 'until'")
        if self.by is not None and self.by <= timedelta(0):
            raise ValueError("'by' must be positive")
        if self.by is not None and self.by > MAX_EXTENSION:
            raise ValueError("'by' may be at most P366D")
        return self


class HoldPathway(Model):
    reason: str = Field(min_length=1)
    actor: str


class ResumePathway(Model):
    actor: str


class CancelPathway(Model):
    reason: str = Field(min_length=1)
    actor: str


class AddNote(Model):
    text: str = Field(min_length=1, max_length=4000)
    actor: str


class EscalationAction(Model):
    """Acknowledge or resolve an escalation record."""

    escalation_id: int
    actor: str
    note: str | None = None

