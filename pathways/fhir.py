"""FHIR R4 rendering of handovers as plain dicts: Task, CarePlan, Questionnaire, OperationOutcome.

Pure on purpose (no fastapi, no fhir.resources): the Temporal workflow imports this module in its
sandbox to build webhook bodies, and the API uses the same functions, so a provider sees one Task
shape whether it polls or is notified. `outputs_from_task` is the inverse mapping for Task.output.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from pathways.model import FieldType, HandoverField, PathwayDefinition, Step
from pathways.state import (
    BusinessStatus,
    Handover,
    PathwayState,
    PathwayStatus,
    TaskStatus,
    task_id,
)

STEP_SYSTEM = "urn:pathways:step"
PATHWAY_SYSTEM = "urn:pathways:pathway"
"""CarePlan.identifier system: the pathway id, the CarePlan a Task's basedOn points at."""
BUSINESS_STATUS_SYSTEM = "urn:pathways:business-status"
TASK_STATUS_SYSTEM = "http://hl7.org/fhir/task-status"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
PORTAL_LINK_EXTENSION = "urn:pathways:extension:portal-link"
"""Task.extension (valueUrl) in webhook bodies only, to a provider marked `portal: true`: its
signed page link for the handover (never stored, never served by the FHIR API)."""
ACCEPT_BY_EXTENSION = "urn:pathways:extension:accept-by"
"""Task.restriction.extension (valueDateTime): when the current provider must accept by.

R4 allows one Task.restriction, whose period.end is the patient's due time (kept across
providers); the acceptance deadline is per provider, so it rides as an extension on the same
restriction, present only while the current provider has not yet accepted."""
CONTRACT_INPUT = "handover-contract"
"""Task.input type.text of the canonical URL of the step's Questionnaire."""

VALUE_KEYS: dict[FieldType, str] = {
    FieldType.TEXT: "valueString",
    FieldType.NUMBER: "valueDecimal",
    FieldType.INTEGER: "valueInteger",
    FieldType.BOOLEAN: "valueBoolean",
    FieldType.DATE: "valueDate",
    FieldType.DATE_TIME: "valueDateTime",
    FieldType.CODED: "valueCode",
    FieldType.DOCUMENT: "valueAttachment",
}
"""The value[x] a handover field of each type is rendered as."""

ITEM_TYPES: dict[FieldType, str] = {
    FieldType.TEXT: "string",
    FieldType.NUMBER: "decimal",
    FieldType.INTEGER: "integer",
    FieldType.BOOLEAN: "boolean",
    FieldType.DATE: "date",
    FieldType.DATE_TIME: "dateTime",
    FieldType.CODED: "choice",
    FieldType.DOCUMENT: "attachment",
}
"""Questionnaire.item.type of each field type."""

BUSINESS_STATUS_DISPLAY: dict[BusinessStatus, str] = {
    BusinessStatus.ON_TRACK: "On track",
    BusinessStatus.AT_RISK: "At risk",
    BusinessStatus.BREACHED: "Breached",
    BusinessStatus.ESCALATED: "Escalated",
}


def instant(value: datetime) -> str:
    """A FHIR instant: always with a time zone (naive times are UTC in this system)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


def questionnaire_id(definition: PathwayDefinition, step: Step) -> str:
    """'{definition}.{version}.{step}': the contract is pinned to the definition version."""
    return f"{definition.id}.{definition.version}.{step.id}"


def task_url(base_url: str, task_id: str) -> str:
    """A Task's absolute URL on this server (a Bundle entry's fullUrl)."""
    return f"{base_url.rstrip('/')}/fhir/Task/{task_id}"


def history_entry(
    base_url: str, task_id: str, version: int, task: dict[str, Any], created: bool
) -> dict[str, Any]:
    """One version of a Task as an entry of a history Bundle (`_history`, and a Subscription
    notification): the resource, the request that made the version (`created`: the POST that
    made the Task) and the response (status, version ETag, when)."""
    return {
        "fullUrl": task_url(base_url, task_id),
        "resource": task,
        "request": {"method": "POST", "url": "Task"} if created
        else {"method": "PUT", "url": f"Task/{task_id}"},
        "response": {
            "status": "201 Created" if created else "200 OK",
            "etag": f'W/"{version}"',
            "lastModified": task.get("meta", {}).get("lastUpdated"),
        },
    }


def searchset(entries: list[dict[str, Any]], total: int | None = None,
              links: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A searchset Bundle; `total` defaults to the entries'. FHIR JSON has no empty arrays
    (ele-1): with no matches there is no `entry`."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries) if total is None else total,
    }
    if links:
        bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return bundle


def questionnaire_url(definition: PathwayDefinition, step: Step, base_url: str) -> str:
    return f"{base_url.rstrip('/')}/fhir/Questionnaire/{questionnaire_id(definition, step)}"


def code_system(definition: PathwayDefinition, field: HandoverField) -> str:
    """The code system of a coded field's allowed values."""
    return f"urn:pathways:{definition.id}:{field.name}"


def business_status(status: BusinessStatus) -> dict[str, Any]:
    return {
        "coding": [
            {
                "system": BUSINESS_STATUS_SYSTEM,
                "code": status.value,
                "display": BUSINESS_STATUS_DISPLAY[status],
            }
        ],
        "text": BUSINESS_STATUS_DISPLAY[status],
    }


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _document(value: dict[str, Any]) -> dict[str, Any]:
    """A delivered document ({url|reference, title, content_type}) as value[x]."""
    if value.get("reference"):
        reference = {"reference": value["reference"], "display": value.get("title")}
        return {"valueReference": _present(reference)}
    attachment = {
        "url": value.get("url"),
        "title": value.get("title"),
        "contentType": value.get("content_type"),
    }
    return {"valueAttachment": _present(attachment)}


def field_value(field: HandoverField, value: Any) -> dict[str, Any]:
    """The value[x] element of one delivered field, e.g. {"valueInteger": 3}."""
    if field.type is FieldType.DOCUMENT and isinstance(value, dict):
        return _document(value)
    if isinstance(value, datetime):
        value = instant(value)
    elif isinstance(value, date):
        value = value.isoformat()
    return {VALUE_KEYS[field.type]: value}


def _data_element(name: str, field: HandoverField | None, value: Any) -> dict[str, Any]:
    rendered = field_value(field, value) if field else {"valueString": str(value)}
    return {"type": {"text": name}, **rendered}


def _contract_input(state: PathwayState, step: Step, base_url: str) -> dict[str, Any]:
    return {
        "type": {"text": CONTRACT_INPUT},
        "valueCanonical": questionnaire_url(state.definition, step, base_url),
    }


def _delivered_inputs(state: PathwayState, step: Step) -> list[dict[str, Any]]:
    """The data delivered by the steps this one waits for (their latest completed occurrence)."""
    inputs: list[dict[str, Any]] = []
    for before_id in step.after:
        before = state.definition.step(before_id)
        latest = state.latest_delivery(before_id)
        if latest is None:
            continue
        for name, value in latest.output.items():
            inputs.append(_data_element(f"{before_id}.{name}", before.field(name), value))
    return inputs


def _patient(state: PathwayState) -> dict[str, Any]:
    reference: dict[str, Any] = {
        "type": "Patient",
        "identifier": {"system": NHS_NUMBER_SYSTEM, "value": state.patient.nhs_number},
    }
    if state.patient.name:
        reference["display"] = state.patient.name
    return reference


def organisation(provider_id: str, ods_code: str | None) -> dict[str, Any]:
    """A reference to a provider organisation: literal, plus its ODS code identifier when the
    definition gives one, so a client can match the organisation by its national code."""
    reference: dict[str, Any] = {"reference": f"Organization/{provider_id}"}
    if ods_code:
        reference["identifier"] = {"system": ODS_SYSTEM, "value": ods_code}
    return reference


def _ods_code(definition: PathwayDefinition, provider_id: str) -> str | None:
    if provider_id == definition.lead_provider.id:
        return definition.lead_provider.ods_code
    provider = definition.provider(provider_id)
    return provider.ods_code if provider else None


def with_portal_link(task: dict[str, Any], url: str) -> dict[str, Any]:
    """The Task for a `portal: true` provider's webhook: with its signed page link."""
    extensions = [*task.get("extension", []), {"url": PORTAL_LINK_EXTENSION, "valueUrl": url}]
    return {**task, "extension": extensions}


def _execution_period(handover: Handover) -> dict[str, str] | None:
    start = handover.started_at or handover.accepted_at
    period: dict[str, str] = {}
    if start:
        period["start"] = instant(start)
    if handover.completed_at:
        period["end"] = instant(handover.completed_at)
    return period or None


def _restriction(handover: Handover) -> dict[str, Any]:
    restriction: dict[str, Any] = {"period": {"end": instant(handover.complete_by)}}
    if handover.is_open and handover.accepted_at is None:
        restriction["extension"] = [
            {"url": ACCEPT_BY_EXTENSION, "valueDateTime": instant(handover.accept_by)}
        ]
    return restriction


def task_resource(state: PathwayState, handover: Handover, base_url: str) -> dict[str, Any]:
    """One handover as a FHIR R4 Task, patient included: only entitled callers ever get one."""
    definition = state.definition
    step = definition.step(handover.step_id)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id(state.pathway_id, handover.id),
        "meta": {"versionId": str(handover.version), "lastUpdated": instant(handover.updated_at)},
        "basedOn": [{"reference": f"CarePlan/{state.pathway_id}"}],
        "status": handover.status.value,
        "businessStatus": business_status(handover.business_status),
        "intent": "order",
        "code": {"coding": [{"system": STEP_SYSTEM, "code": step.id}], "text": step.title},
        "description": step.description or step.title,
        "for": _patient(state),
        "authoredOn": instant(handover.ready_at),
        "lastModified": instant(handover.updated_at),
        "requester": organisation(definition.lead_provider.id, definition.lead_provider.ods_code),
        "owner": organisation(handover.provider_id, _ods_code(definition, handover.provider_id)),
        "restriction": _restriction(handover),
        "input": [_contract_input(state, step, base_url), *_delivered_inputs(state, step)],
    }
    if handover.status_reason:
        task["statusReason"] = {"text": handover.status_reason}
    period = _execution_period(handover)
    if period:
        task["executionPeriod"] = period
    if handover.output:
        task["output"] = [
            _data_element(name, step.field(name), value) for name, value in handover.output.items()
        ]
    return task


CAREPLAN_STATUS: dict[PathwayStatus, str] = {
    PathwayStatus.ACTIVE: "active",
    PathwayStatus.ON_HOLD: "on-hold",
    PathwayStatus.COMPLETED: "completed",
    PathwayStatus.CANCELLED: "revoked",
}
"""CarePlan.status (request-status) of each pathway status."""


def careplan_resource(state: PathwayState, handovers: list[Handover]) -> dict[str, Any]:
    """The pathway as the CarePlan its Tasks are `basedOn`, so that reference resolves.

    Minimal on purpose: status, title, the patient as the Tasks name it, the lead provider, and
    `activity` only for `handovers`, the Tasks the caller may read (another provider's Task
    stays invisible, so ids reveal nothing)."""
    definition = state.definition
    careplan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": state.pathway_id,
        "meta": {"lastUpdated": instant(state.updated_at)},
        "identifier": [{"system": PATHWAY_SYSTEM, "value": state.pathway_id}],
        "status": CAREPLAN_STATUS[state.status],
        "intent": "order",
        "title": definition.title,
        "subject": _patient(state),
        "period": _present({"start": instant(state.started_at),
                            "end": instant(state.ended_at) if state.ended_at else None}),
        "author": organisation(definition.lead_provider.id, definition.lead_provider.ods_code),
    }
    activities = [
        {"reference": {"reference": f"Task/{task_id(state.pathway_id, h.id)}",
                       "display": definition.step(h.step_id).title}}
        for h in sorted(handovers, key=lambda h: (h.ready_at, h.id))
    ]
    if activities:  # no empty arrays in FHIR JSON
        careplan["activity"] = activities
    return careplan


def as_seen_by(
    handover: Handover, provider_id: str, status: TaskStatus, reason: str | None
) -> Handover:
    """The handover as the provider whose move (`status`, `reason`) was just applied sees it.

    After a rejection or failure the broker hands the work on to the next provider: the caller
    sees its own final word on the Task, not who has it now (nor that provider's data).
    """
    if handover.provider_id == provider_id:
        return handover
    return handover.model_copy(
        update={"provider_id": provider_id, "status": status, "status_reason": reason,
                "output": {}}
    )


def withdrawn_task(task: dict[str, Any], provider_id: str) -> dict[str, Any]:
    """The Task as a provider that lost it must see it: cancelled, and still addressed to it
    (the live Task may by now belong to another provider, whom this one must not learn of)."""
    return {
        **task,
        "status": "cancelled",
        "owner": organisation(provider_id, _identifier_value(task.get("owner"), provider_id)),
        "statusReason": {"text": "withdrawn from this provider"},
    }


def _identifier_value(reference: Any, provider_id: str) -> str | None:
    """The ODS code on a recorded owner reference, if it names this provider."""
    if not isinstance(reference, dict) or reference.get("reference") != f"Organization/{provider_id}":
        return None
    identifier = reference.get("identifier")
    return identifier.get("value") if isinstance(identifier, dict) else None


def _item(definition: PathwayDefinition, field: HandoverField) -> dict[str, Any]:
    item: dict[str, Any] = {
        "linkId": field.name,
        "text": field.description or field.name.replace("_", " "),
        "type": ITEM_TYPES[field.type],
        "required": field.required,
    }
    if field.codes:
        system = code_system(definition, field)
        item["answerOption"] = [
            {"valueCoding": {"system": system, "code": code}} for code in field.codes
        ]
    return item


def questionnaire_resource(
    definition: PathwayDefinition, step: Step, base_url: str
) -> dict[str, Any]:
    """A step's handover contract: one item per field the provider must deliver."""
    resource: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": questionnaire_id(definition, step),
        "url": questionnaire_url(definition, step, base_url),
        "version": str(definition.version),
        "name": "".join(part.capitalize() for part in f"{definition.id}-{step.id}".split("-")),
        "title": f"{definition.title}: {step.title}",
        "status": "active",
        "subjectType": ["Patient"],
        "code": [{"system": STEP_SYSTEM, "code": step.id, "display": step.title}],
    }
    if step.description:
        resource["description"] = step.description
    if step.handover:
        resource["item"] = [_item(definition, field) for field in step.handover]
    return resource


def operation_outcome(issues: list[tuple[str, str, str]]) -> dict[str, Any]:
    """An OperationOutcome with one issue per (severity, code, diagnostics)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": severity, "code": code, "diagnostics": diagnostics}
            for severity, code, diagnostics in issues
        ],
    }


class OutputError(ValueError):
    """Task.output elements that cannot be read as handover data; `problems` names each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _output_value(element: dict[str, Any]) -> tuple[bool, Any]:
    """(found, value) of one Task.output's value[x], in the shape the engine checks."""
    values = [(key, v) for key, v in element.items() if key.startswith("value")]
    if len(values) != 1:
        return False, None
    key, value = values[0]
    if key == "valueCoding" and isinstance(value, dict):
        return True, value.get("code")
    if key == "valueReference" and isinstance(value, dict):
        return True, _present({"reference": value.get("reference"), "title": value.get("display")})
    if key == "valueAttachment" and isinstance(value, dict):
        attachment = {"url": value.get("url"), "title": value.get("title")}
        return True, _present(attachment | {"content_type": value.get("contentType")})
    return True, value


_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
"""Only names shaped like field names are echoed in problems (a misused name may be data)."""


def outputs_from_task(task: dict[str, Any]) -> dict[str, Any]:
    """Task.output -> handover data {field name: value}; OutputError naming every bad output.

    Types are not checked here: the engine checks the data against the step's contract, so a
    wrongly typed value is refused as non-conforming with the field named.
    """
    data: dict[str, Any] = {}
    problems: list[str] = []
    outputs = task.get("output") or []
    for index, element in enumerate(outputs if isinstance(outputs, list) else [outputs]):
        kind = element.get("type") if isinstance(element, dict) else None
        name = kind.get("text") if isinstance(kind, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(f"Task.output[{index}] has no type.text naming its field")
            continue
        shown = name if _FIELD_NAME.match(name) else "a name that is not a field name"
        found, value = _output_value(element)
        if not found:
            problems.append(f"Task.output[{index}] ({shown}) needs exactly one value[x]")
        elif name in data:
            problems.append(f"Task.output[{index}] repeats field {shown!r}")
        else:
            data[name] = value
    if problems:
        raise OutputError(problems)
    return data
