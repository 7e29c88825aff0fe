"""Demo data for the embedded default, the benchmarks and end-to-end tests.

Patients use NHS test numbers (the 999 range is never issued to real people).
"""

from __future__ import annotations

from typing import Any

from pathways.model import FieldType, HandoverField, Step
from pathways.state import Patient

DEMO_PATIENTS = (
    Patient(nhs_number="9990000077", name="Demo Patient One"),
    Patient(nhs_number="9990000212", name="Demo Patient Two"),
    Patient(nhs_number="9990000352", name="Demo Patient Three"),
    Patient(nhs_number="9990000425", name="Demo Patient Four"),
)


def example_value(field: HandoverField) -> Any:
    """A value that conforms to the field's type (the first code of a coded field)."""
    match field.type:
        case FieldType.TEXT:
            return f"example {field.name.replace('_', ' ')}"
        case FieldType.NUMBER:
            return 1.5
        case FieldType.INTEGER:
            return 1
        case FieldType.BOOLEAN:
            return False
        case FieldType.DATE:
            return "2026-01-15"
        case FieldType.DATE_TIME:
            return "2026-01-15T09:30:00+00:00"
        case FieldType.CODED:
            return field.codes[0]
        case FieldType.DOCUMENT:
            return {"url": f"https://documents.example.org/{field.name}", "title": field.name}
    raise ValueError(f"no example for field type {field.type}")


def example_output(step: Step, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A conforming delivery for every field of a step (required and optional)."""
    output = {field.name: example_value(field) for field in step.handover}
    output.update(overrides or {})
    return output
