"""Engine commands: `setup`, `worker`, `api`, `start` and `up` (the embedded default)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from pathways.cli.app import app
from pathways.cli.exit import finish
from pathways.logs import configure_logging
from pathways.settings import Settings

TemporalAddress = Annotated[
    str | None, typer.Option("--temporal-address", help="Temporal host:port (PATHWAYS_TEMPORAL_ADDRESS)")
]
Namespace = Annotated[str | None, typer.Option("--namespace", help="PATHWAYS_NAMESPACE")]
TaskQueue = Annotated[str | None, typer.Option("--task-queue", help="PATHWAYS_TASK_QUEUE")]
EventStoreUrl = Annotated[
    str | None, typer.Option("--event-store-url", help="SQLAlchemy URL (PATHWAYS_EVENT_STORE_URL)")
]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="PATHWAYS_DATA_DIR")]


def load_settings(**overrides: object) -> Settings:
    """Environment first, then the flags given on the command line."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        typer.echo(f"error: invalid settings: {error}", err=True)
        raise typer.Exit(2) from None


@app.command()
def setup(
    temporal_address: TemporalAddress = None,
    namespace: Namespace = None,
    event_store_url: EventStoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Register search attributes and create or migrate the database (safe on every deploy)."""
    from worker.setup import run_setup

    settings = load_settings(
        temporal_address=temporal_address,
        namespace=namespace,
        event_store_url=event_store_url,
        data_dir=data_dir,
    )
    configure_logging(settings.log_format, settings.log_level)
    finish(run_setup(settings))


@app.command()
def worker(
    temporal_address: TemporalAddress = None,
    namespace: Namespace = None,
    task_queue: TaskQueue = None,
    event_store_url: EventStoreUrl = None,
    data_dir: DataDir = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus port; 0 disables")] = None,
    health_port: Annotated[int | None, typer.Option(help="/healthz port; 0 disables")] = None,
) -> None:
    """Run a worker: the pathway workflow and its activities, until SIGTERM or Ctrl-C."""
    from worker.main import run_worker

    settings = load_settings(
        temporal_address=temporal_address,
        namespace=namespace,
        task_queue=task_queue,
        event_store_url=event_store_url,
        data_dir=data_dir,
        metrics_port=metrics_port,
        health_port=health_port,
    )
    configure_logging(settings.log_format, settings.log_level)
    finish(run_worker(settings))


@app.command()
def api(
    temporal_address: TemporalAddress = None,
    namespace: Namespace = None,
    task_queue: TaskQueue = None,
    event_store_url: EventStoreUrl = None,
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="PATHWAYS_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="PATHWAYS_API_PORT")] = None,
) -> None:
    """Serve the HTTP API: FHIR R4 at /fhir, coordinator JSON at /api."""
    from api.server import serve

    settings = load_settings(
        temporal_address=temporal_address,
        namespace=namespace,
        task_queue=task_queue,
        event_store_url=event_store_url,
        data_dir=data_dir,
        api_host=host,
        api_port=port,
    )
    configure_logging(settings.log_format, settings.log_level)
    finish(serve(settings))


@app.command()
def start(
    definition: Annotated[str, typer.Argument(help="definition id, or id@version")],
    nhs_number: Annotated[str, typer.Option("--nhs-number", help="10 digits, checked")],
    name: Annotated[str | None, typer.Option(help="patient name (optional)")] = None,
    temporal_address: TemporalAddress = None,
    namespace: Namespace = None,
    task_queue: TaskQueue = None,
) -> None:
    """Start a pathway for a patient; prints the pathway id."""
    settings = load_settings(
        temporal_address=temporal_address, namespace=namespace, task_queue=task_queue
    )
    configure_logging(settings.log_format, settings.log_level)
    finish(start_from_cli(settings, definition, nhs_number, name))


@app.command()
def up(
    data_dir: DataDir = None,
    demo: Annotated[bool, typer.Option(help="start demo pathways on first run")] = True,
) -> None:
    """Run everything locally: Temporal dev server (SQLite file, Web UI), worker, API, demo pathways."""
    from worker.embedded import run_embedded

    settings = load_settings(data_dir=data_dir)
    configure_logging(settings.log_format, settings.log_level)
    finish(run_embedded(settings, demo=demo))



async def start_from_cli(
    settings: Settings, definition_ref: str, nhs_number: str, name: str | None
) -> int:
    """Validate before connecting, so a bad request changes nothing and needs no server."""
    from pathways.catalogue import load_catalogue
    from pathways.cli.exit import CommandFailed
    from pathways.state import Patient
    from workflows.client import connect, start_pathway

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
    client = await connect(settings)
    pathway_id = await start_pathway(client, settings, definition, patient)
    print(pathway_id)
    return 0
