"""Custom search attributes: how coordinators and ops filter pathways in the Temporal UI and CLI.

None of them carries patient-identifying data: the patient key is a keyed hash (see Settings).
"""

from __future__ import annotations

from typing import Any

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from pathways.model import PathwayDefinition
from pathways.state import PathwayState

DEFINITION = SearchAttributeKey.for_keyword("PathwayDefinition")
DEFINITION_VERSION = SearchAttributeKey.for_int("PathwayDefinitionVersion")
STATUS = SearchAttributeKey.for_keyword("PathwayStatus")
SLA_STATE = SearchAttributeKey.for_keyword("PathwaySlaState")
LEAD_PROVIDER = SearchAttributeKey.for_keyword("PathwayLeadProvider")
PATIENT_KEY = SearchAttributeKey.for_keyword("PathwayPatientKey")
OPEN_STEPS = SearchAttributeKey.for_keyword_list("PathwayOpenSteps")
OPEN_PROVIDERS = SearchAttributeKey.for_keyword_list("PathwayOpenProviders")

ALL_KEYS = (
    DEFINITION,
    DEFINITION_VERSION,
    STATUS,
    SLA_STATE,
    LEAD_PROVIDER,
    PATIENT_KEY,
    OPEN_STEPS,
    OPEN_PROVIDERS,
)
"""Registered by `pathways setup` and by the embedded dev server."""


def open_steps(state: PathwayState) -> list[str]:
    return sorted({h.step_id for h in state.open_handovers})


def open_providers(state: PathwayState) -> list[str]:
    return sorted({h.provider_id for h in state.open_handovers})


def dynamic_values(state: PathwayState) -> dict[str, object]:
    """The attributes that change as the pathway runs, by name."""
    return {
        STATUS.name: state.status.value,
        SLA_STATE.name: state.sla_state.value,
        OPEN_STEPS.name: open_steps(state),
        OPEN_PROVIDERS.name: open_providers(state),
    }


def updates_for(state: PathwayState, previous: dict[str, object]) -> list[SearchAttributeUpdate[Any]]:
    """Upserts for the values that differ from `previous` (each upsert costs a history event)."""
    keys = {key.name: key for key in (STATUS, SLA_STATE, OPEN_STEPS, OPEN_PROVIDERS)}
    current = dynamic_values(state)
    return [
        keys[name].value_set(value)  # type: ignore[arg-type]
        for name, value in current.items()
        if previous.get(name) != value
    ]


def initial(definition: PathwayDefinition, patient_key: str | None) -> TypedSearchAttributes:
    """Attributes set at start, so ops can filter a pathway from its first moment."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(DEFINITION, definition.id),
        SearchAttributePair(DEFINITION_VERSION, definition.version),
        SearchAttributePair(LEAD_PROVIDER, definition.lead_provider.id),
        SearchAttributePair(STATUS, "active"),
        SearchAttributePair(SLA_STATE, "on-track"),
    ]
    if patient_key:
        pairs.append(SearchAttributePair(PATIENT_KEY, patient_key))
    return TypedSearchAttributes(pairs)


def current_values(attributes: TypedSearchAttributes) -> dict[str, object]:
    """The dynamic attributes a run already has (carried over by continue-as-new)."""
    values: dict[str, object] = {}
    for key in (STATUS, SLA_STATE, OPEN_STEPS, OPEN_PROVIDERS):
        value = attributes.get(key)
        if value is not None:
            values[key.name] = list(value) if isinstance(value, (list, tuple)) else value
    return values
