"""Loading a catalogue folder: strict, versioned lookups, nothing skipped silently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pathways.catalogue import Catalogue, UnknownDefinition, load_catalogue
from pathways.validation import DefinitionError
from tests.catalogue.conftest import BROKEN


@pytest.fixture
def folder(raw: dict[str, Any], write: Any, tmp_path: Path) -> Path:
    write("v1.yaml", raw)
    write("nested/v2.yml", raw | {"version": 2, "title": "Hip fracture to home, revised"})
    write("other.yaml", raw | {"id": "other"})
    (tmp_path / "notes.txt").write_text("not a definition")
    return tmp_path


def test_get_returns_latest_by_default_and_a_pinned_version(folder: Path) -> None:
    catalogue = load_catalogue(folder)
    assert catalogue.get("hip-fracture-discharge").version == 2
    assert catalogue.get("hip-fracture-discharge", 1).title == "Hip fracture to home"


def test_resolve_reads_id_and_id_at_version(folder: Path) -> None:
    catalogue = load_catalogue(folder)
    assert catalogue.resolve("hip-fracture-discharge").key == "hip-fracture-discharge@2"
    assert catalogue.resolve("hip-fracture-discharge@1").key == "hip-fracture-discharge@1"


def test_iteration_gives_latest_versions_and_listing_gives_all(folder: Path) -> None:
    catalogue = load_catalogue(folder)
    assert [d.key for d in catalogue] == ["hip-fracture-discharge@2", "other@1"]
    assert len(catalogue) == 2
    assert [d.key for d in catalogue.all_versions()] == [
        "hip-fracture-discharge@1",
        "hip-fracture-discharge@2",
        "other@1",
    ]


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("missing", "no pathway 'missing' in the catalogue (known: hip-fracture-discharge, other)"),
        ("other@7", "pathway 'other' has no version 7 (versions: 1)"),
        ("other@x", "'other@x' is not a pathway reference: expected ID or ID@VERSION"),
    ],
)
def test_unknown_references_get_a_clear_error(folder: Path, reference: str, message: str) -> None:
    with pytest.raises(UnknownDefinition) as caught:
        load_catalogue(folder).resolve(reference)
    assert str(caught.value) == message
    assert isinstance(caught.value, KeyError)


def test_one_bad_file_refuses_the_whole_catalogue_with_every_problem(folder: Path) -> None:
    (folder / "broken.yaml").write_text((BROKEN / "cycle.yaml").read_text())
    (folder / "syntax.yaml").write_text((BROKEN / "yaml-syntax.yaml").read_text())
    with pytest.raises(DefinitionError) as caught:
        load_catalogue(folder)
    assert {p.file for p in caught.value.problems} == {str(folder / "broken.yaml"), str(folder / "syntax.yaml")}


def test_missing_or_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="not a directory"):
        load_catalogue(tmp_path / "absent")
    with pytest.raises(DefinitionError, match="no \\*.yaml or \\*.yml definitions found"):
        load_catalogue(tmp_path)


def test_catalogue_refuses_two_definitions_with_one_key(folder: Path) -> None:
    definition = load_catalogue(folder).get("other")
    with pytest.raises(DefinitionError, match="two definitions of other@1"):
        Catalogue([definition, definition])
