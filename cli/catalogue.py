"""Catalogue commands: `validate`, `show`, `catalog` (alias `catalogue`) and `schema`.

Exit codes: 0 success, 1 a definition problem or unknown pathway, 2 a usage error (Typer's own).
Problems go to stderr, one per line as FILE: step STEP: REASON.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, load_settings
from pathways.catalogue import Catalogue, UnknownDefinition, load_catalogue, scan
from pathways.graph import (
    critical_path,
    max_parallelism,
    to_dot,
    to_mermaid,
    topological_order,
)
from pathways.model import HandoverField, PathwayDefinition, Step, format_duration
from pathways.validation import DefinitionError, DefinitionProblem

CatalogueDir = Annotated[
    Path | None,
    typer.Option("--catalogue", help="Definitions folder (default PATHWAYS_CATALOGUE_DIR or shipped)."),
]


class Format(StrEnum):
    TEXT = "text"
    MERMAID = "mermaid"
    DOT = "dot"
    JSON = "json"


@app.command()
def validate(
    paths: Annotated[
        list[Path], typer.Argument(exists=True, help="Definition files or folders (searched recursively).")
    ],
) -> None:
    """Check definitions; print every problem, not just the first (exit 1 if any)."""
    result = scan(paths)
    for path, definition in result.loaded:
        typer.echo(f"ok {definition.key} ({len(definition.steps)} steps) {path}")
    _report(result.problems)
    if result.problems:
        raise typer.Exit(1)


@app.command()
def show(
    ctx: typer.Context,
    pathway: Annotated[str, typer.Argument(help="Pathway id, or id@version.")],
    version: Annotated[int | None, typer.Option("--version", min=1, help="Version (default latest).")] = None,
    output_format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.TEXT,
    catalogue: CatalogueDir = None,
) -> None:
    """Show one pathway: its steps in order and its critical path, or a diagram."""
    definition = _find(_load(ctx, catalogue), pathway, version)
    render = {
        Format.TEXT: describe,
        Format.MERMAID: to_mermaid,
        Format.DOT: to_dot,
        Format.JSON: _as_json,
    }[output_format]
    typer.echo(render(definition), nl=False)


def _as_json(definition: PathwayDefinition) -> str:
    return definition.model_dump_json(by_alias=True, indent=2) + "\n"


def catalog(ctx: typer.Context, catalogue: CatalogueDir = None) -> None:
    """List every pathway version in the catalogue with its planned lead time."""
    rows = [
        (d.id, str(d.version), d.title, str(len(d.steps)), format_duration(critical_path(d).lead_time))
        for d in _load(ctx, catalogue).all_versions()
    ]
    header = ("ID", "VERSION", "TITLE", "STEPS", "PLANNED LEAD TIME")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())


app.command("catalog")(catalog)
app.command("catalogue", help="Alias of `catalog`.")(catalog)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--output", help="Write to this file.")] = None,
) -> None:
    """Print the JSON Schema of a pathway definition, for editors validating YAML."""
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    document |= PathwayDefinition.model_json_schema(by_alias=True)
    text = json.dumps(document, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


def describe(definition: PathwayDefinition) -> str:
    """Plain-text account of a pathway: who does what, in which order, within which SLA."""
    lead = definition.lead_provider
    lines = [f"{definition.title} ({definition.key})", f"Lead provider: {lead.name} ({lead.id})", "", "Roles:"]
    for role in definition.roles:
        providers = ", ".join(f"{p.name} ({p.id})" for p in role.providers)
        lines.append(f"  {role.id}: {role.title}; providers: {providers}")
    lines += ["", "Steps:"]
    for step_id in topological_order(definition):
        lines += _describe_step(definition.step(step_id))
    path = critical_path(definition)
    lines += [
        "",
        f"Critical path: {' -> '.join(path.steps)}",
        f"Planned lead time: {format_duration(path.lead_time)}",
        f"Max parallelism: {max_parallelism(definition)}",
    ]
    return "\n".join(lines) + "\n"


def _describe_step(step: Step) -> list[str]:
    accept, complete = format_duration(step.sla.accept_within), format_duration(step.sla.complete_within)
    lines = [
        f"  {step.id}: {step.title}",
        f"    role: {step.role}",
        f"    sla: accept within {accept}, complete within {complete}",
        f"    waits for: {', '.join(step.after) or 'nothing (start step)'}",
    ]
    if step.when is not None:
        lines.append(f"    when: {step.when.describe()}")
    if step.recurrence is not None:
        every = format_duration(step.recurrence.every)
        lines.append(f"    recurs: every {every}, {step.recurrence.count} times")
    if step.handover:
        lines.append(f"    handover: {', '.join(_describe_field(f) for f in step.handover)}")
    return lines


def _describe_field(field: HandoverField) -> str:
    detail = [field.type.value]
    if field.codes:
        detail.append("|".join(field.codes))
    if not field.required:
        detail.append("optional")
    return f"{field.name} ({', '.join(detail)})"


def _load(ctx: typer.Context, directory: Path | None) -> Catalogue:
    """`--catalogue`, else the global `--catalogue-dir`, else PATHWAYS_CATALOGUE_DIR, else shipped."""
    try:
        return load_catalogue(directory or load_settings(ctx).catalogue_dir)
    except DefinitionError as error:
        _report(error.problems)
        raise typer.Exit(1) from None


def _find(catalogue: Catalogue, pathway: str, version: int | None) -> PathwayDefinition:
    try:
        return catalogue.resolve(pathway) if version is None else catalogue.get(pathway, version)
    except UnknownDefinition as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


def _report(problems: list[DefinitionProblem]) -> None:
    for problem in problems:
        typer.echo(str(problem), err=True)
