"""The `pathways` command: one Typer app; each module of this package adds its subcommands.

Settings come from `PATHWAYS_*` variables; the global options here override them for one run
(`pathways --temporal-address host:7233 worker`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from pathways.settings import Settings

app = typer.Typer(
    name="pathways",
    help="Pathway Orchestrator: run patient care pathways like a lean supply chain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def configure(
    ctx: typer.Context,
    temporal_address: Annotated[
        str | None, typer.Option(help="Temporal host:port (PATHWAYS_TEMPORAL_ADDRESS)")
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="PATHWAYS_NAMESPACE")] = None,
    task_queue: Annotated[str | None, typer.Option(help="PATHWAYS_TASK_QUEUE")] = None,
    event_store_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (PATHWAYS_EVENT_STORE_URL)")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="PATHWAYS_DATA_DIR")] = None,
    catalogue_dir: Annotated[Path | None, typer.Option(help="PATHWAYS_CATALOGUE_DIR")] = None,
) -> None:
    """Run patient care pathways like a lean supply chain."""
    given = dict(
        temporal_address=temporal_address,
        namespace=namespace,
        task_queue=task_queue,
        event_store_url=event_store_url,
        data_dir=data_dir,
        catalogue_dir=catalogue_dir,
    )
    ctx.obj = {name: value for name, value in given.items() if value is not None}


def load_settings(ctx: typer.Context | None = None, **overrides: Any) -> Settings:
    """Environment, then the global options, then the command's own options."""
    values = dict(ctx.obj or {}) if ctx is not None else {}
    values.update({name: value for name, value in overrides.items() if value is not None})
    try:
        return Settings(**values)
    except ValidationError as error:
        typer.echo(f"error: invalid settings: {settings_problems(error)}", err=True)
        raise typer.Exit(2) from None


def settings_problems(error: ValidationError) -> str:
    """Which settings are wrong and why, never the refused values (they may be secrets)."""
    return "; ".join(
        f"PATHWAYS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()
    )
