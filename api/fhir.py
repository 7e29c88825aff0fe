"""FHIR R4 for provider systems: read, search and update Tasks; read handover contracts.

Reads of one Task are strongly consistent (a Query on its pathway); searches use the read model
and so may lag a change by a moment. A provider only ever sees its own handovers: another
provider's Task is "not found", never "forbidden", so ids reveal nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from fhir.resources.R4B.task import Task
from pydantic import ValidationError

from api import context
from api.auth import Caller, Provider
from api.fhir_models import (
    BundleModel,
    CapabilityStatementModel,
    QuestionnaireModel,
    TaskModel,
    TaskUpdate,
)
from api.gateway import Gateway
from api.problems import FHIR_JSON, ApiError, fhir_errors
from api.tokens import Principal, PrincipalKind
from pathways import fhir
from pathways.catalogue import UnknownDefinition
from pathways.commands import ProviderCommand
from pathways.events import HandoverRow
from pathways.lifecycle import PROVIDER_MOVES
from pathways.state import Handover, PathwayState, TaskStatus, parse_task_id
from workflows.pathway import PathwayWorkflow

PROVIDER_STATUSES: frozenset[TaskStatus] = frozenset().union(*PROVIDER_MOVES.values())
"""The statuses a performer sets (FHIR Task life cycle); the orchestrator sets the rest."""

MAX_COUNT = 100
_IF_MATCH = re.compile(r'^(W/)?"?(\d+)"?$')


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


router = APIRouter(prefix="/fhir", tags=["FHIR R4"], default_response_class=FhirResponse)


def _etag(handover: Handover) -> dict[str, str]:
    return {"ETag": f'W/"{handover.version}"'}


@router.get("/metadata", response_model=CapabilityStatementModel, summary="CapabilityStatement")
def metadata(request: Request) -> FhirResponse:
    """What this server supports (no token needed, as FHIR clients expect)."""
    return FhirResponse(capability_statement(context.settings(request).base_url))


def capability_statement(base_url: str) -> dict[str, Any]:
    search = [
        ("owner", "reference", "Organization/{provider id}; defaults to the caller's"),
        ("status", "token", "comma-separated Task statuses"),
        ("_lastUpdated", "date", "gt<instant>: changed since"),
        ("_count", "number", f"page size, at most {MAX_COUNT}"),
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "software": {"name": "Pathway Orchestrator"},
        "implementation": {
            "description": "Pathway Orchestrator handovers",
            "url": f"{base_url}/fhir",
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "description": "Bearer tokens (Authorization: Bearer <token>), one per "
                    "provider organisation or coordinator, issued with `pathways token issue`.",
                },
                "resource": [
                    {
                        "type": "Task",
                        "versioning": "versioned-update",
                        "readHistory": False,
                        "updateCreate": False,
                        "interaction": [{"code": c} for c in ("read", "update", "search-type")],
                        "searchParam": [
                            {"name": name, "type": kind, "documentation": doc}
                            for name, kind, doc in search
                        ],
                    },
                    {"type": "Questionnaire", "interaction": [{"code": "read"}]},
                ],
            }
        ],
    }


async def _visible_handover(
    gateway: Gateway, principal: Principal, task_id: str
) -> tuple[PathwayState, Handover]:
    """The pathway state and handover behind a Task id, if the caller may see it (else 404)."""
    not_found = ApiError(404, [f"no Task {task_id}"])
    try:
        pathway_id, handover_id = parse_task_id(task_id)
    except ValueError:
        raise not_found from None
    try:
        state = await gateway.state(pathway_id)
    except ApiError as error:
        raise (not_found if error.status == 404 else error) from None
    handover = state.handovers.get(handover_id)
    if handover is None or not _may_see(principal, handover):
        raise not_found
    return state, handover


def _may_see(principal: Principal, handover: Handover) -> bool:
    return principal.kind is PrincipalKind.COORDINATOR or principal.subject == handover.provider_id


@router.get(
    "/Task/{task_id}",
    response_model=TaskModel,
    responses=fhir_errors(401, 404, 503),
    summary="Read one handover",
)
async def read_task(task_id: str, principal: Caller, request: Request) -> FhirResponse:
    state, handover = await _visible_handover(context.gateway(request), principal, task_id)
    body = fhir.task_resource(state, handover, context.settings(request).base_url)
    return FhirResponse(body, headers=_etag(handover))


def _owner(principal: Principal, owner: str | None) -> str:
    """The provider whose Tasks to search: a provider may only search its own."""
    wanted = owner.removeprefix("Organization/") if owner else None
    if principal.kind is PrincipalKind.PROVIDER:
        if wanted not in (None, principal.subject):
            raise ApiError(403, ["a provider may only search its own Tasks"])
        return principal.subject
    if not wanted:
        raise ApiError(400, ["owner=Organization/{id} is required for a coordinator search"])
    return wanted


def _statuses(status: str | None) -> list[str] | None:
    if not status:
        return None
    values = [s.strip() for s in status.split(",") if s.strip()]
    known = {s.value for s in TaskStatus}
    unknown = [s for s in values if s not in known]
    if unknown:
        raise ApiError(400, [f"unknown Task status {s!r}" for s in unknown])
    return values


def _updated_after(last_updated: str | None) -> datetime | None:
    if not last_updated:
        return None
    if not last_updated.startswith("gt"):
        raise ApiError(400, ["_lastUpdated supports only gt<instant>, e.g. gt2026-01-01T00:00:00Z"])
    try:
        moment = datetime.fromisoformat(last_updated[2:].replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, ["_lastUpdated must be gt followed by an ISO 8601 instant"]) from None
    if moment.tzinfo is None:
        raise ApiError(400, ["_lastUpdated needs a time zone, e.g. Z"])
    return moment


async def _render_rows(
    gateway: Gateway, rows: list[HandoverRow], provider_id: str, base_url: str
) -> list[dict[str, Any]]:
    """Full, current Tasks for read-model rows: one Query per pathway, in parallel. A row the
    read model has not yet caught up with (the handover moved to another provider) is left out."""
    states = await gateway.states(sorted({row.pathway_id for row in rows}))
    tasks = []
    for row in rows:
        state = states.get(row.pathway_id)
        handover = state.handovers.get(row.handover_id) if state else None
        if state is not None and handover is not None and handover.provider_id == provider_id:
            tasks.append(fhir.task_resource(state, handover, base_url))
    return tasks


def _link(base_url: str, params: dict[str, Any], relation: str, offset: int) -> dict[str, str]:
    query = urlencode({k: v for k, v in (params | {"_offset": offset}).items() if v is not None})
    return {"relation": relation, "url": f"{base_url}/fhir/Task?{query}"}


@router.get(
    "/Task",
    response_model=BundleModel,
    responses=fhir_errors(400, 401, 403, 503),
    summary="Search a provider's handovers",
)
async def search_tasks(
    principal: Caller,
    request: Request,
    owner: Annotated[str | None, Query(description="Organization/{provider id}")] = None,
    status: Annotated[str | None, Query(description="e.g. requested,accepted")] = None,
    last_updated: Annotated[
        str | None, Query(alias="_lastUpdated", description="gt<instant>")
    ] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=MAX_COUNT)] = 20,
    offset: Annotated[int, Query(alias="_offset", ge=0, le=1_000_000)] = 0,
) -> FhirResponse:
    provider_id = _owner(principal, owner)
    statuses = _statuses(status)
    after = _updated_after(last_updated)
    store = context.store(request)
    rows, total = await asyncio.to_thread(
        store.search_tasks, provider_id, statuses, after, count, offset
    )
    base_url = context.settings(request).base_url
    tasks = await _render_rows(context.gateway(request), rows, provider_id, base_url)
    params = {
        "owner": f"Organization/{provider_id}",
        "status": status,
        "_lastUpdated": last_updated,
        "_count": count,
    }
    links = [_link(base_url, params, "self", offset)]
    if offset + count < total:
        links.append(_link(base_url, params, "next", offset + count))
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base_url}/fhir/Task/{task['id']}",
                "resource": task,
                "search": {"mode": "match"},
            }
            for task in tasks
        ],
    }
    return FhirResponse(bundle)


def _parse_update(raw: bytes, task_id: str) -> dict[str, Any]:
    """The PUT body as a validated FHIR R4 Task dict; 400 with every problem otherwise."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, ["the body is not valid JSON"]) from None
    if not isinstance(body, dict) or body.get("resourceType") != "Task":
        raise ApiError(400, ["the body must be a FHIR Task resource"])
    if body.get("id") != task_id:
        raise ApiError(400, [f"the Task id in the body must be {task_id!r}, as in the URL"])
    try:
        Task.model_validate(body)
    except ValidationError as error:
        problems = [
            f"{'.'.join(['Task', *map(str, e['loc'])])}: {e['msg']}"
            for e in error.errors(include_input=False, include_url=False)
        ]
        raise ApiError(400, problems or ["the body is not a valid FHIR R4 Task"]) from None
    return body


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    match = _IF_MATCH.match(if_match.strip())
    if match is None:
        raise ApiError(400, ['If-Match must be a version ETag such as W/"3"'])
    return int(match[2])


def _command(
    body: dict[str, Any], handover: Handover, principal: Principal, version: int | None
) -> ProviderCommand:
    status = body["status"]
    if status not in {s.value for s in PROVIDER_STATUSES}:
        raise ApiError(409, [f"a provider cannot set a Task to {status!r}"])
    try:
        output = fhir.outputs_from_task(body)
    except fhir.OutputError as error:
        raise ApiError(400, error.problems) from None
    reason = (body.get("statusReason") or {}).get("text")
    try:
        return ProviderCommand(
            handover_id=handover.id,
            provider_id=principal.subject,
            status=TaskStatus(status),
            output=output,
            reason=reason,
            expected_version=version,
            actor=principal.actor,
        )
    except ValidationError as error:  # the engine's bounds (size of output, statusReason)
        raise ApiError(422, [e["msg"] for e in error.errors(include_input=False)]) from None


@router.put(
    "/Task/{task_id}",
    response_model=TaskModel,
    responses=fhir_errors(400, 401, 403, 404, 409, 422, 503),
    summary="Move a handover: accept, start, hold, complete (with data), reject or fail",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {FHIR_JSON: {"schema": TaskUpdate.model_json_schema()}},
        }
    },
)
async def update_task(
    task_id: str,
    principal: Provider,
    request: Request,
    if_match: Annotated[str | None, Header(description='W/"version" from the ETag')] = None,
) -> FhirResponse:
    body = _parse_update(await request.body(), task_id)
    version = _expected_version(if_match)
    gateway = context.gateway(request)
    state, handover = await _visible_handover(gateway, principal, task_id)
    command = _command(body, handover, principal, version)
    updated: Handover = await gateway.update(
        state.pathway_id, PathwayWorkflow.provider_update, command, str(handover.version)
    )
    seen = _as_seen_by(principal, command, updated)
    rendered = fhir.task_resource(state, seen, context.settings(request).base_url)
    return FhirResponse(rendered, headers=_etag(seen))


def _as_seen_by(principal: Principal, command: ProviderCommand, handover: Handover) -> Handover:
    """After a rejection or failure the broker hands the work to the next provider: the caller
    sees its own final word on the Task, not who has it now."""
    if handover.provider_id == principal.subject:
        return handover
    return handover.model_copy(
        update={
            "provider_id": principal.subject,
            "status": command.status,
            "status_reason": command.reason,
            "output": {},
        }
    )


@router.get(
    "/Questionnaire/{questionnaire_id}",
    response_model=QuestionnaireModel,
    responses=fhir_errors(401, 404),
    summary="A step's handover contract",
)
def read_questionnaire(questionnaire_id: str, principal: Caller, request: Request) -> FhirResponse:
    catalogue = context.catalogue(request)
    not_found = ApiError(404, [f"no Questionnaire {questionnaire_id}"])
    definition_id, _, rest = questionnaire_id.partition(".")
    version, _, step_id = rest.partition(".")
    if not version.isdigit() or not step_id:
        raise not_found
    try:
        definition = catalogue.get(definition_id, int(version))
    except UnknownDefinition:
        raise not_found from None
    step = next((s for s in definition.steps if s.id == step_id), None)
    if step is None:
        raise not_found
    return FhirResponse(
        fhir.questionnaire_resource(definition, step, context.settings(request).base_url)
    )
