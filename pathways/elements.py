"""Building blocks of a pathway definition: durations, providers, roles, ladders, SLAs, steps.

Leaf of the definition model: it imports nothing from the rest of the package, so the
whole-definition checks (`pathways.validation`, `pathways.graph`) can use these types and
`pathways.model.PathwayDefinition` can run those checks, without an import circle.
`pathways.model` re-exports every name here: import from there.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Protocol

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pathways.webhook_url import webhook_url_problem

ISO_DURATION = re.compile(
    r"^-?P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
)
_TIMEDELTA = TypeAdapter(timedelta)


def _parse_duration(value: Any) -> timedelta:
    """Accept only ISO 8601 duration strings (months count as 30 days, years as 365)."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not ISO_DURATION.match(value.strip()):
        raise ValueError(f"{value!r} is not an ISO 8601 duration such as PT4H, P1D or P3M")
    return _TIMEDELTA.validate_python(value.strip())


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"duration must be positive, not {format_duration(value)}")
    return value


def format_duration(value: timedelta) -> str:
    """Render a timedelta as an ISO 8601 duration (signed, days and time parts)."""
    sign = "-" if value < timedelta(0) else ""
    total = abs(value)
    days, seconds = total.days, total.seconds
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(
        f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n
    )
    if total.microseconds:
        time = time.removesuffix(f"{secs}S") + f"{secs + total.microseconds / 1e6:g}S"
    text = f"{sign}P{days}D" if days else f"{sign}P"
    if time:
        text += f"T{time}"
    return text if text not in ("P", "-P") else "PT0S"


DURATION_SCHEMA = {
    "type": "string",
    "pattern": ISO_DURATION.pattern,
    "description": "ISO 8601 duration",
    "examples": ["PT4H", "P1D"],
}

SignedDuration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(DURATION_SCHEMA),
]
"""An ISO 8601 duration that may be negative (e.g. -PT2H: two hours before a due time)."""

Duration = Annotated[SignedDuration, AfterValidator(_positive)]
"""A positive ISO 8601 duration (e.g. PT2H, P1D, P3M)."""

Slug = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", min_length=1, max_length=40)
]
"""Identifier for pathways, roles, providers and steps: lower case, digits and hyphens."""

FieldName = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", min_length=1, max_length=60)
]
"""Handover data field name (snake_case); a FHIR Task.output type.text and Questionnaire linkId."""

Scalar = str | int | float | bool


class Strict(BaseModel):
    """Base for definition models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FieldType(StrEnum):
    """Type of one handover data field (maps to a FHIR value[x])."""

    TEXT = "text"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATE = "date"
    DATE_TIME = "date-time"
    CODED = "coded"
    DOCUMENT = "document"


class HandoverField(Strict):
    """One item of the data a step must deliver: the zero-error contract of its handover."""

    name: FieldName
    type: FieldType
    required: bool = True
    description: str = ""
    codes: tuple[str, ...] = Field(
        default=(), description="Allowed values of a coded field, in display order."
    )

    @model_validator(mode="after")
    def _codes_only_for_coded(self) -> HandoverField:
        if self.type is FieldType.CODED and not self.codes:
            raise ValueError(f"coded field {self.name!r} needs a non-empty list of codes")
        if self.type is not FieldType.CODED and self.codes:
            raise ValueError(f"field {self.name!r} has codes but is of type {self.type.value}")
        if len(set(self.codes)) != len(self.codes):
            raise ValueError(f"coded field {self.name!r} lists a code twice")
        return self


class Provider(Strict):
    """A concrete organisation that can fill a role (or the lead provider)."""

    id: Slug
    name: str = Field(min_length=1)
    webhook: AnyHttpUrl | None = Field(
        default=None,
        description="Where new handovers are POSTed as FHIR Tasks; without one the provider polls.",
    )
    portal: bool = Field(
        default=False,
        description="A provider with no FHIR system: each of its handovers gets a signed link to "
        "a page where it accepts, rejects, starts and completes the handover.",
    )
    ods_code: str | None = Field(
        default=None,
        pattern=r"^[A-Z0-9]{3,8}$",
        description="The organisation's NHS ODS code (3 to 8 upper-case letters and digits, "
        "e.g. RXH01): FHIR Task owner and requester carry it as an identifier a client can match.",
    )

    @field_validator("webhook")
    @classmethod
    def _webhook_is_https_or_loopback(cls, url: AnyHttpUrl | None) -> AnyHttpUrl | None:
        """Tasks name patients: never send them in clear text off this machine."""
        if url is not None and (problem := webhook_url_problem(str(url))):
            raise ValueError(problem)
        return url


class Role(Strict):
    """A provider role; providers are tried in order, the first is the primary."""

    id: Slug
    title: str = Field(min_length=1)
    providers: tuple[Provider, ...] = ()


class EscalationAction(StrEnum):
    """What one rung of an escalation ladder does."""

    REMIND_PROVIDER = "remind-provider"
    ALERT_COORDINATOR = "alert-coordinator"
    REASSIGN = "reassign"
    MARK_BREACHED = "mark-breached"


class Clock(StrEnum):
    """Which SLA clock a rung is measured against."""

    ACCEPT = "accept"
    COMPLETE = "complete"


class EscalationRung(Strict):
    """One point of a ladder, relative to the due time of its clock (-PT2H: 2 h before)."""

    at: SignedDuration
    action: EscalationAction
    clock: Clock = Clock.COMPLETE
    take_accepted_work: bool = Field(
        default=False,
        description="A reassign rung on the complete clock also fires after the provider "
        "accepted, taking accepted work away; the catalogue refuses one without this set.",
    )

    @model_validator(mode="after")
    def _take_only_by_reassigning(self) -> EscalationRung:
        if self.take_accepted_work and (
            self.action is not EscalationAction.REASSIGN or self.clock is not Clock.COMPLETE
        ):
            raise ValueError("take_accepted_work applies only to a reassign rung on the "
                             "complete clock")
        return self


class CompleteClock(StrEnum):
    """Where a handover's completion clock starts."""

    READY = "ready"
    """The patient's clock: from the moment the step became ready; a change of provider never
    resets it (only holds pause it and a recorded extension moves it)."""
    ATTEMPT = "attempt"
    """Per attempt: each provider offered the handover gets the full complete_within."""


class Sla(Strict):
    """Time allowed from the moment a step becomes ready."""

    accept_within: Duration = Field(
        description="Each provider's time to accept, from the moment it is offered the handover."
    )
    complete_within: Duration = Field(
        description="Time to complete, from the moment the step became ready (see complete_clock)."
    )
    complete_clock: CompleteClock = Field(
        default=CompleteClock.READY,
        description="ready (default): the patient's clock, kept across providers; attempt: "
        "restarted for each provider (say so only if the standard really is per provider).",
    )

    @model_validator(mode="after")
    def _accept_before_complete(self) -> Sla:
        if self.accept_within > self.complete_within:
            raise ValueError("accept_within must not exceed complete_within")
        return self


class Condition(Strict):
    """Run the step only when a field delivered by an earlier step matches."""

    step: Slug
    field: FieldName
    equals: Scalar | None = None
    not_equals: Scalar | None = None
    in_: tuple[Scalar, ...] | None = Field(default=None, alias="in")

    @model_validator(mode="after")
    def _exactly_one_test(self) -> Condition:
        tests = [t for t in (self.equals, self.not_equals, self.in_) if t is not None]
        if len(tests) != 1:
            raise ValueError("a condition needs exactly one of equals, not_equals or in")
        return self

    def holds(self, value: Any) -> bool:
        """Evaluate against the delivered value (None when the field was not delivered)."""
        if self.equals is not None:
            return bool(value == self.equals)
        if self.not_equals is not None:
            return bool(value != self.not_equals)
        return value in (self.in_ or ())

    def describe(self) -> str:
        """Human-readable test, e.g. `surgery.needs_package = true` (for CLI and diagrams)."""
        subject = f"{self.step}.{self.field}"
        if self.equals is not None:
            return f"{subject} = {json.dumps(self.equals)}"
        if self.not_equals is not None:
            return f"{subject} != {json.dumps(self.not_equals)}"
        return f"{subject} in {json.dumps(list(self.in_ or ()))}"


class Recurrence(Strict):
    """A step that recurs, e.g. a review every three months for a year (count 4)."""

    every: Duration
    count: int = Field(ge=2, le=120)


class Step(Strict):
    """One handover in the pathway: who does it, what it waits for, when, and what it delivers."""

    id: Slug
    title: str = Field(min_length=1)
    role: Slug
    description: str = ""
    after: tuple[Slug, ...] = Field(
        default=(), description="Steps that must be completed or skipped first (joins wait for all)."
    )
    when: Condition | None = None
    sla: Sla
    escalation: tuple[EscalationRung, ...] | None = Field(
        default=None, description="This step's ladder; absent means the pathway default."
    )
    handover: tuple[HandoverField, ...] = Field(
        default=(), description="The data this step must deliver on completion."
    )
    recurrence: Recurrence | None = None

    def field(self, name: str) -> HandoverField | None:
        return next((f for f in self.handover if f.name == name), None)


class DefinitionParts(Protocol):
    """What the dependency graph and the whole-definition checks read of a pathway definition.
    Typed against this, pathways.graph and pathways.validation need not import the model whose
    validator runs them (which would close an import circle)."""

    @property
    def key(self) -> str: ...

    @property
    def lead_provider(self) -> Provider: ...

    @property
    def roles(self) -> tuple[Role, ...]: ...

    @property
    def steps(self) -> tuple[Step, ...]: ...

    def ladder(self, step: Step) -> tuple[EscalationRung, ...]: ...
