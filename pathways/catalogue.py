"""The catalogue: versioned pathway definitions read from YAML files, one pathway per file.

Reading never skips a file silently: `scan` returns every definition it could read together with
every problem it found, across all files; `load_catalogue` (what the API and worker use) refuses
the whole catalogue with all problems when there is any.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pathways.model import PathwayDefinition
from pathways.validation import (
    DefinitionError,
    DefinitionProblem,
    authoring_problems,
    problems_from_validation,
)

SUFFIXES = (".yaml", ".yml")
_REFERENCE = re.compile(r"^(?P<id>[^@\s]+)(@(?P<version>[1-9]\d*))?$")


class UnknownDefinition(KeyError):
    """No definition with that id (or version) in the catalogue."""

    def __str__(self) -> str:
        return str(self.args[0])


class Catalogue:
    """Definitions by id and version; a running pathway pins `id@version`, new ones get the latest."""

    def __init__(self, definitions: Iterable[PathwayDefinition] = ()) -> None:
        self._versions: dict[str, dict[int, PathwayDefinition]] = {}
        problems = [
            DefinitionProblem(None, None, f"two definitions of {d.key}")
            for d in definitions
            if not self._add(d)
        ]
        if problems:
            raise DefinitionError(problems)

    def _add(self, definition: PathwayDefinition) -> bool:
        versions = self._versions.setdefault(definition.id, {})
        if definition.version in versions:
            return False
        versions[definition.version] = definition
        return True

    def get(self, definition_id: str, version: int | None = None) -> PathwayDefinition:
        """The given version of a pathway, or its latest version."""
        versions = self._versions.get(definition_id)
        if not versions:
            known = ", ".join(sorted(self._versions)) or "none"
            raise UnknownDefinition(f"no pathway {definition_id!r} in the catalogue (known: {known})")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            listed = ", ".join(str(v) for v in sorted(versions))
            raise UnknownDefinition(
                f"pathway {definition_id!r} has no version {version} (versions: {listed})"
            )
        return versions[version]

    def resolve(self, reference: str) -> PathwayDefinition:
        """`id@version` for a pinned version, `id` for the latest."""
        match = _REFERENCE.match(reference.strip())
        if match is None:
            raise UnknownDefinition(
                f"{reference!r} is not a pathway reference: expected ID or ID@VERSION"
            )
        version = match["version"]
        return self.get(match["id"], int(version) if version else None)

    def __iter__(self) -> Iterator[PathwayDefinition]:
        """Latest version of each pathway, by id."""
        return (self.get(definition_id) for definition_id in sorted(self._versions))

    def __len__(self) -> int:
        return len(self._versions)

    def all_versions(self) -> list[PathwayDefinition]:
        """Every version of every pathway, by id then version."""
        return [
            versions[number]
            for _, versions in sorted(self._versions.items())
            for number in sorted(versions)
        ]


@dataclass
class Scan:
    """What reading some files gave: the good definitions (with their file) and every problem."""

    loaded: list[tuple[Path, PathwayDefinition]] = field(default_factory=list)
    problems: list[DefinitionProblem] = field(default_factory=list)

    @property
    def catalogue(self) -> Catalogue:
        return Catalogue(definition for _, definition in self.loaded)


def definition_files(paths: Sequence[Path]) -> list[Path]:
    """The YAML files named, and those under the folders named (recursively), each once, in order."""
    found: dict[Path, Path] = {}
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        else:
            files = [path]
        for file in files:
            found.setdefault(file.resolve(), file)
    return list(found.values())


def scan(paths: Sequence[Path]) -> Scan:
    """Read every definition under `paths`, collecting all problems rather than stopping."""
    result = Scan()
    files = definition_files(paths)
    if not files:
        shown = ", ".join(str(p) for p in paths)
        result.problems.append(DefinitionProblem(shown, None, "no *.yaml or *.yml definitions found"))
    keys: dict[str, Path] = {}
    for path in files:
        try:
            definition = read_definition(path)
        except DefinitionError as error:
            result.problems.extend(error.problems)
            continue
        if (first := keys.setdefault(definition.key, path)) != path:
            result.problems.append(
                DefinitionProblem(str(path), None, f"{definition.key} is already defined in {first}")
            )
        else:
            result.loaded.append((path, definition))
    return result


def load_catalogue(directory: Path) -> Catalogue:
    """Strict load: the whole catalogue, or DefinitionError listing every problem in it."""
    if not directory.is_dir():
        raise DefinitionError([DefinitionProblem(str(directory), None, "not a directory")])
    result = scan([directory])
    if result.problems:
        raise DefinitionError(result.problems)
    return result.catalogue


def read_definition(path: Path) -> PathwayDefinition:
    """One definition file, or DefinitionError naming the file, the step and every reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DefinitionError([DefinitionProblem(str(path), None, f"cannot read: {error}")]) from None
    return parse_definition(text, str(path))


def parse_definition(text: str, file: str) -> PathwayDefinition:
    """Parse YAML text as a definition; `file` is only used to name where problems are."""
    data = _parse_yaml(text, file)
    try:
        definition = PathwayDefinition.model_validate(data)
    except ValidationError as error:
        raise DefinitionError(problems_from_validation(error, data, file)) from None
    if problems := authoring_problems(definition):
        raise DefinitionError([problem.in_file(file) for problem in problems])
    return definition


def _parse_yaml(text: str, file: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = error.problem or error.context or "invalid YAML"
        raise DefinitionError(
            [DefinitionProblem(file, None, f"YAML syntax error{where}: {problem}")]
        ) from None
    except yaml.YAMLError as error:
        raise DefinitionError([DefinitionProblem(file, None, f"YAML syntax error: {error}")]) from None
    if not isinstance(data, dict):
        raise DefinitionError(
            [DefinitionProblem(file, None, "expected a mapping with id, version, title, roles and steps")]
        )
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key {key!r}", key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
