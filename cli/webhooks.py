"""`pathways webhook secret --provider ID`: the secret(s) a provider verifies webhooks with.

Secrets are derived from the installation's secret key (PATHWAYS_SECRET_KEY, else the key file in
the data dir), so this command must run with the worker's settings. It prints one line per active
secret version, newest (current) first: `<key id><TAB>whsec_...`; during a rotation a delivery is
signed with each of them. Exit codes: 0 printed, 1 unknown provider, 2 usage error.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.app import app, load_settings
from pathways.catalogue import load_catalogue
from pathways.settings import Settings

webhook_app = typer.Typer(help="Webhook signing secrets for provider systems.", no_args_is_help=True)
app.add_typer(webhook_app, name="webhook")


def _webhooks_of(settings: Settings, provider_id: str) -> set[str] | None:
    """The provider's webhook URLs across the catalogue, or None if no definition names it."""
    found = None
    for definition in load_catalogue(settings.catalogue_dir):
        provider = definition.provider(provider_id)
        if provider is not None:
            found = found or set()
            if provider.webhook is not None:
                found.add(str(provider.webhook))
        elif definition.lead_provider.id == provider_id:
            found = found or set()
    return found


@webhook_app.command("secret")
def secret(
    ctx: typer.Context,
    provider: Annotated[str, typer.Option("--provider", help="provider organisation id")],
) -> None:
    """Print the provider's webhook secret(s) in whsec_ form, current first (one per line)."""
    settings = load_settings(ctx)
    webhooks = _webhooks_of(settings, provider)
    if webhooks is None:
        typer.echo(f"error: no provider {provider!r} in the catalogue", err=True)
        raise typer.Exit(1)
    source = (
        "PATHWAYS_SECRET_KEY" if settings.secret_key is not None
        else str((settings.data_dir / "secret.key").resolve())
    )
    secrets = settings.webhook_secrets(provider)
    typer.echo(
        f"webhook secrets of {provider}, current first, derived from the key in {source}"
        + ("" if webhooks else " (no definition gives this provider a webhook yet)"),
        err=True,
    )
    for entry in secrets:
        typer.echo(f"{entry.key_id}\t{entry.whsec}")
