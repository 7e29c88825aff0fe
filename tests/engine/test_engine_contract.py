"""The handover data contract: every problem named by field, values never echoed."""

from __future__ import annotations

from typing import Any

import pytest

from pathways.contract import check_delivery
from pathways.model import Step

STEP = Step.model_validate({
    "id": "discharge",
    "title": "Discharge summary",
    "role": "ward",
    "sla": {"accept_within": "PT1H", "complete_within": "P1D"},
    "handover": [
        {"name": "summary", "type": "text"},
        {"name": "weight_kg", "type": "number", "required": False},
        {"name": "visits", "type": "integer", "required": False},
        {"name": "oxygen", "type": "boolean", "required": False},
        {"name": "discharged_on", "type": "date", "required": False},
        {"name": "seen_at", "type": "date-time", "required": False},
        {"name": "route", "type": "coded", "codes": ["p0", "p1", "p2", "p3"], "required": False},
        {"name": "letter", "type": "document", "required": False},
    ],
})
GOOD: dict[str, Any] = {
    "summary": "Home with support.",
    "weight_kg": 71.5,
    "visits": 3,
    "oxygen": False,
    "discharged_on": "2026-01-05",
    "seen_at": "2026-01-05T10:00:00Z",
    "route": "p1",
    "letter": {"url": "https://docs.example/letter/1", "title": "Letter", "content_type": None},
}


def test_a_conforming_delivery_is_normalised() -> None:
    output, problems = check_delivery(STEP, GOOD)
    assert problems == []
    assert output["seen_at"] == "2026-01-05T10:00:00+00:00"
    assert output["letter"] == {"url": "https://docs.example/letter/1", "title": "Letter"}
    assert list(output) == [f.name for f in STEP.handover]


def test_optional_fields_may_be_absent_or_null() -> None:
    output, problems = check_delivery(STEP, {"summary": "ok", "visits": None})
    assert (output, problems) == ({"summary": "ok"}, [])


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("summary", "   ", "field 'summary' must be non-empty text"),
        ("summary", 12, "field 'summary' must be non-empty text"),
        ("weight_kg", True, "field 'weight_kg' must be a number"),
        ("weight_kg", "71", "field 'weight_kg' must be a number"),
        ("weight_kg", float("nan"), "field 'weight_kg' must be a number"),
        ("visits", 2.0, "field 'visits' must be a whole number"),
        ("visits", False, "field 'visits' must be a whole number"),
        ("oxygen", "yes", "field 'oxygen' must be true or false"),
        ("oxygen", 1, "field 'oxygen' must be true or false"),
        ("discharged_on", "05/01/2026", "field 'discharged_on' must be a calendar date YYYY-MM-DD"),
        ("discharged_on", "2026-02-30", "field 'discharged_on' must be a calendar date YYYY-MM-DD"),
        ("discharged_on", "2026-01-05T10:00:00Z",
         "field 'discharged_on' must be a calendar date YYYY-MM-DD"),
        ("seen_at", "2026-01-05T10:00:00",
         "field 'seen_at' must be an ISO 8601 date-time with a time zone"),
        ("seen_at", "2026-01-05", "field 'seen_at' must be an ISO 8601 date-time with a time zone"),
        ("route", "p9", "field 'route' must be one of p0, p1, p2, p3"),
        ("route", 1, "field 'route' must be one of p0, p1, p2, p3"),
        ("letter", "https://x", "field 'letter' must be a document with a url or reference"),
        ("letter", {"title": "t"}, "field 'letter' must be a document with a url or reference"),
        ("letter", {"url": 5}, "field 'letter' document keys must be non-empty text"),
        ("letter", {"url": "u", "body": "b"},
         "field 'letter' document may only have url, reference, title, content_type"),
    ],
)
def test_each_type_rule(field: str, value: Any, problem: str) -> None:
    output, problems = check_delivery(STEP, {**GOOD, field: value})
    assert problems == [problem]
    assert field not in output


def test_every_problem_is_reported_at_once() -> None:
    _, problems = check_delivery(STEP, {"visits": "three", "nhs_number": "9434765919",
                                        "name": "Jo"})
    assert problems == [
        "missing required field 'summary'",
        "field 'visits' must be a whole number",
        "unknown field 'name'",
        "unknown field 'nhs_number'",
    ]


def test_free_text_values_are_never_echoed() -> None:
    secret = "Mrs Jones 9434765919"
    bad = {"summary": 5, "discharged_on": secret, "seen_at": secret, "letter": {"url": secret,
                                                                                secret: 1}}
    _, problems = check_delivery(STEP, bad)
    assert len(problems) == 4
    assert not any("Jones" in p or "9434765919" in p for p in problems)


def test_a_reference_is_enough_for_a_document() -> None:
    letter = {"reference": "DocumentReference/7"}
    output, problems = check_delivery(STEP, {**GOOD, "letter": letter})
    assert problems == [] and output["letter"] == letter



def test_a_refused_value_is_named_never_echoed() -> None:
    nhs = "9434765919"
    _, problems = check_delivery(STEP, {
        "summary": "x" * 40_000, "route": nhs, "visits": 10**12, "weight_kg": 1e300,
        "letter": {"url": "https://docs.example/" + "a" * 3000}, nhs: "Jane", "Jane Doe": 1,
    })
    text = " ".join(problems)
    assert nhs not in text and "Jane" not in text and "xxxx" not in text
    assert "field 'route' must be one of p0, p1, p2, p3" in problems
    assert "field 'summary' must be at most 32000 characters" in problems
    assert "unknown fields whose names are not field names (not shown)" in problems
    assert len(problems) == 6


@pytest.mark.parametrize("field, value", [
    ("discharged_on", "0001-01-01"), ("discharged_on", "9999-12-31"),
    ("seen_at", "0001-01-01T00:00:00+00:00"), ("seen_at", "9999-12-31T23:59:59+14:00"),
])
def test_dates_outside_a_plausible_window_are_refused(field: str, value: str) -> None:
    _, problems = check_delivery(STEP, {"summary": "ok", field: value})
    assert problems == [f"field {field!r} must be between 1900 and 2200"]


def test_task_outputs_with_odd_names_are_refused_without_echoing_them() -> None:
    from pathways.fhir import OutputError, outputs_from_task

    with pytest.raises(OutputError) as refused:
        outputs_from_task({"output": [{"type": "oops"}, {"type": {"text": "9434765919"}}]})
    assert refused.value.problems == [
        "Task.output[0] has no type.text naming its field",
        "Task.output[1] (a name that is not a field name) needs exactly one value[x]",
    ]
