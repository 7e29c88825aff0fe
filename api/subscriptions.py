"""FHIR Subscriptions for provider systems (HL7 Subscriptions R5 Backport IG, R4 profiles).

The handover-Task topic is published at /fhir/SubscriptionTopic/handover-task (and as the Basic
it is in R4, /fhir/Basic/handover-task); a provider creates, reads, updates and deletes its own
Subscriptions, asks `$status` and catches up with `$events`. A provider's filter is always its
own Tasks; another provider's subscription is "not found". Delivery itself is the worker's
(worker/subscriptions.py), from the event store: the API only stores what was asked.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fhir.resources.R4B.subscription import Subscription
from pydantic import Field, ValidationError

from activities.subscriptions import MAX_PER_PROVIDER, Record, SubscriptionStore, TooMany
from api import context
from api.auth import provider, scoped
from api.fhir import FhirResponse
from api.fhir_models import Resource
from api.problems import ApiError, fhir_errors
from api.tokens import Principal
from pathways.fhir import searchset
from pathways.settings import Settings
from pathways.subscriptions import (
    TOPIC_ID,
    Content,
    Spec,
    SubscriptionInvalid,
    as_seen,
    event_range,
    notification_bundle,
    parse_subscription,
    status_parameters,
    subscription_resource,
    subscription_url,
    topic_resource,
)
from pathways.webhook_url import endpoint_problem

RESOLVE_SECONDS = 5.0
"""How long creating a subscription waits for its endpoint's name to resolve (then accepted:
every delivery resolves and checks again)."""
MAX_EVENTS = 100
"""Events one $events answer holds at most: ask again from the next number for more."""
_ID = re.compile(r"^sub-[0-9a-f]{16}$")
BODY_ERRORS = (400, 401, 403, 408, 413, 415, 422)

router = APIRouter(prefix="/fhir", tags=["FHIR R4 Subscriptions"],
                   default_response_class=FhirResponse)


class SubscriptionModel(Resource):
    """A backport-profile Subscription (criteria = the topic URL, rest-hook channel)."""

    resourceType: Literal["Subscription"]
    criteria: str
    channel: dict[str, Any]


class BasicModel(Resource):
    resourceType: Literal["Basic"]
    id: str


class NotificationBundleModel(Resource):
    """A notification, $status or search Bundle (no `entry` when nothing matched: ele-1)."""

    resourceType: Literal["Bundle"]
    type: str
    entry: list[dict[str, Any]] = Field(default_factory=list)


def install(app: FastAPI, settings: Settings) -> None:
    """The subscription tables (created if missing) and the routes."""
    store = SubscriptionStore(settings.event_store)
    store.migrate()
    app.state.subscriptions = store
    app.include_router(router)


def _store(request: Request) -> SubscriptionStore:
    return request.app.state.subscriptions  # type: ignore[no-any-return]


def _now() -> datetime:
    return datetime.now(UTC)


# --- the topic ----------------------------------------------------------------------------------


@router.get(
    "/SubscriptionTopic/{topic_id}",
    response_model=BasicModel,
    responses=fhir_errors(404),
    summary="The handover-Task SubscriptionTopic (an R4 Basic, per the backport IG)",
)
def read_topic(topic_id: str, request: Request) -> FhirResponse:
    """Conformance, like /fhir/metadata: no token needed."""
    if topic_id != TOPIC_ID:
        raise ApiError(404, [f"no SubscriptionTopic {topic_id}"])
    return FhirResponse(topic_resource(context.settings(request).base_url))


@router.get("/Basic/{basic_id}", response_model=BasicModel, responses=fhir_errors(404),
            summary="The SubscriptionTopic as the R4 Basic it is")
def read_basic(basic_id: str, request: Request) -> FhirResponse:
    if basic_id != TOPIC_ID:
        raise ApiError(404, [f"no Basic {basic_id}"])
    return FhirResponse(topic_resource(context.settings(request).base_url))


# --- Subscription CRUD --------------------------------------------------------------------------


def _parse(raw: bytes, principal: Principal, request: Request, subscription_id: str | None) -> Spec:
    """The body as a Subscription spec, or a 400 listing every problem."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, ["the body is not valid JSON"]) from None
    if not isinstance(body, dict) or body.get("resourceType") != "Subscription":
        raise ApiError(400, ["the body must be a FHIR Subscription resource"])
    if subscription_id is not None and body.get("id") != subscription_id:
        raise ApiError(400, [f"the Subscription id in the body must be {subscription_id!r}"])
    problems = []
    try:
        Subscription.model_validate(body)
    except ValidationError as error:
        problems = [
            f"Subscription.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in error.errors(include_input=False, include_url=False)
        ]
    try:
        spec, more = parse_subscription(
            body, principal.subject, context.settings(request).base_url, _now()
        )
    except SubscriptionInvalid as error:
        raise ApiError(400, [*problems, *error.problems]) from None
    if problems or more:
        raise ApiError(400, [*problems, *more])
    return spec


async def _check_endpoint(spec: Spec, request: Request) -> None:
    """Under `PATHWAYS_SUBSCRIPTION_ENDPOINTS=public`, a 422 unless the endpoint's host is, or
    resolves only to, public internet addresses (server-side request forgery); the reason
    names no resolved address. A name that does not resolve (yet) is accepted: the handshake
    resolves and checks again, and the subscription goes to `error` if it still cannot."""
    policy = context.settings(request).subscription_endpoints
    check = functools.partial(endpoint_problem, spec.endpoint, policy)
    try:
        problem = await asyncio.wait_for(asyncio.to_thread(check), RESOLVE_SECONDS)
    except TimeoutError:
        return
    if problem:
        raise ApiError(422, [f"Subscription.channel.endpoint: {problem}"])


def _resource(record: Record, request: Request) -> dict[str, Any]:
    base_url = context.settings(request).base_url
    resource = subscription_resource(record.id, record.spec, record.status, record.error, base_url)
    resource["meta"]["lastUpdated"] = record.updated_at.isoformat().replace("+00:00", "Z")
    return resource


async def _own(request: Request, principal: Principal, subscription_id: str) -> Record:
    """The caller's subscription, else 404 (also for another provider's: ids reveal nothing)."""
    record = None
    if _ID.match(subscription_id):
        record = await asyncio.to_thread(
            _store(request).get, principal.subject, subscription_id
        )
    if record is None:
        raise ApiError(404, [f"no Subscription {subscription_id}"])
    return record


_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/fhir+json": {"schema": SubscriptionModel.model_json_schema()}},
    }
}


@router.post(
    "/Subscription",
    status_code=201,
    response_model=SubscriptionModel,
    responses=fhir_errors(*BODY_ERRORS),
    summary="Subscribe to your handover Tasks (backport profile, rest-hook)",
    openapi_extra=_BODY,
)
async def create_subscription(
    principal: Annotated[Principal, scoped("system/Subscription.c", provider)], request: Request
) -> FhirResponse:
    """Stored as `requested`; the worker then POSTs the handshake and sets `active` or `error`.
    The filter is forced to your own Tasks (owner = you)."""
    spec = _parse(await request.body(), principal, request, None)
    await _check_endpoint(spec, request)
    try:
        record = await asyncio.to_thread(_store(request).create, spec, _now())
    except TooMany:
        raise ApiError(
            422, [f"a provider may hold at most {MAX_PER_PROVIDER} subscriptions"]
        ) from None
    url = subscription_url(context.settings(request).base_url, record.id)
    return FhirResponse(_resource(record, request), status_code=201, headers={"Location": url})


@router.get(
    "/Subscription",
    response_model=NotificationBundleModel,
    responses=fhir_errors(401, 403),
    summary="Your subscriptions",
)
async def search_subscriptions(
    principal: Annotated[Principal, scoped("system/Subscription.s", provider)], request: Request
) -> FhirResponse:
    records = await asyncio.to_thread(_store(request).list_for, principal.subject)
    base_url = context.settings(request).base_url
    return FhirResponse(searchset([
        {"fullUrl": subscription_url(base_url, r.id), "resource": _resource(r, request),
         "search": {"mode": "match"}}
        for r in records
    ]))


@router.get(
    "/Subscription/$status",
    response_model=NotificationBundleModel,
    responses=fhir_errors(400, 401, 403),
    summary="Status of all your subscriptions, or of those with the given ids and statuses",
)
async def subscriptions_status(
    principal: Annotated[Principal, scoped("system/Subscription.r", provider)],
    request: Request,
    ids: Annotated[list[str] | None, Query(alias="id", max_length=20)] = None,
    statuses: Annotated[list[str] | None, Query(alias="status", max_length=4)] = None,
) -> FhirResponse:
    """The type-level $status: one status Parameters per subscription of yours (ids and statuses
    each ORed, as the IG says)."""
    records = await asyncio.to_thread(_store(request).list_for, principal.subject)
    chosen = [
        r for r in records
        if (not ids or r.id in ids) and (not statuses or r.status.value in statuses)
    ]
    base_url = context.settings(request).base_url
    return FhirResponse(searchset([_status_entry(r, base_url) for r in chosen]))


@router.get(
    "/Subscription/{subscription_id}",
    response_model=SubscriptionModel,
    responses=fhir_errors(401, 403, 404),
    summary="Read one of your subscriptions",
)
async def read_subscription(
    subscription_id: str,
    principal: Annotated[Principal, scoped("system/Subscription.r", provider)],
    request: Request,
) -> FhirResponse:
    return FhirResponse(_resource(await _own(request, principal, subscription_id), request))


@router.put(
    "/Subscription/{subscription_id}",
    response_model=SubscriptionModel,
    responses=fhir_errors(*BODY_ERRORS, 404),
    summary="Change one of your subscriptions (a new endpoint or filter: a new handshake)",
    openapi_extra=_BODY,
)
async def update_subscription(
    subscription_id: str,
    principal: Annotated[Principal, scoped("system/Subscription.u", provider)],
    request: Request,
) -> FhirResponse:
    await _own(request, principal, subscription_id)
    spec = _parse(await request.body(), principal, request, subscription_id)
    await _check_endpoint(spec, request)
    record = await asyncio.to_thread(
        _store(request).replace, principal.subject, subscription_id, spec, _now()
    )
    if record is None:
        raise ApiError(404, [f"no Subscription {subscription_id}"])
    return FhirResponse(_resource(record, request))


@router.delete(
    "/Subscription/{subscription_id}",
    status_code=204,
    response_model=None,
    responses=fhir_errors(401, 403, 404),
    summary="Delete one of your subscriptions (no further notifications)",
)
async def delete_subscription(
    subscription_id: str,
    principal: Annotated[Principal, scoped("system/Subscription.d", provider)],
    request: Request,
) -> Response:
    await _own(request, principal, subscription_id)
    await asyncio.to_thread(_store(request).delete, principal.subject, subscription_id)
    return Response(status_code=204)


# --- $status and $events -------------------------------------------------------------------------


def _status_entry(record: Record, base_url: str) -> dict[str, Any]:
    """One searchset entry: the subscription's status Parameters (type query-status), with the
    events generated and delivered so far and the last delivery error if any."""
    parameters = status_parameters(
        str(uuid.uuid4()), record.id, base_url, record.status, "query-status",
        record.events_count, error=record.error,
    )
    parameters["parameter"].append(
        {"name": "events-delivered", "valueString": str(record.delivered_through)}
    )
    return {"fullUrl": f"urn:uuid:{parameters['id']}", "resource": parameters,
            "search": {"mode": "match"}}


@router.get(
    "/Subscription/{subscription_id}/$status",
    response_model=NotificationBundleModel,
    responses=fhir_errors(401, 403, 404),
    summary="Status of one of your subscriptions (backport-subscription-status-r4)",
)
async def subscription_status(
    subscription_id: str,
    principal: Annotated[Principal, scoped("system/Subscription.r", provider)],
    request: Request,
) -> FhirResponse:
    """A searchset Bundle with the subscription's status Parameters."""
    record = await _own(request, principal, subscription_id)
    return FhirResponse(searchset([_status_entry(record, context.settings(request).base_url)]))


@router.get(
    "/Subscription/{subscription_id}/$events",
    response_model=NotificationBundleModel,
    responses=fhir_errors(400, 401, 403, 404),
    summary="Catch up on a subscription's events by number",
)
async def subscription_events(
    subscription_id: str,
    principal: Annotated[Principal, scoped("system/Subscription.r", provider)],
    request: Request,
    events_since: Annotated[
        str | None, Query(alias="eventsSinceNumber", max_length=12, description="first, inclusive")
    ] = None,
    events_until: Annotated[
        str | None, Query(alias="eventsUntilNumber", max_length=12, description="last, inclusive")
    ] = None,
    content: Annotated[
        Literal["empty", "id-only", "full-resource"] | None,
        Query(description="payload content; default: the subscription's"),
    ] = None,
) -> FhirResponse:
    """A history Bundle: the status Parameters (type query-event) with one notification-event
    per event in the range (at most 100; ask again from the next number), then the Tasks as
    they were at each event for full-resource."""
    record = await _own(request, principal, subscription_id)
    try:
        low, high = event_range(events_since, events_until, record.events_count, MAX_EVENTS)
    except ValueError as error:
        raise ApiError(400, [str(error)]) from None
    store = _store(request)
    events = await asyncio.to_thread(store.events, record.id, low, high) if low <= high else []
    wanted = Content(content) if content else record.spec.content
    tasks = []
    if wanted is Content.FULL_RESOURCE:
        for event in events:
            task = await asyncio.to_thread(store.task_at, event.task_id, event.version)
            if task is not None:
                tasks.append((event, as_seen(task, principal.subject, event.withdrawn)))
    base_url = context.settings(request).base_url
    parameters = status_parameters(
        str(uuid.uuid4()), record.id, base_url, record.status, "query-event",
        record.events_count, events, wanted,
    )
    bundle = notification_bundle(str(uuid.uuid4()), parameters, record.id, base_url, _now(), tasks)
    return FhirResponse(bundle)
