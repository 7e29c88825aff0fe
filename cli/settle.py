"""`pathways settle`: post the settlement ledger from the event log and print statements.

    pathways settle --period 2026-Q4 [--provider ID] [--format text|json|csv]
    pathways settle outcome PATHWAY_ID --score good        (recorded on the patient's behalf)
    pathways settle close --period 2026-Q4                 (books the alliance share; final)
    pathways settle alliance --period 2026-Q4              (the alliance's gain or loss share)
    pathways settle verify                                 (stored ledger == replayed log?)
    pathways settle link PATHWAY_ID [--new]                (the patient's questionnaire link)

Contracts are read from --contracts (default: `contracts/` beside the catalogue directory). Every
run first appends what the event log gives up to now (entries are never changed). Exit codes: 0
done; 1 refused (unknown pathway or provider, period not over or already closed) or the ledger
differs from its replay; 2 usage error or invalid contract terms.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from activities.ledger import LedgerRefused, LedgerStore, adjustments
from activities.store import EventStore
from api.settlement import questionnaire_url
from cli.app import app, load_settings
from pathways.catalogue import load_catalogue
from pathways.settings import Settings
from pathways.settlement import Outcome, Period, load_contracts
from pathways.settlement.ledger import alliance
from pathways.settlement.position import missed_top_ups
from pathways.settlement.statements import (
    alliance_text,
    alliance_view,
    providers_in,
    statement,
    to_csv,
    to_json,
    to_text,
)
from pathways.validation import DefinitionError


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    CSV = "csv"


settle_app = typer.Typer(help="Settlement: statements per provider and period from the event log.",
                         invoke_without_command=True)
app.add_typer(settle_app, name="settle")

Contracts = Annotated[Path | None, typer.Option(
    "--contracts", help="contract terms directory (default: contracts/ beside the catalogue)")]


def contracts_dir(settings: Settings, given: Path | None) -> Path:
    return given or settings.catalogue_dir.resolve().parent / "contracts"


def open_ledger(ctx: typer.Context, contracts: Path | None) -> LedgerStore:
    """The ledger on the configured event store, migrated, under the validated contracts."""
    settings = load_settings(ctx)  # the global options (ctx.obj) are inherited
    try:
        catalogue = load_catalogue(settings.catalogue_dir)
        terms = load_contracts(contracts_dir(settings, contracts), catalogue)
    except DefinitionError as error:
        typer.echo(f"error: invalid contract terms:\n{error}", err=True)
        raise typer.Exit(2) from None
    store = EventStore(settings.event_store)
    store.migrate()
    ledger = LedgerStore(store, terms)
    ledger.migrate()
    return ledger


def _period(text: str) -> Period:
    try:
        return Period.parse(text)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@settle_app.callback()
def statements(
    ctx: typer.Context,
    period: Annotated[str | None, typer.Option(help="quarter, e.g. 2026-Q4")] = None,
    provider: Annotated[str | None, typer.Option(help="one provider's statement")] = None,
    output: Annotated[Format, typer.Option("--format", help="text, json or csv")] = Format.TEXT,
    contracts: Contracts = None,
) -> None:
    """Post the ledger up to now, then print each provider's statement for the period."""
    if ctx.invoked_subcommand is not None:
        return
    if period is None:
        typer.echo("error: --period is required (e.g. --period 2026-Q4)", err=True)
        raise typer.Exit(2)
    wanted = _period(period)
    ledger = open_ledger(ctx, contracts)
    events = ledger.settled_events(datetime.now(UTC))  # posts up to now first
    entries = ledger.entries(period=str(wanted))
    closed = str(wanted) in ledger.closed_periods()
    providers = [provider] if provider else providers_in(entries, str(wanted))
    if provider and provider not in _known_providers(ledger):
        typer.echo(f"error: no provider {provider!r} in the contracts' definitions", err=True)
        raise typer.Exit(1)
    found = [statement(entries, p, str(wanted), closed,
                       missed=missed_top_ups(events, ledger.contracts, p, wanted))
             for p in providers]
    render = {Format.TEXT: to_text, Format.JSON: to_json, Format.CSV: to_csv}[output]
    typer.echo(render(found) if found or output is not Format.TEXT
               else f"no ledger entries in {wanted}\n", nl=False)


def _known_providers(ledger: LedgerStore) -> set[str]:
    known: set[str] = set()
    for contract in ledger.contracts.all:
        definition = ledger.contracts.definition(contract)
        known |= {p.id for r in definition.roles for p in r.providers}
        known.add(definition.lead_provider.id)
    return known


def _actor(name: str | None) -> str:
    return f"coordinator:{name or getpass.getuser()}"


@settle_app.command("outcome")
def record_outcome(
    ctx: typer.Context,
    pathway_id: Annotated[str, typer.Argument(help="pathway id (pw-...)")],
    score: Annotated[Outcome, typer.Option("--score", help="Friends and Family Test answer")],
    name: Annotated[str | None, typer.Option("--as", help="coordinator name recorded")] = None,
    contracts: Contracts = None,
) -> None:
    """Record a pathway's outcome score on the patient's behalf (a later one replaces it)."""
    ledger = open_ledger(ctx, contracts)
    try:
        item = ledger.record_outcome(pathway_id, score, _actor(name), datetime.now(UTC))
    except LedgerRefused as refused:
        typer.echo(f"error: {refused}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"recorded {item.input_id}: {score.value}")


@settle_app.command("link")
def questionnaire_link(
    ctx: typer.Context,
    pathway_id: Annotated[str, typer.Argument(help="pathway id (pw-...)")],
    new: Annotated[bool, typer.Option("--new", help="issue a new link (older unused ones stop "
                                                     "working)")] = False,
    name: Annotated[str | None, typer.Option("--as", help="coordinator name recorded")] = None,
    contracts: Contracts = None,
) -> None:
    """Print the patient's single-use questionnaire link to pass on: the one that still works
    (issued when the pathway completed), else a new one."""
    ledger = open_ledger(ctx, contracts)
    now = datetime.now(UTC)
    ledger.post(now)
    link = None if new else ledger.live_link(pathway_id, now)
    if link is None:
        try:
            link = ledger.issue_link(pathway_id, _actor(name), now)
        except LedgerRefused as refused:
            typer.echo(f"error: {refused}", err=True)
            raise typer.Exit(1) from None
    typer.echo(questionnaire_url(load_settings(ctx), link))
    typer.echo(f"works once; expires {link.expires_at.isoformat()}", err=True)


@settle_app.command("close")
def close_period(
    ctx: typer.Context,
    period: Annotated[str, typer.Option(help="quarter to close, e.g. 2026-Q4")],
    name: Annotated[str | None, typer.Option("--as", help="coordinator name recorded")] = None,
    contracts: Contracts = None,
) -> None:
    """Close a quarter that is over: post it, book the alliance shares into it; final."""
    ledger = open_ledger(ctx, contracts)
    try:
        booked = ledger.close(_period(period), datetime.now(UTC), _actor(name))
    except LedgerRefused as refused:
        typer.echo(f"error: {refused}", err=True)
        raise typer.Exit(1) from None
    shares = [e for e in booked if e.rule.value == "alliance-share"]
    typer.echo(f"closed {period}: {len(booked)} entries booked, {len(shares)} alliance shares")


@settle_app.command("alliance")
def alliance_share(
    ctx: typer.Context,
    period: Annotated[str, typer.Option(help="quarter, e.g. 2026-Q4")],
    output: Annotated[Format, typer.Option("--format", help="text or json")] = Format.TEXT,
    contracts: Contracts = None,
) -> None:
    """The alliance's gain or loss against target for the period, per member (provisional
    until the period is closed)."""
    wanted = _period(period)
    ledger = open_ledger(ctx, contracts)
    events = ledger.settled_events(datetime.now(UTC))  # posts up to now first
    views = [alliance_view(r) for r in alliance(events, ledger.inputs(),
                                                ledger.contracts, wanted, ledger.entries())]
    if output is Format.JSON:
        typer.echo(json.dumps([v.model_dump(mode="json") for v in views], indent=2))
    else:
        typer.echo(alliance_text(views, str(wanted) in ledger.closed_periods()), nl=False)


@settle_app.command("verify")
def verify(ctx: typer.Context, contracts: Contracts = None) -> None:
    """Replay the event log and compare with the stored ledger: exit 0 when it matches line for
    line, or when late facts were trued up so every total matches; exit 1 when a total differs
    (the next `settle` run appends what is missing)."""
    ledger = open_ledger(ctx, contracts)
    stored = ledger.entries()
    replayed = ledger.rebuild(max((e.at for e in stored), default=datetime.now(UTC)))
    if stored == replayed:
        typer.echo(f"ledger matches its replay line for line: {len(stored)} entries")
        return
    missing = adjustments(stored, replayed, datetime.now(UTC), ledger.closed_periods())
    if not missing:
        typer.echo(f"ledger totals match its replay: {len(stored)} entries, late facts trued up "
                   "by adjusting entries")
        return
    typer.echo(f"ledger differs from its replay on {len(missing)} totals; `pathways settle "
               "--period ...` appends the adjusting entries", err=True)
    raise typer.Exit(1)
