"""pathways.fhir renders handovers as FHIR R4 resources that a generic FHIR library accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.task import Task

from pathways import fhir
from pathways.catalogue import Catalogue
from pathways.commands import ProviderCommand
from pathways.demo import example_output
from pathways.engine import PathwayRun
from pathways.model import FieldType
from pathways.state import Patient, TaskStatus

BASE = "https://pathways.example.org"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PATIENT = Patient(nhs_number="9434765919", name="Test Patient")


@pytest.fixture
def run(catalogue: Catalogue) -> PathwayRun:
    return PathwayRun.begin(
        "pw-00000000000000aa", catalogue.get("hip-replacement-d2a"), PATIENT, NOW
    )


def _move(run: PathwayRun, handover_id: str, status: TaskStatus, at: datetime, **extra: object):
    handover = run.state.handovers[handover_id]
    command = ProviderCommand(
        handover_id=handover_id,
        provider_id=handover.provider_id,
        status=status,
        actor=f"provider:{handover.provider_id}",
        **extra,  # type: ignore[arg-type]
    )
    return run.apply_provider(command, at)


def test_a_new_handover_is_a_valid_requested_task(run: PathwayRun) -> None:
    (handover,) = run.state.handovers.values()
    task = fhir.task_resource(run.state, handover, BASE)
    parsed = Task.model_validate(task)
    assert parsed.status == "requested" and parsed.intent == "order"
    assert task["id"] == f"pw-00000000000000aa.{handover.id}"
    assert task["owner"] == {"reference": f"Organization/{handover.provider_id}"}
    assert task["requester"] == {"reference": "Organization/elmshire-msk-partnership"}
    assert task["for"]["identifier"] == {"system": fhir.NHS_NUMBER_SYSTEM, "value": "9434765919"}
    assert task["basedOn"] == [{"reference": "CarePlan/pw-00000000000000aa"}]
    assert task["meta"]["versionId"] == str(handover.version)
    assert task["businessStatus"]["coding"][0]["code"] == "on-track"
    assert task["input"] == [
        {
            "type": {"text": "handover-contract"},
            "valueCanonical": f"{BASE}/fhir/Questionnaire/hip-replacement-d2a.1.hip-replacement",
        }
    ]
    assert "executionPeriod" not in task and "output" not in task


def test_completed_data_becomes_outputs_and_the_next_steps_inputs(run: PathwayRun) -> None:
    step = run.definition.step("hip-replacement")
    data = example_output(step)
    _move(run, "hip-replacement.1", TaskStatus.ACCEPTED, NOW + timedelta(hours=1))
    done = _move(
        run, "hip-replacement.1", TaskStatus.COMPLETED, NOW + timedelta(days=2), output=data
    )
    task = fhir.task_resource(run.state, done, BASE)
    Task.model_validate(task)
    assert task["status"] == "completed"
    assert task["executionPeriod"]["start"] == "2026-03-02T10:00:00Z"
    assert task["executionPeriod"]["end"] == "2026-03-04T09:00:00Z"
    assert fhir.outputs_from_task(task) == done.output

    following = run.state.handovers["discharge-assessment.1"]
    next_task = fhir.task_resource(run.state, following, BASE)
    Task.model_validate(next_task)
    delivered = {i["type"]["text"] for i in next_task["input"][1:]}
    assert delivered == {f"hip-replacement.{name}" for name in done.output}


def test_each_field_type_has_its_fhir_value(catalogue: Catalogue) -> None:
    seen: dict[FieldType, str] = {}
    for definition in catalogue:
        for step in definition.steps:
            data = example_output(step)
            for field in step.handover:
                (key,) = fhir.field_value(field, data[field.name])
                seen[field.type] = key
    expected = {t: fhir.VALUE_KEYS[t] for t in seen}
    if FieldType.DOCUMENT in seen:
        expected[FieldType.DOCUMENT] = seen[FieldType.DOCUMENT]
        assert seen[FieldType.DOCUMENT] in ("valueAttachment", "valueReference")
    assert seen == expected


def test_documents_round_trip_as_attachment_and_reference(run: PathwayRun) -> None:
    step = run.definition.step("hip-replacement")
    note = step.field("operation_note")
    assert note is not None
    attachment = {
        "url": "https://docs.example.org/1",
        "title": "Op note",
        "content_type": "application/pdf",
    }
    reference = {"reference": "DocumentReference/7", "title": None}
    for document in (attachment, reference):
        task = {
            "output": [{"type": {"text": "operation_note"}, **fhir.field_value(note, document)}]
        }
        back = fhir.outputs_from_task(task)["operation_note"]
        assert back == {k: v for k, v in document.items() if v is not None}


def test_questionnaire_lists_every_field_of_the_contract(run: PathwayRun) -> None:
    definition = run.definition
    step = definition.step("hip-replacement")
    resource = fhir.questionnaire_resource(definition, step, BASE)
    parsed = Questionnaire.model_validate(resource)
    assert parsed.status == "active"
    assert resource["url"] == f"{BASE}/fhir/Questionnaire/hip-replacement-d2a.1.hip-replacement"
    items = {item["linkId"]: item for item in resource["item"]}
    assert list(items) == [f.name for f in step.handover]
    assert items["operation_date"]["type"] == "date"
    assert items["njr_record_submitted"]["type"] == "boolean"
    assert items["operation_note"]["type"] == "attachment"
    side = items["side"]
    assert side["type"] == "choice" and side["required"] is True
    assert [o["valueCoding"]["code"] for o in side["answerOption"]] == ["left", "right"]


def test_operation_outcome_has_one_issue_per_problem() -> None:
    body = fhir.operation_outcome(
        [
            ("error", "invariant", "field 'side' is required"),
            ("error", "invariant", "field 'procedure' must be one of"),
        ]
    )
    parsed = OperationOutcome.model_validate(body)
    assert [i.diagnostics for i in parsed.issue] == [
        "field 'side' is required",
        "field 'procedure' must be one of",
    ]


def test_unreadable_outputs_are_named_not_guessed() -> None:
    task = {
        "output": [
            {"valueString": "no name"},
            {"type": {"text": "side"}},
            {"type": {"text": "procedure"}, "valueCode": "a", "valueString": "b"},
            {"type": {"text": "ok"}, "valueBoolean": True},
            {"type": {"text": "ok"}, "valueBoolean": False},
        ]
    }
    with pytest.raises(fhir.OutputError) as raised:
        fhir.outputs_from_task(task)
    assert raised.value.problems == [
        "Task.output[0] has no type.text naming its field",
        "Task.output[1] (side) needs exactly one value[x]",
        "Task.output[2] (procedure) needs exactly one value[x]",
        "Task.output[4] repeats field 'ok'",
    ]


def test_coding_values_read_as_their_code() -> None:
    task = {"output": [{"type": {"text": "side"}, "valueCoding": {"code": "left"}}]}
    assert fhir.outputs_from_task(task) == {"side": "left"}
