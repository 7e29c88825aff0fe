"""Pathway definition model: the single source of truth for the catalogue format.

A pathway is a directed acyclic graph of handovers between provider roles. These pydantic
models describe one definition as written in YAML; the JSON Schema they produce is what
`pathways schema` publishes for editors. Cross-reference and graph checks live in
`pathways.validation` and run as the model's final validator, so an invalid definition can
never be constructed. The parts of a definition live in `pathways.elements` (re-exported here),
so validation and graph analysis import them, not this module: no import circle.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from pathways.elements import (
    DURATION_SCHEMA as DURATION_SCHEMA,
)
from pathways.elements import (
    ISO_DURATION as ISO_DURATION,
)
from pathways.elements import (
    Clock as Clock,
)
from pathways.elements import (
    CompleteClock as CompleteClock,
)
from pathways.elements import (
    Condition as Condition,
)
from pathways.elements import (
    Duration as Duration,
)
from pathways.elements import (
    EscalationAction as EscalationAction,
)
from pathways.elements import (
    EscalationRung as EscalationRung,
)
from pathways.elements import (
    FieldName as FieldName,
)
from pathways.elements import (
    FieldType as FieldType,
)
from pathways.elements import (
    HandoverField as HandoverField,
)
from pathways.elements import (
    Provider as Provider,
)
from pathways.elements import (
    Recurrence as Recurrence,
)
from pathways.elements import (
    Role as Role,
)
from pathways.elements import (
    Scalar as Scalar,
)
from pathways.elements import (
    SignedDuration as SignedDuration,
)
from pathways.elements import (
    Sla as Sla,
)
from pathways.elements import (
    Slug as Slug,
)
from pathways.elements import (
    Step as Step,
)
from pathways.elements import (
    Strict as Strict,
)
from pathways.elements import (
    format_duration as format_duration,
)
from pathways.validation import DefinitionError, check_definition


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

    @model_validator(mode="after")
    def _consistent(self) -> PathwayDefinition:
        """Run the whole-definition checks (pathways.validation)."""
        if problems := check_definition(self):
            raise DefinitionError(problems)
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
