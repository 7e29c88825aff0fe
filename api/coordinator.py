"""Coordinator JSON API (/api): the catalogue, pathways, coordinator commands, escalations.

One pathway is read with a Query (strongly consistent); lists come from the read model
(eventually consistent). The escalation inbox queries every running pathway the read model
lists, so it is exact for those pathways at the cost of one Query each.

Coordinator commands are idempotent per request: a client that retries (e.g. after a timeout)
sends the same `Idempotency-Key` header and the change is applied once.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ValidationError
from temporalio.workflow import UpdateMethodMultiParam

from api import context
from api.auth import Coordinator
from api.gateway import Gateway
from api.problems import ApiError, api_errors, refuse_unknown_parameters
from api.tokens import Principal
from api.views import (
    CatalogueView,
    DefinitionView,
    EscalationRequest,
    ExtendRequest,
    HandoverView,
    Inbox,
    NoteRequest,
    PathwayCreated,
    PathwayDetail,
    PathwayListItem,
    PathwayPage,
    PathwaySearch,
    PathwaySummary,
    ReasonRequest,
    ReassignRequest,
    StartRequest,
    StepProgress,
    Waited,
)
from pathways import commands as cmd
from pathways.catalogue import UnknownDefinition
from pathways.events import PathwayRow
from pathways.inbox import open_escalations
from pathways.lean import pathway_metrics
from pathways.state import Escalation, Handover, Note, PathwayState, PathwayStatus
from workflows.pathway import PathwayWorkflow

router = APIRouter(prefix="/api", tags=["Coordinators"])

R = TypeVar("R")
C = TypeVar("C", bound=BaseModel)

"""Most running pathways the inbox looks at (one Query each)."""

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        description="repeat it on a retry so the change is applied once; "
        "the same key with a different request is 422",
    ),
]


@router.get("/catalogue", response_model=CatalogueView, responses=api_errors(401, 403))
def catalogue(principal: Coordinator, request: Request) -> CatalogueView:
    """Every pathway definition (latest versions) with its roles, steps and graph."""
    return CatalogueView(definitions=[DefinitionView.of(d) for d in context.catalogue(request)])


@router.get(
    "/catalogue/{definition_id}", response_model=DefinitionView, responses=api_errors(401, 403, 404)
)
def definition(
    definition_id: str,
    principal: Coordinator,
    request: Request,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> DefinitionView:
    try:
        return DefinitionView.of(context.catalogue(request).get(definition_id, version))
    except UnknownDefinition as error:
        raise ApiError(404, [str(error)]) from None


PATHWAY_OPERATIONS = ("pathway", "reassign", "extend", "hold", "resume", "cancel", "add_note")
"""What a client can do next with a started pathway (OpenAPI links, for generic clients)."""


@router.post(
    "/pathways",
    status_code=201,
    response_model=PathwayCreated,
    responses={
        **api_errors(408, 409, 413, 415, 503),
        201: {
            "description": "Started; Location is the pathway",
            "links": {
                operation: {
                    "operationId": operation,
                    "parameters": {"pathway_id": "$response.body#/id"},
                }
                for operation in PATHWAY_OPERATIONS
            },
        },
    },
)
async def start(
    body: StartRequest,
    principal: Coordinator,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> PathwayCreated:
    """Start a pathway for a patient on the latest (or pinned) version of a definition.

    With an `Idempotency-Key` a retried start returns the same pathway (the same key with a
    different body is 422). The same definition already running for the same patient is 409,
    unless `allow_duplicate` is true: the problem's `pathway_id` member names the running
    pathway (and `definition_id` its definition), so a client acts on it without reading text.
    """
    try:
        chosen = context.catalogue(request).resolve(body.definition)
    except UnknownDefinition as error:
        raise ApiError(422, [str(error)]) from None
    pathway_id = await context.gateway(request).start(
        chosen,
        body.patient,
        idempotency_key=idempotency_key,
        caller=principal.actor,
        allow_duplicate=body.allow_duplicate,
    )
    response.headers["Location"] = f"/api/pathways/{pathway_id}"
    return PathwayCreated(
        id=pathway_id, status=PathwayStatus.ACTIVE, definition=chosen.id, version=chosen.version
    )


LIST_PARAMETERS = {
    "definition", "sla_state", "status", "provider", "step", "breached", "q", "sort", "include",
    "limit", "offset",
}
STATUSES = "active|on-hold|completed|cancelled|open"
SLA_STATES = "on-track|at-risk|breached"
OPEN = [PathwayStatus.ACTIVE.value, PathwayStatus.ON_HOLD.value]


def _list(pattern: str) -> str:
    return f"^({pattern})(,({pattern}))*$"


def _values(text: str | None) -> list[str] | None:
    """A comma-separated filter as its values; `open` stands for active and on-hold."""
    if text is None:
        return None
    values = [v.strip() for v in text.split(",") if v.strip()]
    return sorted({s for v in values for s in (OPEN if v == "open" else [v])})


@router.get("/pathways", response_model=PathwayPage, responses=api_errors(400, 401, 403, 503))
async def list_pathways(
    principal: Coordinator,
    request: Request,
    definition: Annotated[
        str | None, Query(max_length=2000, description="definition ids, comma-separated")
    ] = None,
    sla_state: Annotated[
        str | None, Query(pattern=_list(SLA_STATES), description="e.g. at-risk,breached")
    ] = None,
    status: Annotated[
        str | None,
        Query(pattern=_list(STATUSES), description="e.g. active,on-hold; open = both"),
    ] = None,
    provider: Annotated[str | None, Query(description="has an open handover here")] = None,
    step: Annotated[str | None, Query(description="has this step open")] = None,
    breached: bool | None = None,
    q: Annotated[
        str | None, Query(max_length=200, description="text in an open step title")
    ] = None,
    sort: Annotated[
        str,
        Query(
            pattern="^(updated|due|age|sla)$",
            description="updated (latest change first), due (soonest due first), age (oldest "
            "first) or sla (breached, at-risk, on-track)",
        ),
    ] = "updated",
    include: Annotated[
        str | None,
        Query(pattern="^patient$", description="patient: add display names (a Query each)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> PathwayPage:
    """Pathways matching every filter (a comma-separated filter: any of its values), from the
    read model, with each one's next due time and how long its longest-waiting open handover
    has waited.

    An unknown parameter is 400 unless the request says `Prefer: handling=lenient`."""
    refuse_unknown_parameters(request, LIST_PARAMETERS)
    rows, total = await asyncio.to_thread(
        context.store(request).list_pathways,
        definition_id=_values(definition),
        sla_state=_values(sla_state),
        status=_values(status),
        open_provider=provider,
        open_step=step,
        breached=breached,
        step_title_contains=q,
        limit=limit,
        offset=offset,
        sort=sort,
    )
    items = await _list_items(request, rows, names=include == "patient")
    return PathwayPage(total=total, limit=limit, offset=offset, items=items)


@router.post(
    "/pathways/search",
    response_model=PathwayPage,
    responses=api_errors(400, 401, 403, 408, 413, 415, 503),
)
async def search_pathways(
    body: PathwaySearch, principal: Coordinator, request: Request
) -> PathwayPage:
    """A patient's pathways, found by NHS number through the keyed patient hash (the number
    travels in the body, never in a URL or a log), with display names."""
    patient_key = context.settings(request).patient_key(body.nhs_number)
    rows, total = await asyncio.to_thread(
        context.store(request).list_pathways,
        definition_id=body.definition,
        status=[s.value for s in body.status] if body.status else None,
        patient_key=patient_key,
        limit=body.limit,
        offset=body.offset,
        sort="age",
    )
    items = await _list_items(request, rows, names=True)
    return PathwayPage(total=total, limit=body.limit, offset=body.offset, items=items)


async def _states_if_answered(gateway: Gateway, ids: list[str]) -> dict[str, PathwayState]:
    """The states of the pathways that answer in time; a list never fails for a name."""
    answers = await asyncio.gather(*map(gateway.state, ids), return_exceptions=True)
    return {
        pathway_id: answer
        for pathway_id, answer in zip(ids, answers, strict=True)
        if isinstance(answer, PathwayState)
    }


async def _list_items(
    request: Request, rows: list[PathwayRow], names: bool
) -> list[PathwayListItem]:
    """Rows with their open handovers' next due time and wait, and (if asked) patient names
    from the pathways themselves (the read model holds no patient data)."""
    now = datetime.now(UTC)
    ids = [row.pathway_id for row in rows]
    times = await asyncio.to_thread(context.store(request).open_times, ids)
    states = await _states_if_answered(context.gateway(request), ids) if names else {}
    items = []
    for row in rows:
        due, ready = times.get(row.pathway_id, (None, None))
        state = states.get(row.pathway_id)
        items.append(
            PathwayListItem(
                **row.model_dump(),
                next_due=due,
                waited=Waited.of(now - ready) if ready is not None else None,
                patient_name=state.patient.name if state is not None else None,
            )
        )
    return items


@router.get(
    "/pathways/{pathway_id}", response_model=PathwayDetail, responses=api_errors(401, 403, 404, 503)
)
async def pathway(pathway_id: str, principal: Coordinator, request: Request) -> PathwayDetail:
    state = await context.gateway(request).state(pathway_id)
    events = await asyncio.to_thread(context.store(request).events, pathway_id)
    now = datetime.now(UTC)
    definition = state.definition
    return PathwayDetail(
        **PathwaySummary.of(state).model_dump(),
        definition=definition.id,
        version=definition.version,
        title=definition.title,
        patient=state.patient,
        started_at=state.started_at,
        ended_at=state.ended_at,
        held_since=state.held_since,
        steps=[
            StepProgress(
                id=s.id,
                title=s.title,
                status=state.steps[s.id].status,
                occurrences=state.steps[s.id].occurrences,
            )
            for s in definition.steps
            if s.id in state.steps
        ],
        handovers=[
            HandoverView.of(h, now)
            for h in sorted(state.handovers.values(), key=lambda h: (h.ready_at, h.id))
        ],
        escalations=state.escalations,
        notes=state.notes,
        lean=pathway_metrics(state, now),
        timeline=events,
    )


async def _command(
    request: Request,
    pathway_id: str,
    method: UpdateMethodMultiParam[[Any, Any], R],
    command: BaseModel,
    idempotency_key: str | None,
) -> R:
    """Apply a coordinator command; with a key, a retry is applied once and a different
    request under the same key is 422."""
    if idempotency_key is not None:
        name = getattr(method, "__name__", "update")
        body = command.model_dump(mode="json")
        actor = str(body.get("actor", ""))
        await asyncio.to_thread(
            context.idempotency(request).claim, actor, name, pathway_id, idempotency_key, body
        )
    basis = idempotency_key or secrets.token_hex(16)
    return await context.gateway(request).update(pathway_id, method, command, basis)


COMMAND_ERRORS = api_errors(400, 401, 403, 404, 408, 409, 413, 415, 422, 503)


@router.post("/pathways/{pathway_id}/reassign", response_model=Handover, responses=COMMAND_ERRORS)
async def reassign(
    pathway_id: str,
    body: ReassignRequest,
    principal: Coordinator,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Handover:
    """Hand a handover to another provider of its role (a new attempt)."""
    command = _validated(cmd.Reassign, body.model_dump(), principal)
    return await _command(request, pathway_id, PathwayWorkflow.reassign, command, idempotency_key)


@router.post("/pathways/{pathway_id}/extend", response_model=Handover, responses=COMMAND_ERRORS)
async def extend(
    pathway_id: str,
    body: ExtendRequest,
    principal: Coordinator,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Handover:
    """Move a handover's due time later, by a duration or to an instant."""
    command = _validated(cmd.ExtendDue, body.model_dump(), principal)
    return await _command(request, pathway_id, PathwayWorkflow.extend_due, command, idempotency_key)


def _validated(model: type[C], values: dict[str, Any], principal: Principal) -> C:
    """Build a command; its own rules (e.g. exactly one of by/until) answer 422."""
    try:
        return model.model_validate(values | {"actor": principal.actor})
    except ValidationError as error:
        raise ApiError(422, [e["msg"] for e in error.errors()]) from None


async def _pathway_command(
    request: Request,
    pathway_id: str,
    method: UpdateMethodMultiParam[[Any, Any], PathwaySummary],
    command: BaseModel,
    key: str | None,
) -> PathwaySummary:
    return await _command(request, pathway_id, method, command, key)


@router.post("/pathways/{pathway_id}/hold", response_model=PathwaySummary, responses=COMMAND_ERRORS)
async def hold(
    pathway_id: str,
    body: ReasonRequest,
    principal: Coordinator,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> PathwaySummary:
    """Pause the pathway's clocks (e.g. the patient is in hospital)."""
    command = _validated(cmd.HoldPathway, {"reason": body.reason}, principal)
    return await _pathway_command(
        request, pathway_id, PathwayWorkflow.hold, command, idempotency_key
    )


@router.post(
    "/pathways/{pathway_id}/resume", response_model=PathwaySummary, responses=COMMAND_ERRORS
)
async def resume(
    pathway_id: str,
    principal: Coordinator,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> PathwaySummary:
    command = _validated(cmd.ResumePathway, {}, principal)
    return await _pathway_command(
        request, pathway_id, PathwayWorkflow.resume, command, idempotency_key
    )


@router.post(
    "/pathways/{pathway_id}/cancel", response_model=PathwaySummary, responses=COMMAND_ERRORS
)
async def cancel(
    pathway_id: str,
    body: ReasonRequest,
    principal: Coordinator,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> PathwaySummary:
    """End the pathway; open handovers are cancelled and their providers told."""
    command = _validated(cmd.CancelPathway, {"reason": body.reason}, principal)
    return await _pathway_command(
        request, pathway_id, PathwayWorkflow.cancel, command, idempotency_key
    )


@router.post(
    "/pathways/{pathway_id}/notes", status_code=201, response_model=Note, responses=COMMAND_ERRORS
)
async def add_note(
    pathway_id: str,
    body: NoteRequest,
    principal: Coordinator,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Note:
    command = _validated(cmd.AddNote, {"text": body.text}, principal)
    return await _command(request, pathway_id, PathwayWorkflow.add_note, command, idempotency_key)


async def _escalation_command(
    request: Request,
    pathway_id: str,
    escalation_id: int,
    method: UpdateMethodMultiParam[[Any, Any], Escalation],
    body: EscalationRequest,
    principal: Principal,
    key: str | None,
) -> Escalation:
    values = {"escalation_id": escalation_id, "note": body.note}
    command = _validated(cmd.EscalationAction, values, principal)
    return await _command(request, pathway_id, method, command, key)


@router.post(
    "/pathways/{pathway_id}/escalations/{escalation_id}/acknowledge",
    response_model=Escalation,
    responses=COMMAND_ERRORS,
)
async def acknowledge(
    pathway_id: str,
    escalation_id: int,
    body: EscalationRequest,
    principal: Coordinator,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Escalation:
    method = PathwayWorkflow.acknowledge_escalation
    return await _escalation_command(
        request, pathway_id, escalation_id, method, body, principal, idempotency_key
    )


@router.post(
    "/pathways/{pathway_id}/escalations/{escalation_id}/resolve",
    response_model=Escalation,
    responses=COMMAND_ERRORS,
)
async def resolve(
    pathway_id: str,
    escalation_id: int,
    body: EscalationRequest,
    principal: Coordinator,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Escalation:
    method = PathwayWorkflow.resolve_escalation
    return await _escalation_command(
        request, pathway_id, escalation_id, method, body, principal, idempotency_key
    )


@router.get("/escalations", response_model=Inbox, responses=api_errors(401, 403, 503))
async def escalations(principal: Coordinator, request: Request) -> Inbox:
    """Unresolved escalations of running pathways (active or on hold), oldest first.

    Folded from the event store's escalation events: one indexed read, however many pathways.
    """
    running = [PathwayStatus.ACTIVE.value, PathwayStatus.ON_HOLD.value]
    events = await asyncio.to_thread(context.store(request).escalation_events, running)
    return Inbox(items=open_escalations(events))
