"""Coordinator commands for scripts and emergencies: `list`, `inbox`, and `ack`, `resolve`,
`reassign`, `extend`, `hold`, `resume`, `cancel` on one pathway.

They share the API's validation and engine door: the same request models (api/views.py), the
same command models (pathways/commands.py) and the same Gateway, so the same refusals, deadlines
and deterministic Update ids. A command retried with the same `--idempotency-key` is applied once,
also when the first try went through the HTTP API with that key and the same coordinator name.

Exit codes: 0 done; 1 the engine or event store is unavailable, or the outcome is unknown (the
message says which; retry with the printed --idempotency-key); 2 refused (unknown pathway, a
transition the pathway forbids, invalid values) or a usage error. Text by default; `--format json`
prints the API's JSON shapes on stdout (and `{"error": ...}` on failure).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from cli.app import app, load_settings
from cli.exit import finish
from pathways.errors import CommandFailed
from pathways.settings import Settings
from pathways.state import PathwayStatus, SlaState

T = TypeVar("T")


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


FormatOption = Annotated[Output, typer.Option("--format", help="text for people, json for scripts")]
PathwayId = Annotated[str, typer.Argument(help="pathway id (pw-...)")]
HandoverId = Annotated[str, typer.Argument(help="handover id, e.g. gp-review.1")]
EscalationId = Annotated[int, typer.Argument(help="escalation number within the pathway")]
Reason = Annotated[str, typer.Option("--reason", help="why (recorded on the pathway)")]
As = Annotated[
    str | None, typer.Option("--as", help="coordinator name recorded as the actor (default: your login)")
]
Key = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        help="repeat it on a retry so the change is applied once (default: a new key, printed on failure)",
    ),
]


# ---------------------------------------------------------------------------------------------
# Reads: the read model in the event store (no Temporal needed)


@app.command("list")
def list_pathways(
    ctx: typer.Context,
    definition: Annotated[str | None, typer.Option(help="definition id")] = None,
    status: Annotated[PathwayStatus | None, typer.Option(help="pathway status")] = None,
    sla_state: Annotated[SlaState | None, typer.Option(help="worst SLA state of its open handovers")] = None,
    provider: Annotated[str | None, typer.Option(help="has an open handover at this provider")] = None,
    step: Annotated[str | None, typer.Option(help="has this step open")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    output: FormatOption = Output.TEXT,
) -> None:
    """Pathways matching every filter, most recently changed first (from the read model)."""
    filters = {"definition_id": definition, "status": status and status.value,
               "sla_state": sla_state and sla_state.value,
               "open_provider": provider, "open_step": step}
    settings = load_settings(ctx)
    finish(_run(output, lambda: _list(settings, filters, limit, offset, output)))


@app.command()
def inbox(ctx: typer.Context, output: FormatOption = Output.TEXT) -> None:
    """Open and acknowledged escalations of running pathways, oldest first."""
    settings = load_settings(ctx)
    finish(_run(output, lambda: _inbox(settings, output)))


async def _list(
    settings: Settings, filters: dict[str, str | None], limit: int, offset: int, output: Output
) -> None:
    from api.views import PathwayPage

    store = _event_store(settings)
    rows, total = await _read(lambda: store.list_pathways(**filters, limit=limit, offset=offset))
    page = PathwayPage(total=total, limit=limit, offset=offset, items=rows)
    if output is Output.JSON:
        print(page.model_dump_json())
        return
    table = [
        (str(r.pathway_id), f"{r.definition_id}@{r.definition_version}", str(r.status), str(r.sla_state),
         ", ".join(r.open_steps) or "-", _when(r.updated_at))
        for r in rows
    ]
    _print_table(("PATHWAY", "DEFINITION", "STATUS", "SLA", "OPEN STEPS", "UPDATED"), table)
    print(f"{len(rows)} of {total} pathways" + (f" (from {offset})" if offset else ""))


async def _inbox(settings: Settings, output: Output) -> None:
    from api.views import Inbox
    from pathways.inbox import open_escalations

    store = _event_store(settings)
    running = [PathwayStatus.ACTIVE.value, PathwayStatus.ON_HOLD.value]
    events = await _read(lambda: store.escalation_events(running))
    items = open_escalations(events)
    if output is Output.JSON:
        print(Inbox(items=items).model_dump_json())
        return
    table = [
        (i.pathway_id, str(i.escalation.id), i.escalation.status.value, i.escalation.level.value,
         i.escalation.handover_id, i.escalation.provider_id, _when(i.escalation.at), i.escalation.reason)
        for i in items
    ]
    _print_table(
        ("PATHWAY", "ESC", "STATUS", "LEVEL", "HANDOVER", "PROVIDER", "RAISED", "REASON"), table
    )
    print(f"{len(items)} open escalations")


def _event_store(settings: Settings) -> Any:
    """The event store, without creating an empty one where none is (a wrong --data-dir)."""
    from activities.store import EventStore

    if settings.event_store_url is None and not (settings.data_dir / "pathways.db").exists():
        raise CommandFailed(
            f"no event store in {settings.data_dir}: give --data-dir (PATHWAYS_DATA_DIR) or "
            "--event-store-url (PATHWAYS_EVENT_STORE_URL) of the running stack"
        )
    return EventStore(settings.event_store)


async def _read(call: Callable[[], T]) -> T:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return await asyncio.to_thread(call)
    except SQLAlchemyError as error:
        reason = type(error).__name__
        raise CommandFailed(f"the event store cannot be read ({reason}); run `pathways setup`?") from None


# ---------------------------------------------------------------------------------------------
# Commands: one Update each, through the API's Gateway


@app.command("ack")
def acknowledge(
    ctx: typer.Context,
    pathway_id: PathwayId,
    escalation_id: EscalationId,
    note: Annotated[str | None, typer.Option(help="a note kept with the escalation")] = None,
    as_: As = None,
    key: Key = None,
    output: FormatOption = Output.TEXT,
) -> None:
    """Acknowledge an escalation: someone is on it."""
    from api.views import EscalationRequest
    from pathways.commands import EscalationAction
    from workflows.pathway import PathwayWorkflow

    def build(actor: str) -> BaseModel:
        body = _body(EscalationRequest, note=note)
        return _command(EscalationAction, escalation_id=escalation_id, note=body.note, actor=actor)

    _update(ctx, "acknowledged", pathway_id, PathwayWorkflow.acknowledge_escalation, build, as_, key, output)


@app.command()
def resolve(
    ctx: typer.Context,
    pathway_id: PathwayId,
    escalation_id: EscalationId,
    note: Annotated[str | None, typer.Option(help="how it was resolved")] = None,
    as_: As = None,
    key: Key = None,
    output: FormatOption = Output.TEXT,
) -> None:
    """Resolve an escalation: it leaves the inbox."""
    from api.views import EscalationRequest
    from pathways.commands import EscalationAction
    from workflows.pathway import PathwayWorkflow

    def build(actor: str) -> BaseModel:
        body = _body(EscalationRequest, note=note)
        return _command(EscalationAction, escalation_id=escalation_id, note=body.note, actor=actor)

    _update(ctx, "resolved", pathway_id, PathwayWorkflow.resolve_escalation, build, as_, key, output)


@app.command()
def reassign(
    ctx: typer.Context,
    pathway_id: PathwayId,
    handover_id: HandoverId,
    to: Annotated[str, typer.Option("--to", help="provider id of the same role")],
    reason: Reason,
    as_: As = None,
    key: Key = None,
    output: FormatOption = Output.TEXT,
) -> None:
    """Hand a handover to another provider of its role (a new attempt)."""
    from api.views import ReassignRequest
    from pathways.commands import Reassign
    from workflows.pathway import PathwayWorkflow

    def build(actor: str) -> BaseModel:
        body = _body(ReassignRequest, handover_id=handover_id, provider_id=to, reason=reason)
        return _command(Reassign, **body.model_dump(), actor=actor)

    _update(ctx, "reassigned", pathway_id, PathwayWorkflow.reassign, build, as_, key, output)


@app.command()
def extend(
    ctx: typer.Context,
    pathway_id: PathwayId,
    handover_id: HandoverId,
    reason: Reason,
    by: Annotated[str | None, typer.Option(help="ISO 8601 duration, e.g. PT4H or P1D")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 instant, e.g. 2026-05-01T17:00:00Z")] = None,
    as_: As = None,
    key: Key = None,
    output: FormatOption = Output.TEXT,
) -> None:
    """Move a handover's due time later: by a duration or to an instant (exactly one)."""
    from api.views import ExtendRequest
    from pathways.commands import ExtendDue
    from workflows.pathway import PathwayWorkflow

    def build(actor: str) -> BaseModel:
        body = _body(ExtendRequest, handover_id=handover_id, by=by, until=until, reason=reason)
        return _command(ExtendDue, **body.model_dump(), actor=actor)

    _update(ctx, "extended", pathway_id, PathwayWorkflow.extend_due, build, as_, key, output)


@app.command()
def hold(
    ctx: typer.Context,
    pathway_id: PathwayId,
    reason: Reason,
    as_: As = None,
    key: Key = None,
    output: FormatOption = Output.TEXT,
) -> None:
    """Pause the pathway's clocks (e.g. the patient is in hospital)."""
    from api.views import ReasonRequest
    from pathways.commands import HoldPathway
    from workflows.pathway import PathwayWorkflow

    def build(actor: str) -> BaseModel:
        return _command(HoldPathway, reason=_body(ReasonRequest, reason=reason).reason, actor=actor)

    _update(ctx, "held", pathway_id, PathwayWorkflow.hold, build, as_, key, output)


@app.command()
def resume(
    ctx: typer.Context,
    pathway_id: PathwayId,
    as_: As = None,
    key: Key = None,
    output: FormatOption = Output.TEXT,
) -> None:
    """Restart the clocks of a pathway on hold."""
    from pathways.commands import ResumePathway
    from workflows.pathway import PathwayWorkflow

    def build(actor: str) -> BaseModel:
        return _command(ResumePathway, actor=actor)

    _update(ctx, "resumed", pathway_id, PathwayWorkflow.resume, build, as_, key, output)


@app.command()
def cancel(
    ctx: typer.Context,
    pathway_id: PathwayId,
    reason: Reason,
    as_: As = None,
    key: Key = None,
    output: FormatOption = Output.TEXT,
) -> None:
    """End the pathway; open handovers are cancelled and their providers told."""
    from api.views import ReasonRequest
    from pathways.commands import CancelPathway
    from workflows.pathway import PathwayWorkflow

    def build(actor: str) -> BaseModel:
        return _command(CancelPathway, reason=_body(ReasonRequest, reason=reason).reason, actor=actor)

    _update(ctx, "cancelled", pathway_id, PathwayWorkflow.cancel, build, as_, key, output)


class Refused(CommandFailed):
    """The engine or the API's validation refused the command: nothing changed (exit 2)."""

    def __init__(self, problems: list[str], status: int | None = None) -> None:
        super().__init__("refused: " + "; ".join(problems), code=2)
        self.problems = problems
        self.status = status


M = TypeVar("M", bound=BaseModel)


def _body(model: type[M], **values: Any) -> M:
    """The API's request model: the same bounds as over HTTP (None means not given)."""
    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as error:
        raise Refused(_problems(error)) from None


def _command(model: type[M], **values: Any) -> M:
    """The engine's command model: its own rules (e.g. exactly one of --by/--until)."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise Refused(_problems(error)) from None


def _problems(error: ValidationError) -> list[str]:
    """Field and message, never the input (it may be patient data)."""
    found = []
    for e in error.errors(include_input=False):
        where = ".".join(str(part) for part in e["loc"])
        found.append(f"{where}: {e['msg']}" if where else e["msg"])
    return found


def _actor(name: str | None) -> str:
    from api.tokens import Principal, PrincipalKind

    subject = (name if name is not None else _login()).strip()
    if not subject:
        raise Refused(["--as: the coordinator name must not be empty"])
    return Principal(PrincipalKind.COORDINATOR, subject).actor


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (e.g. a container): say who with --as
        return "cli"


def _update(
    ctx: typer.Context,
    verb: str,
    pathway_id: str,
    method: Any,
    build: Callable[[str], BaseModel],
    as_: str | None,
    key: str | None,
    output: Output,
) -> None:
    settings = load_settings(ctx)
    basis = key or secrets.token_hex(16)

    async def run() -> None:
        command = build(_actor(as_))  # invalid input is refused before any connection
        result = await _apply(settings, pathway_id, method, command, basis)
        _print_result(verb, pathway_id, result, output)

    finish(_run(output, run))


async def _apply(settings: Settings, pathway_id: str, method: Any, command: BaseModel, basis: str) -> Any:
    """One Update through the Gateway; tell refused, unavailable and unknown apart truthfully."""
    from temporalio.client import RPCTimeoutOrCancelledError

    from api.gateway import Gateway
    from api.problems import ApiError
    from worker.connection import connect_or_fail

    retry = f"retry the same command with --idempotency-key {basis}"
    try:
        client = await asyncio.wait_for(connect_or_fail(settings), settings.update_timeout_seconds)
    except TimeoutError:
        raise CommandFailed(
            f"Temporal at {settings.temporal_address} did not answer: nothing changed; {retry}"
        ) from None
    gateway = Gateway(settings, client)
    try:
        return await gateway.update(pathway_id, method, command, basis)
    except ApiError as error:
        if error.status >= 500:  # sent, or maybe sent: only the same Update id is safe
            raise CommandFailed(f"outcome unknown: the pathway engine did not confirm it; {retry}") from None
        raise Refused(error.problems, error.status) from None
    except (TimeoutError, RPCTimeoutOrCancelledError):
        raise CommandFailed(f"outcome unknown: the pathway engine did not answer in time; {retry}") from None


async def _run(output: Output, work: Callable[[], Awaitable[None]]) -> int:
    """Run a command; in JSON mode a failure is also a JSON object on stdout, for scripts."""
    try:
        await work()
    except CommandFailed as failure:
        if output is Output.JSON:
            problems = getattr(failure, "problems", [str(failure)])
            outcome = "refused" if failure.code == 2 else "unknown" if "outcome unknown" in str(failure) \
                else "unavailable"
            print(json.dumps({"error": {"outcome": outcome, "exit_code": failure.code, "problems": problems}}))
        raise
    return 0


def _print_result(verb: str, pathway_id: str, result: BaseModel, output: Output) -> None:
    """What the API answers: a pathway command shows the summary, never the whole state."""
    from pathways.state import Escalation, Handover, PathwaySummary

    if output is Output.JSON:
        print(result.model_dump_json())
    elif isinstance(result, PathwaySummary):
        print(f"{verb} {pathway_id}: status {result.status.value}, SLA {result.sla_state.value}")
    elif isinstance(result, Handover):
        print(f"{verb} {pathway_id} {result.id}: provider {result.provider_id}, status "
              f"{result.status.value}, accept by {_when(result.accept_by)}, complete by {_when(result.complete_by)}")
    elif isinstance(result, Escalation):
        print(f"{verb} {pathway_id} escalation {result.id} ({result.handover_id}): {result.status.value}")
    else:
        print(f"{verb} {pathway_id}")


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    sys.stdout.flush()
