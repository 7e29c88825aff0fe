"""The catalogue commands as a user runs them: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import app
from pathways.model import PathwayDefinition
from tests.catalogue.conftest import BROKEN

runner = CliRunner()


@pytest.fixture
def catalogue(raw: dict[str, Any], write: Any, tmp_path: Path) -> Path:
    write("hip.yaml", raw)
    write("hip-v2.yaml", raw | {"version": 2})
    return tmp_path


def test_validate_prints_ok_per_definition(catalogue: Path) -> None:
    result = runner.invoke(app, ["validate", str(catalogue)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"ok hip-fracture-discharge@2 (4 steps) {catalogue / 'hip-v2.yaml'}",
        f"ok hip-fracture-discharge@1 (4 steps) {catalogue / 'hip.yaml'}",
    ]
    assert result.stderr == ""


def test_validate_reads_a_file_named_twice_once(catalogue: Path) -> None:
    result = runner.invoke(app, ["validate", str(catalogue), str(catalogue / "hip.yaml")])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2


def test_validate_reports_every_problem_of_every_file_and_fails(catalogue: Path) -> None:
    result = runner.invoke(
        app, ["validate", str(catalogue), str(BROKEN / "cycle.yaml"), str(BROKEN / "unknown-role.yaml")]
    )
    assert result.exit_code == 1
    assert "ok hip-fracture-discharge@1" in result.stdout
    assert result.stderr.splitlines() == [
        f"{BROKEN / 'cycle.yaml'}: step assess: dependency cycle: assess -> treat -> review -> assess",
        f"{BROKEN / 'unknown-role.yaml'}: step rehab: unknown role 'physio'",
    ]


def test_validate_usage_errors_exit_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["validate"]).exit_code == 2
    assert runner.invoke(app, ["validate", str(tmp_path / "absent.yaml")]).exit_code == 2


def test_validate_an_empty_folder_fails(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "no *.yaml or *.yml definitions found" in result.stderr


def test_show_text_lists_steps_in_order_and_the_analysis(catalogue: Path) -> None:
    result = runner.invoke(app, ["show", "hip-fracture-discharge", "--version", "1", "--catalogue", str(catalogue)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("Hip fracture to home (hip-fracture-discharge@1)\n")
    assert "Lead provider: Northshire Integrated Care (northshire-ics)" in text
    assert (
        "community: Community services; providers: Northshire Community Services (ncs), Northshire Hospital (nsh)"
        in text
    )
    order = [text.index(f"  {s}: ") for s in ("surgery", "discharge-summary", "home-therapy", "review")]
    assert order == sorted(order)
    assert "    sla: accept within PT4H, complete within P2D" in text
    assert "    waits for: discharge-summary, home-therapy" in text
    assert '    when: surgery.route in ["pathway-1", "pathway-2"]' in text
    assert "    recurs: every P7D, 3 times" in text
    assert "    handover: route (coded, pathway-0|pathway-1|pathway-2), weight_bearing (boolean)" in text
    assert "Critical path: surgery -> home-therapy -> review" in text
    assert "Planned lead time: P21D" in text
    assert "Max parallelism: 2" in text


@pytest.mark.parametrize(("fmt", "start"), [("mermaid", "flowchart TD"), ("dot", "digraph ")])
def test_show_diagrams(catalogue: Path, fmt: str, start: str) -> None:
    result = runner.invoke(app, ["show", "hip-fracture-discharge@1", "--format", fmt, "--catalogue", str(catalogue)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(start)


def test_show_json_is_a_loadable_definition_of_the_latest_version(catalogue: Path) -> None:
    result = runner.invoke(app, ["show", "hip-fracture-discharge", "--format", "json", "--catalogue", str(catalogue)])
    assert result.exit_code == 0, result.output
    assert PathwayDefinition.model_validate(json.loads(result.stdout)).key == "hip-fracture-discharge@2"


def test_show_unknown_pathway_fails_clearly(catalogue: Path) -> None:
    result = runner.invoke(app, ["show", "hip-fracture-discharge", "--version", "9", "--catalogue", str(catalogue)])
    assert result.exit_code == 1
    assert "pathway 'hip-fracture-discharge' has no version 9 (versions: 1, 2)" in result.stderr


def test_show_on_a_broken_catalogue_prints_its_problems(catalogue: Path) -> None:
    (catalogue / "cycle.yaml").write_text((BROKEN / "cycle.yaml").read_text())
    result = runner.invoke(app, ["show", "hip-fracture-discharge", "--catalogue", str(catalogue)])
    assert result.exit_code == 1
    assert "cycle.yaml: step assess: dependency cycle" in result.stderr


@pytest.mark.parametrize("command", ["catalog", "catalogue"])
def test_catalog_table(catalogue: Path, command: str) -> None:
    result = runner.invoke(app, [command, "--catalogue", str(catalogue)])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["ID", "VERSION", "TITLE", "STEPS", "PLANNED", "LEAD", "TIME"]
    assert rows[1] == ["hip-fracture-discharge", "1", "Hip", "fracture", "to", "home", "4", "P21D"]
    assert rows[2][:2] == ["hip-fracture-discharge", "2"]
    assert len(rows) == 3


def test_catalogue_dir_comes_from_the_environment(catalogue: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHWAYS_CATALOGUE_DIR", str(catalogue))
    result = runner.invoke(app, ["catalog"])
    assert result.exit_code == 0, result.output
    assert "hip-fracture-discharge" in result.stdout


def test_schema_validates_the_model_shape(tmp_path: Path) -> None:
    output = tmp_path / "schema.json"
    result = runner.invoke(app, ["schema", "--output", str(output)])
    assert result.exit_code == 0, result.output
    schema = json.loads(output.read_text())
    assert schema["title"] == "PathwayDefinition"
    assert set(schema["required"]) >= {"id", "version", "title", "lead_provider", "roles", "steps"}
    assert schema["additionalProperties"] is False
    assert "in" in schema["$defs"]["Condition"]["properties"]
    printed = runner.invoke(app, ["schema"])
    assert json.loads(printed.stdout) == schema
