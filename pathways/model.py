"""Pathway definition model: the single source of truth for the catalogue format.

A pathway is a directed acyclic graph of handovers between provider roles. These pydantic
models describe one definition as written in YAML; the JSON Schema they produce is what
`pathways schema` publishes for editors. Cross-reference and graph checks live in
`pathways.validation` and run as the model's final validator, so an invalid definition can
never be constructed. The parts of a definition live in `pathways.elements` (re-exported here),
so validation and graph analysis import them, not this module: no import circle.
"""

from __future__ import annotations

from pydantic import Field, PrivateAttr, model_validator

from pathways.elements import (
    DURATION_SCHEMA,
    ISO_DURATION,
    Clock,
    CompleteClock,
    Condition,
    Duration,
    EscalationAction,
    EscalationRung,
    FieldName,
    FieldType,
    HandoverField,
    Provider,
    Recurrence,
    Role,
    Scalar,
    SignedDuration,
    Sla,
    Slug,
    Step,
    Strict,
    format_duration,
)
from pathways.validation import DefinitionError, check_definition

__all__ = [
    "DURATION_SCHEMA",
    "ISO_DURATION",
    "Clock",
    "CompleteClock",
    "Condition",
    "Duration",
    "EscalationAction",
    "EscalationRung",
    "FieldName",
    "FieldType",
    "HandoverField",
    "Provider",
    "Recurrence",
    "Role",
    "Scalar",
    "SignedDuration",
    "Sla",
    "Slug",
    "Step",
    "Strict",
    "format_duration",
    "DefinitionError",
    "PathwayDefinition",
]


class PathwayDefinition(Strict):
    """A versioned pathway: roles, providers and the graph of handover steps."""

    id: Slug
    version: int = Field(ge=1)
    title: str = Field(min_length=1)
    description: str = ""
    lead_provider: Provider
    roles: tuple[Role, ...] = Field(min_length=1)
    escalation: tuple[EscalationRung, ...] = Field(
        default=(), description="Default escalation ladder for steps without their own."
    )
    steps: tuple[Step, ...] = Field(min_length=1)

    @property
    def key(self) -> str:
        """Catalogue key: id and version, the pin a running pathway keeps."""
        return f"{self.id}@{self.version}"

    _checked: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _consistent(self) -> PathwayDefinition:
        """Run the whole-definition checks (pathways.validation) once per instance: pydantic
        re-runs this validator whenever a checked definition is passed into another model
        (every PathwayState), which cost a fifth of a simulated pathway's time."""
        if self._checked:
            return self
        if problems := check_definition(self):
            raise DefinitionError(problems)
        self._checked = True
        return self

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def role(self, role_id: str) -> Role:
        return next(r for r in self.roles if r.id == role_id)

    def ladder(self, step: Step) -> tuple[EscalationRung, ...]:
        """The escalation ladder in force for a step."""
        return self.escalation if step.escalation is None else step.escalation

    def providers_for(self, step: Step) -> tuple[Provider, ...]:
        return self.role(step.role).providers

    def provider(self, provider_id: str) -> Provider | None:
        for role in self.roles:
            for provider in role.providers:
                if provider.id == provider_id:
                    return provider
        return None
