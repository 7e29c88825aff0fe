"""FHIR R4 for provider systems: read, search and update Tasks, read their history (and one
version); read handover contracts.

Reads of one Task are strongly consistent (a Query on its pathway); searches are served from the
read model alone (each row keeps its Task as rendered at its latest version), so they may lag a
change by a moment but cost one database read a page and answer while a worker is down. History
and vread are served from the Task versions the workflow recorded.
A provider only ever sees its own handovers: another provider's Task is "not found", never
"forbidden", so ids reveal nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from fhir.resources.R4B.task import Task
from pydantic import ValidationError

from activities.store import EventStore
from api import context
from api.auth import provider, scoped
from api.fhir_models import (
    BundleModel,
    CapabilityStatementModel,
    CarePlanModel,
    HistoryBundleModel,
    QuestionnaireModel,
    TaskModel,
    TaskUpdate,
)
from api.gateway import Gateway
from api.problems import FHIR_JSON, ApiError, fhir_errors, lenient, refuse_unknown_parameters
from api.tokens import Principal, PrincipalKind
from pathways import fhir
from pathways.catalogue import Catalogue, UnknownDefinition
from pathways.commands import ProviderCommand
from pathways.contract import check_fields
from pathways.events import HandoverRow
from pathways.lifecycle import PROVIDER_MOVES
from pathways.state import Handover, PathwayState, TaskStatus, parse_task_id
from pathways.subscriptions import subscription_capabilities
from workflows.messages import ProviderAnswer
from workflows.pathway import PathwayWorkflow

PROVIDER_STATUSES: frozenset[TaskStatus] = frozenset().union(*PROVIDER_MOVES.values())
"""The statuses a performer sets (FHIR Task life cycle); the orchestrator sets the rest."""

MAX_COUNT = 100
MAX_IDS = 100
MAX_CODES = 20
MAX_HISTORY = 1000
"""Versions of one Task a history reads (newest first); a handover has a few dozen at most."""
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SEARCH_PARAMETERS = {
    "owner", "owner:identifier", "status", "code", "_id", "_lastUpdated", "_count", "_sort",
    "_include", "_offset", "_cursor",
}
"""Task search parameters; any other is refused unless `Prefer: handling=lenient`."""
HISTORY_PARAMETERS = {"_count", "_since", "_cursor"}
SORTS = {"_lastUpdated": False, "-_lastUpdated": True}
"""_sort values and whether each puts the newest change first."""
MODEL_FAMILY = "fhir.resources R4B models (pydantic)"
"""The one FHIR model family Task updates are validated with (and the tests check answers with)."""
SPEC = "http://hl7.org/fhir/SearchParameter"
TASK_SEARCH: list[tuple[str, str, str | None, str]] = [
    ("owner", "reference", f"{SPEC}/Task-owner",
     "Organization/{provider id}, or owner:identifier=https://fhir.nhs.uk/Id/"
     "ods-organization-code|{ODS code}; defaults to the caller's organisation"),
    ("status", "token", f"{SPEC}/Task-status", "comma-separated Task statuses"),
    ("code", "token", f"{SPEC}/Task-code",
     f"the step: [{fhir.STEP_SYSTEM}|]step id, comma-separated, at most {MAX_CODES}"),
    ("_id", "token", f"{SPEC}/Resource-id", f"comma-separated Task ids, at most {MAX_IDS}"),
    ("_lastUpdated", "date", f"{SPEC}/Resource-lastUpdated",
     "gt, ge, lt or le<instant>; repeat for a range"),
    ("_count", "number", None, f"page size, at most {MAX_COUNT}"),
    ("_sort", "string", None, "_lastUpdated (oldest change first, the default) or -_lastUpdated"),
]
"""The Task search parameters the CapabilityStatement lists: (name, type, definition, doc)."""
NO_FOCUS = (
    "Task.focus is not populated: a handover Task acts on no other resource this server holds "
    "(the referral it fulfils is the CarePlan in basedOn), so _include=Task:focus is refused "
    "(400), or ignored with Prefer: handling=lenient"
)
PATHWAY_ID = re.compile(r"pw-[A-Za-z0-9-]{1,61}")
"""A CarePlan id is a pathway id (and a FHIR id: at most 64 characters)."""
CAREPLAN_DOC = (
    "The pathway a Task is basedOn (CarePlan/{pathway id}, identifier urn:pathways:pathway), "
    "read-only: status, title, subject, author, and activity for the Tasks the caller may read. "
    "A provider reads it only while it holds or once held a Task of the pathway; else 404"
)


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


router = APIRouter(prefix="/fhir", tags=["FHIR R4"], default_response_class=FhirResponse)


def _etag(handover: Handover) -> dict[str, str]:
    return {"ETag": f'W/"{handover.version}"', "Last-Modified": _http_date(handover.updated_at)}


def _http_date(moment: datetime) -> str:
    """An HTTP-date (RFC 9110) for Last-Modified."""
    return format_datetime(moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC),
                           usegmt=True)


@router.get("/metadata", response_model=CapabilityStatementModel, summary="CapabilityStatement")
def metadata(request: Request) -> FhirResponse:
    """What this server supports (no token needed, as FHIR clients expect)."""
    return FhirResponse(capability_statement(context.settings(request).base_url))


def _search_param(name: str, kind: str, definition: str | None, doc: str) -> dict[str, str]:
    param = {"name": name, "type": kind, "documentation": doc}
    return param | {"definition": definition} if definition else param


def capability_statement(base_url: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "software": {"name": "Pathway Orchestrator"},
        "implementation": {
            "description": "Pathway Orchestrator handovers. Resources are FHIR R4 (4.0.1) JSON; "
            f"Task updates are validated with {MODEL_FAMILY}, the one model family used.",
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
                        "documentation": NO_FOCUS,
                        "versioning": "versioned-update",
                        "readHistory": True,
                        "updateCreate": False,
                        "interaction": [
                            {"code": c}
                            for c in ("read", "vread", "update", "history-instance", "search-type")
                        ],
                        "searchParam": [_search_param(*param) for param in TASK_SEARCH],
                    },
                    {"type": "CarePlan", "documentation": CAREPLAN_DOC,
                     "interaction": [{"code": "read"}]},
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
    return await _task_handover(gateway, task_id, lambda h: _may_see(principal, h))


async def _task_handover(
    gateway: Gateway, task_id: str, allowed: Callable[[Handover], bool]
) -> tuple[PathwayState, Handover]:
    """The pathway state and handover behind a Task id, if `allowed` (else 404, as for a Task
    id no pathway has)."""
    pathway_id, handover_id = _task_ids(task_id)
    try:
        state = await gateway.state(pathway_id)
    except ApiError as error:
        raise (_no_task(task_id) if error.status == 404 else error) from None
    handover = state.handovers.get(handover_id)
    if handover is None or not allowed(handover):
        raise _no_task(task_id)
    return state, handover


def _task_ids(task_id: str) -> tuple[str, str]:
    """(pathway id, handover id) of a Task id; 404 for an id no Task can have."""
    try:
        return parse_task_id(task_id)
    except ValueError:
        raise _no_task(task_id) from None


def _no_task(task_id: str) -> ApiError:
    return ApiError(404, [f"no Task {task_id}"])


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


@router.get(
    "/CarePlan/{careplan_id}",
    response_model=CarePlanModel,
    responses=fhir_errors(401, 404, 503),
    summary="The pathway a Task is basedOn",
)
async def read_careplan(
    careplan_id: str, principal: Annotated[Principal, scoped("system/CarePlan.r")], request: Request
) -> FhirResponse:
    """Visible to a coordinator, and to a provider that holds or held a Task of the pathway
    (else 404, as for a Task); `activity` lists only the Tasks the caller may read now."""
    not_found = ApiError(404, [f"no CarePlan {careplan_id[:64]}"])
    if not PATHWAY_ID.fullmatch(careplan_id):
        raise not_found
    try:
        state = await context.gateway(request).state(careplan_id)
    except ApiError as error:
        raise (not_found if error.status == 404 else error) from None
    handovers = list(state.handovers.values())
    if principal.kind is not PrincipalKind.COORDINATOR and not any(
        principal.subject in {h.provider_id, *(a.provider_id for a in h.attempts)}
        for h in handovers
    ):
        raise not_found
    visible = [h for h in handovers if _may_see(principal, h)]
    return FhirResponse(fhir.careplan_resource(state, visible))


def _owner(
    principal: Principal, owner: str | None, ods: str | None, catalogue: Catalogue
) -> str | None:
    """The provider whose Tasks to search (a provider may only search its own); None when an
    ODS code names no provider, so nothing matches."""
    wanted = {owner.removeprefix("Organization/")} if owner else None
    if ods is not None:
        named = _ods_providers(catalogue, ods)
        wanted = named if wanted is None else wanted & named
    if principal.kind is PrincipalKind.PROVIDER:
        if wanted is not None and principal.subject not in wanted:
            raise ApiError(403, ["a provider may only search its own Tasks"])
        return principal.subject
    if wanted is None:
        raise ApiError(400, ["owner=Organization/{id} is required for a coordinator search"])
    if len(wanted) > 1:
        raise ApiError(400, ["owner:identifier names several providers: search by "
                             "owner=Organization/{id}"])
    return next(iter(wanted), None)


def _ods_providers(catalogue: Catalogue, token: str) -> set[str]:
    """The ids of the providers whose ODS code is `token` (system|code, system optional)."""
    system, bar, code = token.rpartition("|")
    if not code or len(token) > 200 or (bar and system != fhir.ODS_SYSTEM):
        raise ApiError(400, [f"owner:identifier must be {fhir.ODS_SYSTEM}|{{ODS code}}"])
    found = set()
    for definition in catalogue.all_versions():
        members = (p for role in definition.roles for p in role.providers)
        for organisation in (definition.lead_provider, *members):
            if organisation.ods_code == code.upper():
                found.add(organisation.id)
    return found


_TOKEN = re.compile(r"^[A-Za-z0-9\-.]{1,120}$")


def _codes(code: str | None) -> list[str] | None:
    """The step ids a `code` search asks for ([system|]code, comma-separated); a code of
    another system can match no Task, so it is dropped (and may leave nothing to match)."""
    if code is None:
        return None
    tokens = [t.strip() for t in code.split(",")]
    if len(tokens) > MAX_CODES or not all(tokens):
        raise ApiError(400, [f"code takes 1 to {MAX_CODES} comma-separated [system|]code tokens"])
    steps = []
    for token in tokens:
        system, bar, value = token.rpartition("|")
        if not _TOKEN.match(value):
            raise ApiError(400, ["code: each token is [system|]code, the code a step id"])
        if not bar or system == fhir.STEP_SYSTEM:
            steps.append(value)
    return steps


def _ids(ids: str | None) -> list[str] | None:
    if ids is None:
        return None
    values = [v.strip() for v in ids.split(",")]
    if len(values) > MAX_IDS or not all(_TOKEN.match(v) for v in values):
        raise ApiError(400, [f"_id takes 1 to {MAX_IDS} comma-separated Task ids"])
    return values


def _newest_first(sort: str | None) -> bool:
    if sort is None:
        return False
    if sort not in SORTS:
        raise ApiError(400, ["_sort must be _lastUpdated or -_lastUpdated (one sort key)"])
    return SORTS[sort]


def _include(request: Request, include: list[str] | None) -> None:
    """No include is supported: Tasks here have no focus (see NO_FOCUS)."""
    if include and not lenient(request.headers.get("prefer")):
        raise ApiError(400, [f"_include={include[0][:40]!r} is not supported: {NO_FOCUS}"])


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
    owner: Annotated[
        str | None, Query(max_length=200, description="Organization/{provider id}")
    ] = None,
    owner_identifier: Annotated[
        str | None,
        Query(alias="owner:identifier", max_length=200,
              description=f"{fhir.ODS_SYSTEM}|{{ODS code}}"),
    ] = None,
    status: Annotated[
        str | None, Query(max_length=300, description="e.g. requested,accepted")
    ] = None,
    code: Annotated[
        str | None, Query(max_length=2000, description=f"[{fhir.STEP_SYSTEM}|]step id, ...")
    ] = None,
    ids: Annotated[
        str | None, Query(alias="_id", max_length=20_000, description="Task ids, comma-separated")
    ] = None,
    last_updated: Annotated[
        list[str] | None,
        Query(
            alias="_lastUpdated",
            max_length=4,
            description="gt, ge, lt or le followed by an instant; repeat for a range",
        ),
    ] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=MAX_COUNT)] = 20,
    sort: Annotated[
        str | None, Query(alias="_sort", max_length=40, description="_lastUpdated or -_lastUpdated")
    ] = None,
    include: Annotated[
        list[str] | None, Query(alias="_include", max_length=10, description="not supported")
    ] = None,
    offset: Annotated[int, Query(alias="_offset", ge=0, le=1_000_000)] = 0,
    cursor: Annotated[
        str | None,
        Query(alias="_cursor", max_length=200, description="from a next link: where it goes on"),
    ] = None,
) -> FhirResponse:
    refuse_unknown_parameters(request, SEARCH_PARAMETERS)
    _include(request, include)
    provider_id = _owner(principal, owner, owner_identifier, context.catalogue(request))
    statuses, steps, task_ids = _statuses(status), _codes(code), _ids(ids)
    bounds = _updated_bounds(last_updated)
    newest_first = _newest_first(sort)
    after = _cursor(cursor)
    base_url = context.settings(request).base_url
    found: list[tuple[HandoverRow, dict[str, Any] | None]] = []
    total = 0
    if provider_id is not None:
        found, total = await asyncio.to_thread(
            context.store(request).search_task_resources, provider_id, statuses, bounds,
            count + 1, offset, after, steps=steps, task_ids=task_ids, newest_first=newest_first,
        )
    more, found = len(found) > count, found[:count]
    tasks = await _page_tasks(context.gateway(request), found, provider_id or "", base_url)
    params = {
        "owner": f"Organization/{provider_id}" if provider_id else None,
        "owner:identifier": owner_identifier if provider_id is None else None,
        "status": status,
        "code": code,
        "_id": ids,
        "_lastUpdated": last_updated,
        "_sort": sort,
        "_count": count,
    }
    links = [_link(base_url, params | {"_cursor": cursor, "_offset": offset or None}, "self")]
    if more:  # continue after this page's last row: stable while rows change between pages
        last = found[-1][0]
        next_cursor = f"{last.updated_at.isoformat()}|{last.task_id}"
        links.append(_link(base_url, params | {"_cursor": next_cursor}, "next"))
    entries = [
        {"fullUrl": fhir.task_url(base_url, task["id"]), "resource": task,
         "search": {"mode": "match"}}
        for task in tasks
    ]
    return FhirResponse(fhir.searchset(entries, total, links))


# --- history and vread: every version the workflow recorded -----------------------------------


def _visible_versions(
    store: EventStore, principal: Principal, task_id: str
) -> tuple[list[tuple[int, dict[str, Any]]], int | None]:
    """The Task's recorded versions the caller may see, newest first, and the version it was
    created at (if recorded). Visibility is read's: a Task not with the caller now is 404; a
    provider sees only the versions addressed to it (not another provider's earlier attempt)."""
    row = store.get_task_row(task_id)
    if row is None or not _may_see_row(principal, row.provider_id):
        raise _no_task(task_id)
    versions = store.task_history(task_id, MAX_HISTORY)
    created = versions[-1][0] if versions and len(versions) < MAX_HISTORY else None
    if principal.kind is PrincipalKind.PROVIDER:
        owner = f"Organization/{principal.subject}"
        versions = [(v, t) for v, t in versions if (t.get("owner") or {}).get("reference") == owner]
    return versions, created


def _may_see_row(principal: Principal, provider_id: str) -> bool:
    return principal.kind is PrincipalKind.COORDINATOR or principal.subject == provider_id


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ApiError(400, ["_since must be an instant with a time zone, e.g. 2026-01-01T00:00:00Z"])
    return moment


def _changed(task: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(task["meta"]["lastUpdated"]).replace("Z", "+00:00"))


@router.get(
    "/Task/{task_id}/_history",
    response_model=HistoryBundleModel,
    responses=fhir_errors(400, 401, 404, 503),
    summary="A handover's versions, newest first",
)
async def task_history(
    task_id: str,
    principal: Annotated[Principal, scoped("system/Task.r")],
    request: Request,
    count: Annotated[int, Query(alias="_count", ge=1, le=MAX_COUNT)] = 20,
    since: Annotated[
        str | None, Query(alias="_since", max_length=40, description="versions at or after")
    ] = None,
    cursor: Annotated[
        int | None, Query(alias="_cursor", ge=1, le=10**9, description="from a next link")
    ] = None,
) -> FhirResponse:
    """Served from the versions the workflow recorded (an engine step that changed a handover
    twice recorded it once, so version numbers may skip)."""
    refuse_unknown_parameters(request, HISTORY_PARAMETERS)
    after = _since(since)
    store = context.store(request)
    versions, created = await asyncio.to_thread(_visible_versions, store, principal, task_id)
    if after is not None:
        versions = [(v, t) for v, t in versions if _changed(t) >= after]
    total = len(versions)
    if cursor is not None:
        versions = [(v, t) for v, t in versions if v < cursor]
    page, more = versions[:count], len(versions) > count
    base_url = context.settings(request).base_url
    url = f"{base_url}/fhir/Task/{task_id}/_history"
    params = {"_since": since, "_count": count}
    links = [{"relation": "self", "url": f"{url}?{urlencode(_present(params | {'_cursor': cursor}))}"}]
    if more:
        following = urlencode(_present(params | {"_cursor": page[-1][0]}))
        links.append({"relation": "next", "url": f"{url}?{following}"})
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "total": total,
        "link": links,
    }
    if page:  # no empty arrays in FHIR JSON
        bundle["entry"] = [
            fhir.history_entry(base_url, task_id, v, t, v == created) for v, t in page
        ]
    return FhirResponse(bundle)


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


@router.get(
    "/Task/{task_id}/_history/{version_id}",
    response_model=TaskModel,
    responses=fhir_errors(401, 404, 503),
    summary="One version of a handover (vread)",
)
async def vread_task(
    task_id: str,
    version_id: str,
    principal: Annotated[Principal, scoped("system/Task.r")],
    request: Request,
) -> FhirResponse:
    store = context.store(request)
    versions, _ = await asyncio.to_thread(_visible_versions, store, principal, task_id)
    task = dict(versions).get(int(version_id)) if version_id.isdigit() else None
    if task is None:
        raise ApiError(404, [f"no version {version_id[:12]!r} of Task {task_id}"])
    headers = {"ETag": f'W/"{version_id}"', "Last-Modified": _http_date(_changed(task))}
    return FhirResponse(task, headers=headers)


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


def _provider_status(body: dict[str, Any], type_problems: list[str]) -> TaskStatus:
    """The status a provider PUTs; one a provider may not set is 409 (400 if the body also has
    FHIR type errors, which are listed instead)."""
    status = body.get("status")
    if not isinstance(status, str) or status not in {s.value for s in PROVIDER_STATUSES}:
        if type_problems:
            raise ApiError(400, type_problems)
        raise ApiError(409, [f"a provider cannot set a Task to {status!r}"])
    return TaskStatus(status)


def _type_refusal(
    body: dict[str, Any],
    state: PathwayState,
    handover: Handover,
    type_problems: list[str],
    bad_outputs: set[int],
) -> ApiError:
    """One refusal listing every problem in a body with FHIR type errors: those, and the step
    contract's problems in the other outputs."""
    output, problems = _readable_outputs(body, bad_outputs)
    if body.get("status") == "completed":
        skipped = {_output_name(body["output"][i]) for i in bad_outputs}
        problems += _contract_problems(state, handover, output, skipped)
    return ApiError(400, [*type_problems, *problems])


def _command(
    body: dict[str, Any],
    status: TaskStatus,
    handover_id: str,
    principal: Principal,
    version: int | None,
) -> ProviderCommand:
    """The provider command in a PUT whose body has no FHIR type errors."""
    try:
        output = fhir.outputs_from_task(body)
    except fhir.OutputError as error:
        raise ApiError(400, error.problems) from None
    reason = (body.get("statusReason") or {}).get("text")
    try:
        return ProviderCommand(
            handover_id=handover_id,
            provider_id=principal.subject,
            status=status,
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
    return await _task_handover(gateway, task_id, lambda h: _had_it(principal, h))


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
    after a reject or fail handed the work on); a move on a handover that has moved on from
    this provider (e.g. the loser of a complete-vs-fail race) is 409.

    With If-Match the PUT is one Update, whose validator checks ownership and version and whose
    answer is the rendered Task. Without it the pathway is read first: the version moved from
    tells a new request from a retry of the same one (the Update id).
    """
    body, type_problems, bad_outputs = _parse_update(await request.body(), task_id)
    version = _expected_version(if_match)
    status = _provider_status(body, type_problems)
    gateway = context.gateway(request)
    if type_problems or version is None:
        state, handover = await _own_handover(gateway, principal, task_id)
        if type_problems:
            raise _type_refusal(body, state, handover, type_problems, bad_outputs)
        pathway_id, handover_id, basis = state.pathway_id, handover.id, handover.version
    else:
        pathway_id, handover_id = _task_ids(task_id)
        basis = version
    command = _command(body, status, handover_id, principal, version)
    try:
        answer: ProviderAnswer = await gateway.update(
            pathway_id, PathwayWorkflow.provider_put, command, str(basis)
        )
    except ApiError as error:
        raise await _explained(gateway, principal, task_id, version, error) from None
    task = answer.task
    if task is None:  # the workflow could not render it (logged there): render it here
        state, _ = await _own_handover(gateway, principal, task_id)
        task = fhir.task_resource(state, answer.handover, context.settings(request).base_url)
    return FhirResponse(task, headers=_etag(answer.handover))


async def _explained(
    gateway: Gateway, principal: Principal, task_id: str, version: int | None, error: ApiError
) -> ApiError:
    """A refusal in FHIR's terms: a stale If-Match is 412, a handover that has moved on from
    this provider is 409 (not 404: the provider knows the Task)."""
    if error.status not in (404, 409):
        return error
    try:
        _, now = await _own_handover(gateway, principal, task_id)
    except ApiError as lookup:  # e.g. no such pathway: say so of the Task
        return lookup if lookup.status == 404 else error
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
