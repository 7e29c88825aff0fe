"""Every kind of broken definition is refused with the file, the step and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pathways.catalogue import read_definition, scan
from pathways.validation import DefinitionError, DefinitionProblem
from tests.catalogue.conftest import BROKEN

# fixture file -> (step named in the problem or None, fragments the reason must contain)
EXPECTED: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "yaml-syntax.yaml": (None, ("YAML syntax error", "line 7")),
    "unknown-key.yaml": ("admit", ("unknown key 'colour'",)),
    "duplicate-step.yaml": ("admit", ("duplicate step id 'admit'",)),
    "unknown-dependency.yaml": ("discharge", ("unknown step 'assess'",)),
    "cycle.yaml": ("assess", ("cycle", "assess -> treat -> review -> assess")),
    "unreachable.yaml": ("follow-up", ("unreachable from the start steps (admit)",)),
    "role-without-providers.yaml": (None, ("role 'pharmacy' has no providers",)),
    "unknown-role.yaml": ("rehab", ("unknown role 'physio'",)),
    "unparsable-duration.yaml": ("admit", ("sla.accept_within", "'4 hours' is not an ISO 8601 duration")),
    "non-positive-duration.yaml": ("discharge", ("sla.accept_within", "must be positive", "PT0S")),
    "escalation-out-of-order.yaml": ("admit", ("out of order", "rung 3", "rung 2", "default")),
    "escalation-before-ready.yaml": ("admit", ("rung 1", "-PT1H", "at or before the moment the step becomes ready")),
    "condition-unknown-field.yaml": ("rehab", ("'needs_rehab'", "'assess' does not deliver", "frailty_score")),
    "condition-not-earlier.yaml": ("rehab", ("'assess'", "not an earlier step")),
    "condition-unknown-code.yaml": ("care-home", ("'pathway-4'", "not one of its codes")),
    "duplicate-role.yaml": (None, ("duplicate role id 'hospital'",)),
    "duplicate-provider.yaml": (
        None, ("duplicate provider id 'general'", "General Community Trust", "General Hospital")),
    "duplicate-handover-field.yaml": ("admit", ("duplicate handover field 'ward'",)),
    "reassign-takes-accepted-work.yaml": (
        "admit", ("rung 1", "reassigns on the complete clock", "take_accepted_work: true")),
}


def test_every_broken_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in BROKEN.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_fixture_names_file_step_and_reason(name: str) -> None:
    path = BROKEN / name
    step, fragments = EXPECTED[name]
    with pytest.raises(DefinitionError) as caught:
        read_definition(path)
    matching = [
        p for p in caught.value.problems if p.step == step and all(f in p.reason for f in fragments)
    ]
    assert matching, caught.value.problems
    assert all(p.file == str(path) for p in caught.value.problems)
    shown = f"{path}: step {step}: " if step else f"{path}: "
    assert any(line.startswith(shown) for line in str(caught.value).splitlines())


def test_same_id_and_version_in_two_files_is_refused() -> None:
    result = scan([BROKEN / "duplicate-version"])
    first, second = BROKEN / "duplicate-version" / "a.yaml", BROKEN / "duplicate-version" / "b.yaml"
    assert [path for path, _ in result.loaded] == [first]
    assert result.problems == [DefinitionProblem(str(second), None, f"twice@3 is already defined in {first}")]


def test_scan_collects_problems_of_every_file() -> None:
    result = scan([BROKEN])
    assert {p.file for p in result.problems} == {
        *(str(BROKEN / name) for name in EXPECTED),
        str(BROKEN / "duplicate-version" / "b.yaml"),
    }


def test_condition_value_of_the_wrong_type(raw: dict[str, Any], write: Any) -> None:
    raw["steps"][2]["when"] = {"step": "surgery", "field": "weight_bearing", "equals": "yes"}
    with pytest.raises(DefinitionError, match=r'step home-therapy: condition compares boolean field .* "yes"'):
        read_definition(write("p.yaml", raw))


def test_condition_through_an_indirect_ancestor_is_accepted(raw: dict[str, Any], write: Any) -> None:
    raw["steps"][3]["when"] = {"step": "surgery", "field": "weight_bearing", "equals": False}
    assert read_definition(write("p.yaml", raw)).steps[3].when is not None


def test_same_provider_in_two_roles_with_the_same_name_is_accepted(raw: dict[str, Any], write: Any) -> None:
    definition = read_definition(write("p.yaml", raw))
    assert definition.provider("nsh") is not None


def test_provider_listed_twice_in_one_role(raw: dict[str, Any], write: Any) -> None:
    raw["roles"][0]["providers"].append({"id": "nsh", "name": "Northshire Hospital"})
    with pytest.raises(DefinitionError, match="role 'hospital' lists a provider twice"):
        read_definition(write("p.yaml", raw))


def test_duplicate_yaml_key_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("id: a\nversion: 1\nid: b\n")
    with pytest.raises(DefinitionError, match=r"p.yaml: YAML syntax error at line 3.*duplicate key 'id'"):
        read_definition(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(DefinitionError, match="expected a mapping"):
        read_definition(path)


def test_field_problems_of_several_steps_are_all_reported(raw: dict[str, Any], write: Any) -> None:
    raw["steps"][0]["sla"]["complete_within"] = "soon"
    raw["steps"][3]["sla"]["accept_within"] = "-P1D"
    raw["roles"][1]["providers"][0]["colour"] = "red"
    problems = _problems(read_definition, write("p.yaml", raw))
    assert ("surgery", "sla.complete_within: 'soon' is not an ISO 8601 duration such as PT4H, P1D or P3M") in problems
    assert ("review", "sla.accept_within: duration must be positive, not -P1D") in problems
    assert (None, "unknown key 'roles[community].providers[ncs].colour'") in problems
    assert len(problems) == 3


def test_missing_key_names_the_step(raw: dict[str, Any], write: Any) -> None:
    del raw["steps"][1]["role"]
    problems = _problems(read_definition, write("p.yaml", raw))
    assert problems == [("discharge-summary", "missing required key 'role'")]


def test_value_no_union_member_accepts_is_one_problem(raw: dict[str, Any], write: Any) -> None:
    raw["steps"][2]["when"] = {"step": "surgery", "field": "route", "equals": ["pathway-1"]}
    raw["steps"][0]["handover"][1]["codes"] = ["yes"]
    assert _problems(read_definition, write("p.yaml", raw)) == [
        ("surgery", "handover[weight_bearing]: field 'weight_bearing' has codes but is of type boolean"),
        (
            "home-therapy",
            "when.equals: Input should be a valid string or a valid integer or a valid number or a valid boolean",
        ),
    ]


def _problems(reader: Any, path: Path) -> list[tuple[str | None, str]]:
    with pytest.raises(DefinitionError) as caught:
        reader(path)
    return [(p.step, p.reason) for p in caught.value.problems]


def test_a_reassign_rung_on_the_complete_clock_needs_take_accepted_work(
    raw: dict[str, Any], write: Any
) -> None:
    raw["steps"][0]["escalation"] = [
        {"at": "PT1H", "action": "reassign", "clock": "complete", "take_accepted_work": True}]
    rung = read_definition(write("p.yaml", raw)).steps[0].escalation[0]  # type: ignore[index]
    assert rung.take_accepted_work


def test_take_accepted_work_only_on_a_complete_clock_reassign(raw: dict[str, Any], write: Any) -> None:
    raw["steps"][0]["escalation"] = [
        {"at": "PT1H", "action": "reassign", "clock": "accept", "take_accepted_work": True}]
    with pytest.raises(DefinitionError, match="take_accepted_work applies only"):
        read_definition(write("p.yaml", raw))


def test_complete_clock_attempt_is_an_explicit_choice(raw: dict[str, Any], write: Any) -> None:
    raw["steps"][0]["sla"]["complete_clock"] = "attempt"
    assert read_definition(write("p.yaml", raw)).steps[0].sla.complete_clock == "attempt"
    raw["steps"][0]["sla"]["complete_clock"] = "provider"
    with pytest.raises(DefinitionError, match="complete_clock"):
        read_definition(write("p.yaml", raw))
