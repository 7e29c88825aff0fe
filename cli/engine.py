"""Engine commands: `setup`, `worker`, `api`, `start` and `up` (the embedded default)."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from cli.app import app, load_settings
from cli.exit import finish
from pathways.logs import configure_logging
from pathways.settings import Settings


def _ready(settings: Settings) -> Settings:
    from worker.telemetry import core_logs_follow_settings

    configure_logging(settings.log_format, settings.log_level)
    core_logs_follow_settings(settings)  # the SDK core's lines in the same format
    return settings


@app.command()
def setup(ctx: typer.Context) -> None:
    """Register search attributes and create or migrate the database (safe on every deploy)."""
    from cli.setup import run_setup

    finish(run_setup(_ready(load_settings(ctx))))


@app.command()
def worker(
    ctx: typer.Context,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus port; 0 disables")] = None,
    health_port: Annotated[int | None, typer.Option(help="/healthz port; 0 disables")] = None,
) -> None:
    """Run a worker: the pathway workflow and its activities, until SIGTERM or Ctrl-C."""
    from worker.main import run_worker

    settings = load_settings(ctx, metrics_port=metrics_port, health_port=health_port)
    finish(run_worker(_ready(settings)))


@app.command()
def api(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="PATHWAYS_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="PATHWAYS_API_PORT")] = None,
) -> None:
    """Serve the HTTP API: FHIR R4 at /fhir, coordinator JSON at /api."""
    from api.server import serve

    finish(serve(_ready(load_settings(ctx, api_host=host, api_port=port))))


@app.command()
def start(
    ctx: typer.Context,
    definition: Annotated[str, typer.Argument(help="definition id, or id@version")],
    nhs_number: Annotated[str, typer.Option("--nhs-number", help="10 digits, checked")],
    name: Annotated[str | None, typer.Option(help="patient name (optional)")] = None,
) -> None:
    """Start a pathway for a patient; prints the pathway id."""
    finish(start_from_cli(_ready(load_settings(ctx)), definition, nhs_number, name))


@app.command()
def up(
    ctx: typer.Context,
    demo: Annotated[bool, typer.Option(help="start demo pathways on first run")] = True,
) -> None:
    """Run everything locally: Temporal dev server (SQLite file, Web UI), worker, API, demo pathways."""
    from cli.up import run_embedded

    finish(run_embedded(_ready(load_settings(ctx)), demo=demo))


async def start_from_cli(
    settings: Settings, definition_ref: str, nhs_number: str, name: str | None
) -> int:
    """Validate before connecting, so a bad request changes nothing and needs no server."""
    from pathways.catalogue import load_catalogue
    from pathways.errors import CommandFailed
    from pathways.state import Patient
    from worker.connection import connect_or_fail
    from workflows.client import start_pathway

    catalogue = load_catalogue(settings.catalogue_dir)
    try:
        definition = catalogue.resolve(definition_ref)
    except LookupError as error:
        raise CommandFailed(str(error), code=2) from None
    try:
        patient = Patient(nhs_number=nhs_number, name=name)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise CommandFailed(f"invalid patient: {problems}", code=2) from None
    client = await connect_or_fail(settings)
    pathway_id = await start_pathway(client, settings, definition, patient)
    print(pathway_id)
    return 0
