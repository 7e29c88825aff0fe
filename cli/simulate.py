"""`pathways simulate SCENARIO.yaml`: a year of a contract on the real engine, baseline and
changes side by side with 95% confidence intervals (no Temporal server needed)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import app, load_settings

if TYPE_CHECKING:
    from pathways.catalogue import Catalogue
    from pathways.simulation.scenario import Scenario


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"


@app.command()
def simulate(
    ctx: typer.Context,
    scenario: Annotated[Path, typer.Argument(help="scenario YAML (see examples/scenarios)")],
    replications: Annotated[int, typer.Option(min=1, max=1000, help="independent runs")] = 30,
    seed: Annotated[int, typer.Option(help="same seed, same result")] = 0,
    output: Annotated[Format, typer.Option("--format", help="text or json")] = Format.TEXT,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="processes (default: the CPU count)")
    ] = None,
    fit: Annotated[bool, typer.Option(
        "--fit", help="fit arrivals and provider behaviour from the event log first")] = False,
    since: Annotated[datetime | None, typer.Option(
        help="with --fit: events at or after this date (UTC)")] = None,
    until: Annotated[datetime | None, typer.Option(
        help="with --fit: events before this date (UTC)")] = None,
    fitted: Annotated[Path | None, typer.Option(
        help="with --fit: also write the fitted scenario to this YAML file")] = None,
    validate: Annotated[bool, typer.Option(
        "--validate", help="with --fit: fit on the first half of the period, simulate the "
        "second, report the Wasserstein distance to what was observed")] = False,
) -> None:
    """Simulate a scenario's baseline and changes; report SLA, breaches, waits, WIP with CIs."""
    from pathways.catalogue import load_catalogue
    from pathways.model import DefinitionError
    from pathways.simulation.runner import compare, default_workers
    from pathways.simulation.scenario import ScenarioError, load_scenario, variants

    settings = load_settings(ctx)
    try:
        question = load_scenario(scenario)
        catalogue = load_catalogue(settings.catalogue_dir)
        if fit:
            question = _fit(question, catalogue, settings.event_store, since, until, fitted,
                            validate)
        columns = variants(question, catalogue)
    except (ScenarioError, DefinitionError) as error:
        problems = getattr(error, "problems", [str(error)])
        for problem in problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from None
    answer = compare(question.name, columns, replications, seed, workers or default_workers())
    if output is Format.JSON:
        sys.stdout.write(json.dumps(answer.as_dict(), indent=2, allow_nan=False) + "\n")
    else:
        from pathways.simulation.report import render

        sys.stdout.write(render(answer))


def _fit(
    question: Scenario, catalogue: Catalogue, store_url: str, since: datetime | None,
    until: datetime | None, fitted: Path | None, check: bool = False,
) -> Scenario:
    """Replace arrivals and provider behaviour with what the event log shows."""
    from activities.store import EventStore
    from pathways.events import EventKind
    from pathways.simulation.fit import fit_scenario, read_events, validate
    from pathways.simulation.scenario import ScenarioError, dump_scenario

    definition = catalogue.resolve(question.definition)
    store = EventStore(store_url)
    try:
        events = read_events(store.event_log, _utc(since), _utc(until), definition.id)
    finally:
        store.close()
    if not events:
        raise ScenarioError([f"no events of {definition.id} in the event log for that period"])
    if check:
        starts = sorted(e.at for e in events if e.kind is EventKind.PATHWAY_STARTED)
        split = starts[0] + (starts[-1] - starts[0]) / 2
        for line in validate(question, definition, events, split).lines():
            typer.echo(line, err=True)
    result = fit_scenario(question, definition, events)
    for line in result.report:
        typer.echo(f"fit: {line}", err=True)
    if fitted is not None:
        fitted.write_text(dump_scenario(result.scenario), encoding="utf-8")
    return result.scenario


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
