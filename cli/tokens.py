"""`pathways token issue|revoke|list`: bearer tokens for provider systems and coordinators.

A token is printed once, as the last line of `issue`, so scripts can take it with `tail -n1`;
only its hash is stored. Exit codes: 0 success, 1 unknown provider or token, 2 usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.tokens import Principal, PrincipalKind, TokenStore
from cli.app import app, load_settings
from pathways.catalogue import load_catalogue
from pathways.settings import Settings

token_app = typer.Typer(help="Issue, revoke and list API bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")

EventStoreUrl = Annotated[
    str | None, typer.Option("--event-store-url", help="SQLAlchemy URL (PATHWAYS_EVENT_STORE_URL)")
]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="PATHWAYS_DATA_DIR")]


def _settings(ctx: typer.Context, event_store_url: str | None, data_dir: Path | None) -> Settings:
    """The global options (`pathways --data-dir D token ...`), then the command's own."""
    return load_settings(ctx, event_store_url=event_store_url, data_dir=data_dir)


def _store(settings: Settings) -> TokenStore:
    if settings.event_store_url is None:  # the default SQLite file lives in the data dir
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = TokenStore(settings.event_store)
    store.migrate()
    return store


def _known_provider(settings: Settings, provider_id: str) -> bool:
    """Refuse typos: a provider token is only useful for a provider some pathway names."""
    catalogue = load_catalogue(settings.catalogue_dir)
    return any(d.provider(provider_id) or d.lead_provider.id == provider_id for d in catalogue)


@token_app.command("issue")
def issue(
    ctx: typer.Context,
    provider: Annotated[
        str | None, typer.Option("--provider", help="provider organisation id")
    ] = None,
    coordinator: Annotated[
        str | None, typer.Option("--coordinator", help="coordinator name")
    ] = None,
    event_store_url: EventStoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Issue a token; the token itself is the last line printed (shown only this once)."""
    if (provider is None) == (coordinator is None):
        typer.echo("error: give exactly one of --provider ID or --coordinator NAME", err=True)
        raise typer.Exit(2)
    settings = _settings(ctx, event_store_url, data_dir)
    if provider is not None and not _known_provider(settings, provider):
        typer.echo(f"error: no provider {provider!r} in the catalogue", err=True)
        raise typer.Exit(1)
    kind = PrincipalKind.PROVIDER if provider else PrincipalKind.COORDINATOR
    subject = (provider or coordinator or "").strip()
    if not subject:
        typer.echo("error: the name must not be empty", err=True)
        raise typer.Exit(2)
    record, secret = _store(settings).issue(Principal(kind, subject))
    typer.echo(f"issued {record.id} for {record.principal.actor} (store it now: it is not kept)")
    typer.echo(secret)


@token_app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_or_id: Annotated[str, typer.Argument(help="the token itself or its id (tok-...)")],
    event_store_url: EventStoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Revoke a token at once: requests with it get 401 from then on."""
    if not _store(_settings(ctx, event_store_url, data_dir)).revoke(token_or_id):
        typer.echo("error: no such live token", err=True)
        raise typer.Exit(1)
    typer.echo("revoked")


@token_app.command("list")
def list_tokens(
    ctx: typer.Context, event_store_url: EventStoreUrl = None, data_dir: DataDir = None
) -> None:
    """Every token: id, who it is for, when issued, whether revoked (never the secret)."""
    for record in _store(_settings(ctx, event_store_url, data_dir)).list():
        revoked = f"revoked {record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "live"
        typer.echo(
            f"{record.id}\t{record.principal.actor}\t{record.created_at:%Y-%m-%d %H:%M}\t{revoked}"
        )
