"""Commands that providers and coordinators send to a running pathway.

Each is one Temporal Update on the workflow. `PathwayRun.check_*` says whether a command may be
applied (the Update validator) and `PathwayRun.apply_*` applies it (the Update handler).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator

from pathways.state import Model, TaskStatus

MAX_EXTENSION = timedelta(days=366)
"""The most one extension may move a due time: a year (and a day); far more than any care
standard, and far from datetime overflow."""

MAX_OUTPUT_BYTES = 64 * 1024
"""Handover data in one command, as compact JSON: large documents travel as references (url),
so a command stays far below Temporal's 2 MiB payload limit (warning at 512 KiB)."""
MAX_OUTPUT_FIELDS = 100
MAX_REASON = 2000
MAX_NOTE = 4000
MAX_NOTES = 100
"""Notes one pathway keeps (with MAX_NOTE, at most 400 KB of the carried state)."""
PATHWAY_OUTPUT_BUDGET = 256 * 1024
"""Handover data one pathway keeps inline, all handovers together: the carried state (one
payload at continue-as-new) stays far below Temporal's 2 MiB limit."""

HandoverId = Annotated[str, StringConstraints(min_length=1, max_length=120)]
"""'{step id}.{occurrence}'; a free string here (an unknown one is refused as not found)."""
ProviderId = Annotated[str, StringConstraints(min_length=1, max_length=40)]
Actor = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=MAX_REASON)]
"""Free text that may name the patient: kept in state, never echoed in errors."""


_COMPACT = json.JSONEncoder(separators=(",", ":"), default=str)
"""json.dumps(value, separators=(",", ":"), default=str) without building an encoder per call
(the engine sizes every delivery it keeps)."""


def json_size(value: Any) -> int:
    """Compact JSON size in bytes; values JSON cannot carry count as too large."""
    try:
        return len(_COMPACT.encode(value).encode())
    except (ValueError, TypeError, RecursionError):
        return MAX_OUTPUT_BYTES + 1


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

    handover_id: HandoverId
    provider_id: ProviderId
    status: TaskStatus
    output: dict[str, Any] = Field(
        default_factory=dict, max_length=MAX_OUTPUT_FIELDS,
        description=f"handover data, on completion; at most {MAX_OUTPUT_BYTES // 1024} KiB",
    )
    reason: str | None = Field(default=None, max_length=MAX_REASON,
                               description="statusReason: for rejected, failed or on-hold")
    expected_version: int | None = Field(default=None,
                                         description="If-Match: refuse (conflict) if stale")
    actor: Actor = Field(description="who sent it, e.g. 'provider:community-nursing-north'")

    @model_validator(mode="after")
    def _bounded_output(self) -> ProviderCommand:
        if any(len(str(key)) > 100 for key in self.output):
            raise ValueError("output field names may be at most 100 characters")
        if json_size(self.output) > MAX_OUTPUT_BYTES:
            raise ValueError(
                f"output may be at most {MAX_OUTPUT_BYTES // 1024} KiB: send large documents "
                "as a reference (url), not inline"
            )
        return self


class Reassign(Model):
    handover_id: HandoverId
    provider_id: ProviderId
    reason: Reason
    actor: Actor


class ExtendDue(Model):
    """Move a handover's completion due time later (and its accept-by, if still pending).

    `by` counts from the current due time, or from now if the handover is already overdue
    (rules 2); `until` must be later than both. Either moves it by at most MAX_EXTENSION.
    """

    handover_id: HandoverId
    by: timedelta | None = None
    until: datetime | None = None
    reason: Reason
    actor: Actor

    @model_validator(mode="after")
    def _one_of(self) -> ExtendDue:
        if (self.by is None) == (self.until is None):
            raise ValueError("give exactly one of 'by' or 'until'")
        if self.by is not None and self.by <= timedelta(0):
            raise ValueError("'by' must be positive")
        if self.by is not None and self.by > MAX_EXTENSION:
            raise ValueError("'by' may be at most P366D (a year)")
        if self.until is not None and self.until.tzinfo is None:
            raise ValueError("'until' needs a time zone")
        return self


class HoldPathway(Model):
    reason: Reason
    actor: Actor


class ResumePathway(Model):
    actor: Actor


class CancelPathway(Model):
    reason: Reason
    actor: Actor


class AddNote(Model):
    text: str = Field(min_length=1, max_length=MAX_NOTE)
    actor: Actor


class EscalationAction(Model):
    """Acknowledge or resolve an escalation record, optionally with a note (kept in state)."""

    escalation_id: int = Field(description="an unknown one is refused as not found")
    actor: Actor
    note: str | None = Field(default=None, max_length=MAX_NOTE)
