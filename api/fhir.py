"""FHIR R4 for provider systems: read, search and update Tasks; read handover contracts.

Reads of one Task are strongly consistent (a Query on its pathway); searches are served from the
read model alone (each row keeps its Task as rendered at its latest version), so they may lag a
change by a moment but cost one database read a page and answer while a worker is down.
A provider only ever sees its own handovers: another provider's Task is "not found", never
"forbidden", so ids reveal nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from fhir.resources.R4B.task import Task
from pydantic import ValidationError

from api import context
from api.auth import provider, scoped
from api.fhir_models import (
    BundleModel,
    CapabilityStatementModel,
    QuestionnaireModel,
    TaskModel,
    TaskUpdate,
)
from api.gateway import Gateway
from api.problems import FHIR_JSON, ApiError, fhir_errors, refuse_unknown_parameters
from api.tokens import Principal, PrincipalKind
from pathways import fhir
from pathways.catalogue import UnknownDefinition
from pathways.commands import ProviderCommand
from pathways.contract import check_fields
from pathways.events import HandoverRow
from pathways.lifecycle import PROVIDER_MOVES
from pathways.state import Handover, PathwayState, TaskStatus, parse_task_id
from pathways.subscriptions import subscription_capabilities
from workflows.pathway import PathwayWorkflow

PROVIDER_STATUSES: frozenset[TaskStatus] = frozenset().union(*PROVIDER_MOVES.values())
"""The statuses a performer sets (FHIR Task life cycle); the orchestrator sets the rest."""

MAX_COUNT = 100
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SEARCH_PARAMETERS = {"owner", "status", "_lastUpdated", "_count", "_offset", "_cursor"}
"""Task search parameters; any other is refused unless `Prefer: handling=lenient`."""


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
        ("_lastUpdated", "date", "gt, ge, lt or le<instant>; repeat for a range"),
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
                    "service": [{"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}]}],
                    "extension": [
                        {
                            "url": OAUTH_URIS,
                            "extension": [{"url": "token", "valueUri": f"{base_url}/auth/token"}],
                        }
                    ],
                    "description": "SMART Backend Services (client_credentials, private_key_jwt; "
                    "see /fhir/.well-known/smart-configuration), or Bearer tokens issued with "
                    "`pathways token issue`, one per provider organisation or coordinator.",
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
                    *subscription_capabilities(base_url),
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
async def read_task(
    task_id: str, principal: Annotated[Principal, scoped("system/Task.r")], request: Request
) -> FhirResponse:
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


def _updated_bounds(values: list[str] | None) -> list[tuple[str, datetime]]:
    """_lastUpdated values (gt, ge, lt or le, then an instant with a time zone), all applied."""
    bounds = []
    for value in values or []:
        prefix, instant = value[:2], value[2:]
        if prefix not in ("gt", "ge", "lt", "le"):
            raise ApiError(
                400, ["_lastUpdated needs a prefix gt, ge, lt or le, e.g. gt2026-01-01T00:00:00Z"]
            )
        try:
            moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC)
        except (ValueError, OverflowError):
            raise ApiError(
                400, [f"_lastUpdated must be {prefix} followed by an ISO 8601 instant"]
            ) from None
        if moment.tzinfo is None:
            raise ApiError(400, ["_lastUpdated needs a time zone, e.g. Z"])
        bounds.append((prefix, moment))
    return bounds


async def _page_tasks(
    gateway: Gateway,
    found: list[tuple[HandoverRow, dict[str, Any] | None]],
    provider_id: str,
    base_url: str,
) -> list[dict[str, Any]]:
    """The page's Tasks as the read model rendered them, so entries, `total` and `next` agree
    and a page costs one database read; only a row recorded before Tasks were kept there is
    rendered from its pathway (a Query)."""
    missing = [row for row, task in found if task is None]
    states = await gateway.states(sorted({row.pathway_id for row in missing})) if missing else {}
    tasks = []
    for row, task in found:
        if task is not None:
            tasks.append(task)
            continue
        state = states.get(row.pathway_id)
        handover = state.handovers.get(row.handover_id) if state else None
        if state is not None and handover is not None and handover.provider_id == provider_id:
            tasks.append(fhir.task_resource(state, handover, base_url))
    return tasks


def _link(base_url: str, params: dict[str, Any], relation: str) -> dict[str, str]:
    query = urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
    return {"relation": relation, "url": f"{base_url}/fhir/Task?{query}"}


def _cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """A next link's `_cursor`: the last change and Task id of the previous page's last row."""
    if cursor is None:
        return None
    moment, _, task_id = cursor.partition("|")
    try:
        after = datetime.fromisoformat(moment)
        if after.tzinfo is None or not task_id:
            raise ValueError(cursor)
        return after.astimezone(UTC), task_id
    except (ValueError, OverflowError):
        raise ApiError(400, ["_cursor is not one this server wrote: follow the next link"]) from None


@router.get(
    "/Task",
    response_model=BundleModel,
    responses=fhir_errors(400, 401, 403, 503),
    summary="Search a provider's handovers",
)
async def search_tasks(
    principal: Annotated[Principal, scoped("system/Task.s")],
    request: Request,
    owner: Annotated[str | None, Query(description="Organization/{provider id}")] = None,
    status: Annotated[str | None, Query(description="e.g. requested,accepted")] = None,
    last_updated: Annotated[
        list[str] | None,
        Query(
            alias="_lastUpdated",
            max_length=4,
            description="gt, ge, lt or le followed by an instant; repeat for a range",
        ),
    ] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=MAX_COUNT)] = 20,
    offset: Annotated[int, Query(alias="_offset", ge=0, le=1_000_000)] = 0,
    cursor: Annotated[
        str | None,
        Query(alias="_cursor", max_length=200, description="from a next link: where it goes on"),
    ] = None,
) -> FhirResponse:
    refuse_unknown_parameters(request, SEARCH_PARAMETERS)
    provider_id = _owner(principal, owner)
    statuses = _statuses(status)
    bounds = _updated_bounds(last_updated)
    after = _cursor(cursor)
    store = context.store(request)
    found, total = await asyncio.to_thread(
        store.search_task_resources, provider_id, statuses, bounds, count + 1, offset, after
    )
    more, found = len(found) > count, found[:count]
    base_url = context.settings(request).base_url
    tasks = await _page_tasks(context.gateway(request), found, provider_id, base_url)
    params = {
        "owner": f"Organization/{provider_id}",
        "status": status,
        "_lastUpdated": last_updated,
        "_count": count,
    }
    links = [_link(base_url, params | {"_cursor": cursor, "_offset": offset or None}, "self")]
    if more:  # continue after this page's last row: stable while rows change between pages
        last = found[-1][0]
        next_cursor = f"{last.updated_at.isoformat()}|{last.task_id}"
        links.append(_link(base_url, params | {"_cursor": next_cursor}, "next"))
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


def _parse_update(raw: bytes, task_id: str) -> tuple[dict[str, Any], list[str], set[int]]:
    """The PUT body as a FHIR Task dict, its FHIR type problems, and the positions of the
    outputs those problems are in (their data is left out of the contract check).

    Only a body that is not a Task at all stops here (400); type problems are returned so that
    one answer can list them together with every contract problem in the other outputs.
    """
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, ["the body is not valid JSON"]) from None
    if not isinstance(body, dict) or body.get("resourceType") != "Task":
        raise ApiError(400, ["the body must be a FHIR Task resource"])
    if body.get("id") != task_id:
        raise ApiError(400, [f"the Task id in the body must be {task_id!r}, as in the URL"])
    try:
        Task.model_validate(body)
    except ValidationError as error:
        errors = error.errors(include_input=False, include_url=False)
        problems = [f"{_position(e['loc'])}: {e['msg']}" for e in errors]
        bad_outputs = {
            e["loc"][1]
            for e in errors
            if len(e["loc"]) > 1 and e["loc"][0] == "output" and isinstance(e["loc"][1], int)
        }
        return body, problems or ["the body is not a valid FHIR R4 Task"], bad_outputs
    return body, [], set()


def _position(loc: tuple[int | str, ...]) -> str:
    """A FHIR path written one way everywhere: Task.output[2].valueDate."""
    path = "Task"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


_VERSION = re.compile(r'^(?:W/)?"?([0-9]{1,9})"?$')


def _expected_version(if_match: str | None) -> int | None:
    """The version an If-Match asks for; None for no header or `*` (any current version)."""
    if if_match is None or if_match.strip() == "*":
        return None
    match = _VERSION.match(if_match.strip())
    if match is None:
        raise ApiError(400, ['If-Match must be a version ETag such as W/"3", or *'])
    return int(match[1])


def _command(
    body: dict[str, Any],
    state: PathwayState,
    handover: Handover,
    principal: Principal,
    version: int | None,
    type_problems: list[str],
    bad_outputs: set[int],
) -> ProviderCommand:
    """The provider command in a PUT, or one refusal listing every problem found in the body:
    FHIR type errors and the step's contract problems in the other outputs together."""
    status = body.get("status")
    if not isinstance(status, str) or status not in {s.value for s in PROVIDER_STATUSES}:
        if type_problems:
            raise ApiError(400, type_problems)
        raise ApiError(409, [f"a provider cannot set a Task to {status!r}"])
    if not type_problems:
        try:
            output = fhir.outputs_from_task(body)
        except fhir.OutputError as error:
            raise ApiError(400, error.problems) from None
    else:
        output, problems = _readable_outputs(body, bad_outputs)
        if status == "completed":
            skipped = {_output_name(body["output"][i]) for i in bad_outputs}
            problems += _contract_problems(state, handover, output, skipped)
        raise ApiError(400, [*type_problems, *problems])
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


def _readable_outputs(
    body: dict[str, Any], bad_outputs: set[int]
) -> tuple[dict[str, Any], list[str]]:
    """Handover data from the outputs without type errors, and their own problems, each named
    by its position in the body."""
    outputs = body.get("output")
    data: dict[str, Any] = {}
    problems: list[str] = []
    for index, element in enumerate(outputs if isinstance(outputs, list) else []):
        if index in bad_outputs:
            continue
        try:
            read = fhir.outputs_from_task({"output": [element]})
        except fhir.OutputError as error:
            problems += [p.replace("Task.output[0]", f"Task.output[{index}]") for p in error.problems]
            continue
        for name, value in read.items():
            if name in data:
                problems.append(f"Task.output[{index}] repeats field {name!r}")
            data[name] = value
    return data, problems


def _output_name(element: Any) -> str | None:
    name = (element.get("type") or {}).get("text") if isinstance(element, dict) else None
    return name if isinstance(name, str) else None


def _contract_problems(
    state: PathwayState, handover: Handover, output: dict[str, Any], skipped: set[str | None]
) -> list[str]:
    """The step contract's problems with the readable outputs; a field whose output has a type
    error is not reported again as missing."""
    _, problems = check_fields(state.definition.step(handover.step_id), output)
    return [problem for name, problem in problems if name not in skipped]


async def _own_handover(
    gateway: Gateway, principal: Principal, task_id: str
) -> tuple[PathwayState, Handover]:
    """The handover a provider PUTs to: its current one, or one it had an attempt at (a retry
    of its own reject or fail, or the loser of a race, are answered by the engine)."""
    not_found = ApiError(404, [f"no Task {task_id}"])
    try:
        pathway_id, handover_id = parse_task_id(task_id)
        state = await gateway.state(pathway_id)
    except ValueError:
        raise not_found from None
    except ApiError as error:
        raise (not_found if error.status == 404 else error) from None
    handover = state.handovers.get(handover_id)
    if handover is None or not _had_it(principal, handover):
        raise not_found
    return state, handover


def _had_it(principal: Principal, handover: Handover) -> bool:
    """The provider has, or had, an attempt at the handover."""
    return handover.provider_id == principal.subject or any(
        a.provider_id == principal.subject for a in handover.attempts
    )


@router.put(
    "/Task/{task_id}",
    response_model=TaskModel,
    responses=fhir_errors(400, 401, 403, 404, 409, 412, 413, 415, 422, 503),
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
    principal: Annotated[Principal, scoped("system/Task.u", provider)],
    request: Request,
    if_match: Annotated[
        str | None, Header(max_length=40, description='W/"version" from the ETag, or *')
    ] = None,
) -> FhirResponse:
    """A stale If-Match is 412; a retry of the provider's own last move is the same 200 (also
    after a reject or fail handed the work on); a move on a handover that has moved on
    (e.g. the loser of a complete-vs-fail race) is 409."""
    body, type_problems, bad_outputs = _parse_update(await request.body(), task_id)
    version = _expected_version(if_match)
    gateway = context.gateway(request)
    state, handover = await _own_handover(gateway, principal, task_id)
    command = _command(body, state, handover, principal, version, type_problems, bad_outputs)
    try:
        updated: Handover = await gateway.update(
            state.pathway_id, PathwayWorkflow.provider_update, command, str(handover.version)
        )
    except ApiError as error:
        raise await _explained(gateway, principal, task_id, version, error) from None
    seen = _as_seen_by(principal, command, updated)
    rendered = fhir.task_resource(state, seen, context.settings(request).base_url)
    return FhirResponse(rendered, headers=_etag(seen))


async def _explained(
    gateway: Gateway, principal: Principal, task_id: str, version: int | None, error: ApiError
) -> ApiError:
    """A refusal in FHIR's terms: a stale If-Match is 412, a handover that has moved on from
    this provider is 409 (not 404: the provider knows the Task)."""
    if error.status not in (404, 409):
        return error
    try:
        _, now = await _own_handover(gateway, principal, task_id)
    except ApiError:
        return error
    if version is not None and now.version != version:
        return ApiError(
            412, [f"the Task is at version {now.version}, not {version}: read it and retry"]
        )
    if now.provider_id != principal.subject:
        return ApiError(
            409, [f"Task {task_id} is no longer with you: your attempt ended, another provider "
                  "has it now"]
        )
    return error


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
def read_questionnaire(
    questionnaire_id: str,
    principal: Annotated[Principal, scoped("system/Questionnaire.r")],
    request: Request,
) -> FhirResponse:
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
