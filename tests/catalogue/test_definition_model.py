"""The model refuses an inconsistent definition even when built in code, and round-trips."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from pathways.model import Condition, PathwayDefinition
from pathways.validation import (
    DefinitionError,
    DefinitionProblem,
    problems_from_validation,
)


def test_valid_definition_parses(raw: dict[str, Any]) -> None:
    definition = PathwayDefinition.model_validate(raw)
    assert definition.key == "hip-fracture-discharge@1"
    assert definition.step("home-therapy").recurrence is not None
    assert definition.step("surgery").sla.complete_within == timedelta(days=2)


def test_cross_reference_checks_run_when_constructed_in_code(raw: dict[str, Any]) -> None:
    raw["steps"][1]["after"] = ["nowhere"]
    with pytest.raises(ValidationError) as caught:
        PathwayDefinition.model_validate(raw)
    problems = problems_from_validation(caught.value, raw, "code")
    assert DefinitionProblem("code", "discharge-summary", "depends on unknown step 'nowhere'") in problems
    assert "step discharge-summary: depends on unknown step 'nowhere'" in str(caught.value)


def test_json_round_trip_keeps_the_definition(raw: dict[str, Any]) -> None:
    definition = PathwayDefinition.model_validate(raw)
    again = PathwayDefinition.model_validate_json(definition.model_dump_json(by_alias=True))
    assert again == definition


def test_definition_error_lists_one_problem_per_line() -> None:
    error = DefinitionError(
        [DefinitionProblem("a.yaml", "s1", "bad"), DefinitionProblem("b.yaml", None, "worse")]
    )
    assert str(error).splitlines() == ["a.yaml: step s1: bad", "b.yaml: worse"]


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"step": "a", "field": "f", "equals": True}, "a.f = true"),
        ({"step": "a", "field": "f", "not_equals": "x"}, 'a.f != "x"'),
        ({"step": "a", "field": "f", "in": ["p", "q"]}, 'a.f in ["p", "q"]'),
    ],
)
def test_condition_describes_itself(data: dict[str, Any], text: str) -> None:
    assert Condition.model_validate(data).describe() == text
