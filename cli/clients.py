"""`pathways client register|list|remove`: SMART Backend Services clients of provider systems.

A client is registered with its public keys, as a JWKS URL (fetched when it asks for a token,
so it can rotate keys itself) or a JWKS file (copied in, public parts only). `register` prints
the client_id as its last line. Exit codes: 0 success, 1 unknown provider or client, 2 usage error.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from activities.clients import ClientStore
from api.smart import SYSTEM_SCOPES, parse_scope
from cli.app import app, load_settings
from pathways.catalogue import load_catalogue
from pathways.settings import Settings

client_app = typer.Typer(
    help="Register, list and remove SMART Backend Services clients.", no_args_is_help=True
)
app.add_typer(client_app, name="client")

EventStoreUrl = Annotated[
    str | None, typer.Option("--event-store-url", help="SQLAlchemy URL (PATHWAYS_EVENT_STORE_URL)")
]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="PATHWAYS_DATA_DIR")]
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _store(ctx: typer.Context, event_store_url: str | None, data_dir: Path | None) -> ClientStore:
    settings: Settings = load_settings(ctx, event_store_url=event_store_url, data_dir=data_dir)
    if settings.event_store_url is None:  # the default SQLite file lives in the data dir
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = ClientStore(settings.event_store)
    store.migrate()
    return store


def _check_url(url: str) -> str:
    """A JWKS URL must be https (plain http only on this machine, for development)."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        if parts.hostname:
            return url
    raise _fail("--jwks-url must be an https:// URL (http:// only for localhost)")


def _public_jwks(path: Path) -> dict[str, Any]:
    """The file's key set, public parts only; every key must be RSA or EC and carry a kid."""
    try:
        raw = json.loads(path.read_text())
        keys = KeySet.import_key_set(raw)
    except (OSError, ValueError, TypeError, KeyError, JoseError):
        raise _fail(f"{path} is not a readable JWK Set ({{\"keys\": [...]}})") from None
    problems = [
        f"key {index + 1} has no kid"
        for index, key in enumerate(raw["keys"])
        if not isinstance(key, dict) or not key.get("kid")
    ]
    problems += [f"key {key.kid} is {key.key_type}, not RSA or EC" for key in keys if key.key_type not in ("RSA", "EC")]
    if problems:
        raise _fail("; ".join(problems))
    return dict(keys.as_dict(private=False))


@client_app.command("register")
def register(
    ctx: typer.Context,
    provider: Annotated[str, typer.Option("--provider", help="provider organisation id")],
    jwks_url: Annotated[
        str | None, typer.Option("--jwks-url", help="where the client publishes its public keys")
    ] = None,
    jwks: Annotated[
        Path | None, typer.Option("--jwks", help="a JWK Set file with the client's public keys")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help=f"an allowed scope (repeat); default: {' '.join(SYSTEM_SCOPES)}"),
    ] = None,
    event_store_url: EventStoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Register a provider system's client; the client_id is the last line printed."""
    if (jwks_url is None) == (jwks is None):
        raise _fail("give exactly one of --jwks-url URL or --jwks FILE")
    scopes = scope or list(SYSTEM_SCOPES)
    bad = [s for s in scopes if parse_scope(s) is None]
    if bad:
        raise _fail(f"not a SMART v2 system scope: {' '.join(bad)} (e.g. system/Task.rs)")
    settings = load_settings(ctx, event_store_url=event_store_url, data_dir=data_dir)
    catalogue = load_catalogue(settings.catalogue_dir)
    if not any(d.provider(provider) or d.lead_provider.id == provider for d in catalogue):
        raise _fail(f"no provider {provider!r} in the catalogue", 1)
    url = _check_url(jwks_url) if jwks_url is not None else None
    keys = _public_jwks(jwks) if jwks is not None else None
    client_id = f"{provider}.{secrets.token_hex(4)}"
    store = _store(ctx, event_store_url, data_dir)
    store.register(client_id, provider, scopes, jwks_url=url, jwks=keys)
    typer.echo(f"registered a SMART client for provider {provider} with scopes {' '.join(scopes)}")
    typer.echo(client_id)


@client_app.command("list")
def list_clients(
    ctx: typer.Context, event_store_url: EventStoreUrl = None, data_dir: DataDir = None
) -> None:
    """Every client: id, provider, where its keys are, allowed scopes, when registered."""
    for client in _store(ctx, event_store_url, data_dir).list():
        keys = client.jwks_url or f"inline JWKS ({len((client.jwks or {}).get('keys', []))} keys)"
        typer.echo(
            f"{client.client_id}\t{client.provider_id}\t{keys}\t{' '.join(client.scopes)}"
            f"\t{client.created_at:%Y-%m-%d %H:%M}"
        )


@client_app.command("remove")
def remove(
    ctx: typer.Context,
    client_id: Annotated[str, typer.Argument(help="the client_id from `client register`")],
    event_store_url: EventStoreUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Remove a client: it gets no new tokens, and its access tokens stop working at once."""
    if not _store(ctx, event_store_url, data_dir).remove(client_id):
        raise _fail("no such client", 1)
    typer.echo("removed")
