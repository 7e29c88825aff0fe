"""The coordinator console's pages: server-rendered HTML on the same app as /api and /fhir.

Pages read the event store's read model for lists and Query the pathway for its detail; actions
call the coordinator API's own route functions (same validation, same Updates through the
Gateway, same refusal texts), so the console can never do what /api would refuse.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import re
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from api import context, portal
from api import coordinator as api
from api.console import render, session, worklist
from api.console.session import CSRF_FIELD, SESSION_COOKIE, SIGNIN_COOKIE
from api.problems import ApiError
from api.tokens import Principal, PrincipalKind
from api.views import (
    EscalationRequest,
    ExtendRequest,
    NoteRequest,
    ReasonRequest,
    ReassignRequest,
    StartRequest,
)
from pathways.catalogue import UnknownDefinition
from pathways.graph import critical_path, max_parallelism
from pathways.nhs_number import normalise
from pathways.patient_search import PatientIndex, nhs_number_of

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters.update(
    duration=render.duration,
    due_text=render.due_text,
    instant=render.instant,
    iso=render.iso,
    status_text=render.status_text,
    output_value=render.output_value,
)
templates.env.globals.update(
    SLA_BADGES=render.SLA_BADGES, QUEUES=worklist.QUEUES, SORTS=worklist.SORTS
)

SESSION_SECONDS = 12 * 3600
OVERLAP = timedelta(seconds=5)
"""The live feed re-reads this far behind its cursor: a batch written a moment late (rows carry
the workflow's time, not the write's) is still seen; ids already sent are not sent again."""
NAME_TIMEOUT = 3.0
"""Seconds a page waits for patient names (a Query per row) before showing the row without."""


def page(request: Request, name: str, values: dict[str, Any], status: int = 200) -> HTMLResponse:
    """Render a console page with what every page needs (user, CSRF token, counts)."""
    principal = session.principal_of(request)
    base = {
        "principal": principal,
        "csrf": session.csrf_token(request),
        "now": datetime.now(UTC),
        "path": request.url.path,
    }
    response = templates.TemplateResponse(request, name, base | values, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _checked(request: Request) -> tuple[Principal, dict[str, str]]:
    """The signed-in coordinator and the form, after the CSRF check."""
    principal = session.require(request)
    values = await _form(request)
    session.check_csrf(request, values.get(CSRF_FIELD))
    return principal, values


async def _call(function: Callable[..., Awaitable[Any]], *args: Any, **options: Any) -> Any:
    """Call a coordinator route function with the keyword options it declares (the API's
    signatures grow, e.g. idempotency keys; the console passes what each one takes)."""
    accepted = inspect.signature(function).parameters
    return await function(*args, **{k: v for k, v in options.items() if k in accepted})


def _problems(error: ValidationError) -> list[str]:
    messages = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"] if part != "patient")
        label = FIELD_LABELS.get(where, where.replace("_", " "))
        text = str(item["msg"]).removeprefix("Value error, ")
        messages.append(f"{label}: {text}" if label else text)
    return messages


FIELD_LABELS = {
    "nhs_number": "NHS number",
    "name": "Patient name",
    "birth_date": "Date of birth",
    "definition": "Pathway",
    "reason": "Reason",
    "text": "Note",
    "by": "Extend by",
    "until": "Until",
    "handover_id": "Handover",
    "provider_id": "Provider",
}


# --- sign in and out ---------------------------------------------------------------------------


@router.get("/signin")
async def signin_page(request: Request, next: str = "/") -> HTMLResponse:
    nonce = session.signin_nonce(request)
    response = page(request, "signin.html", {"nonce": nonce, "next": session.safe_next(next)})
    session.set_cookie(response, request, SIGNIN_COOKIE, nonce, 3600)
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    values = await _form(request)
    session.check_signin_nonce(request, values.get(CSRF_FIELD))
    token = values.get("token", "").strip()
    principal = request.app.state.tokens.authenticate(token) if token else None
    target = session.safe_next(values.get("next"))
    if principal is None or principal.kind is not PrincipalKind.COORDINATOR:
        nonce = session.signin_nonce(request)
        error = (
            "That is a provider token: provider systems use the FHIR API, not the console."
            if principal is not None
            else "That token is unknown or revoked. Issue one with `pathways token issue "
            "--coordinator NAME`."
        )
        return page(request, "signin.html", {"nonce": nonce, "next": target, "error": error}, 401)
    response = _see_other(target)
    session.set_cookie(response, request, SESSION_COOKIE, token, SESSION_SECONDS)
    session.clear_cookie(response, request, SIGNIN_COOKIE)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    await _checked(request)
    response = _see_other("/signin")
    session.clear_cookie(response, request, SESSION_COOKIE)
    return response


# --- worklist ------------------------------------------------------------------------------------


NAMES: OrderedDict[str, str | None] = OrderedDict()
"""Patient display names by pathway id (a pathway's patient never changes), most recent last;
kept in this process only, so each name costs one Query per process, not one per page view."""
NAMES_KEPT = 20_000


async def _names(request: Request, ids: list[str]) -> dict[str, str | None]:
    """Patient display names from the pathways (the read model holds no patient data)."""
    missing = [i for i in ids if i not in NAMES]
    if missing:
        gateway = context.gateway(request)
        answers: list[Any]
        try:
            answers = await asyncio.wait_for(
                asyncio.gather(*(gateway.state(i) for i in missing), return_exceptions=True),
                NAME_TIMEOUT,
            )
        except TimeoutError:
            answers = [None] * len(missing)
        for pathway_id, answer in zip(missing, answers, strict=True):
            patient = getattr(answer, "patient", None)
            if patient is not None:
                NAMES[pathway_id] = patient.name
        while len(NAMES) > NAMES_KEPT:
            NAMES.popitem(last=False)
    return {i: NAMES.get(i) for i in ids}


async def _rows(request: Request, view: worklist.View, only: list[str] | None = None) -> Any:
    store = context.store(request)

    patient = _patient_search(request, view.q)

    def read() -> tuple[Any, ...]:
        escalations = worklist.escalated(store)
        rows, total = worklist.query(store, view, escalations, only=only, patient=patient)
        return rows, total, escalations

    rows, total, escalations = await asyncio.to_thread(read)
    ids = [r.pathway_id for r in rows]
    facts = await asyncio.to_thread(worklist.task_facts, store, ids)
    for row in rows:
        row.patient_name, row.accept_by = facts.get(row.pathway_id, (None, None))
    names = await _names(request, [r.pathway_id for r in rows if r.patient_name is None])
    for row in rows:
        row.patient_name = row.patient_name or names.get(row.pathway_id)
    return rows, total, escalations


def _patient_search(request: Request, text: str) -> worklist.PatientSearch | None:
    """The blind-index hashes of a search text (the key stays in this process)."""
    if not text:
        return None
    settings = context.settings(request)
    number = nhs_number_of(text)
    return worklist.PatientSearch(
        terms=tuple(PatientIndex.from_secret(settings.key).query(text)),
        patient_key=settings.patient_key(number) if number is not None else None,
    )


def _cursor() -> str:
    """Where the live feed of a page starts: a little before now, so nothing is missed."""
    return (datetime.now(UTC) - timedelta(seconds=2)).isoformat()


@router.get("/")
async def worklist_page(request: Request) -> HTMLResponse:
    session.require(request)
    view = worklist.View.parse(request.query_params)
    store = context.store(request)
    rows, total, escalations = await _rows(request, view)
    counts, options = await asyncio.to_thread(
        lambda: (worklist.counts(store, escalations), worklist.options(store))
    )
    pages = max(1, math.ceil(total / worklist.PAGE_SIZE))
    return page(
        request,
        "worklist.html",
        {
            "view": view,
            "rows": rows,
            "timed": [r for r in rows if r.next_due is not None or view.queue == "finished"],
            "untimed": [r for r in rows if r.next_due is None and view.queue != "finished"],
            "columns": worklist.COLUMNS,
            "total": total,
            "pages": pages,
            "counts": counts,
            "options": options,
            "query": lambda **changes: urlencode(view.params(**changes)),
            "cursor": _cursor(),
        },
    )


@router.get("/console/rows/{pathway_id}")
async def worklist_row(request: Request, pathway_id: str) -> HTMLResponse:
    """One worklist row, re-rendered in place when the live feed says it changed."""
    session.require(request)
    view = worklist.View.parse(request.query_params)
    rows, _, _ = await _rows(request, view, only=[pathway_id])
    if not rows:
        return HTMLResponse("", status_code=404)
    return page(request, "_row.html", {"row": rows[0], "updated": True, "view": view})


@router.get("/console/ping")
async def ping(request: Request) -> Response:
    """204 while the session is live, 401 after sign-out or revocation (the live feed asks
    before reconnecting, so a signed-out tab says so instead of retrying forever)."""
    signed_in = await asyncio.to_thread(session.principal_of, request)
    return Response(status_code=204 if signed_in else 401)


@router.get("/console/events")
async def live(request: Request, since: str = "") -> StreamingResponse:
    """Server-sent events: the ids of pathways whose read-model row changed, polled from the
    event store once a second. The event id is the cursor, so a reconnecting browser
    (Last-Event-ID) catches up on what it missed."""
    session.require(request)
    store = context.store(request)
    start = request.headers.get("last-event-id") or since
    try:
        cursor = datetime.fromisoformat(start) if start else datetime.now(UTC)
    except ValueError:
        cursor = datetime.now(UTC)
    if cursor.tzinfo is None:
        cursor = cursor.replace(tzinfo=UTC)

    async def stream() -> AsyncIterator[str]:
        nonlocal cursor
        seen: dict[str, datetime] = {}
        yield "retry: 2000\n\n"
        for tick in range(300):  # five minutes, then the browser reconnects from the cursor
            if await request.is_disconnected():
                return
            if tick % 10 == 9 and await asyncio.to_thread(session.principal_of, request) is None:
                return  # the token was revoked: the feed stops, the reconnect is refused
            changed = await asyncio.to_thread(worklist.changed_since, store, cursor - OVERLAP)
            fresh = [(i, at) for i, at in changed if seen.get(i) != at]
            if fresh:
                for pathway_id, at in fresh:
                    seen[pathway_id] = at
                cursor = max(at for _, at in changed)
                times = {i: at.isoformat() for i, at in fresh}
                body = json.dumps({"ids": sorted(times), "at": times})
                yield f"id: {cursor.isoformat()}\nevent: changed\ndata: {body}\n\n"
            elif tick % 15 == 0:
                yield ": alive\n\n"
            await asyncio.sleep(1)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


# --- pathway detail and actions ------------------------------------------------------------------


def _temporal_ui(request: Request, pathway_id: str) -> str:
    """The same workflow in the Temporal Web UI: the configured UI origin (the one the codec
    serves), else the dev server's (frontend port + 1000), on the frontend's own host name."""
    settings = context.settings(request)
    origins = settings.codec_origins or ["http://localhost:8233"]
    host = settings.temporal_address.rpartition(":")[0]
    origin = next((o for o in origins if f"//{host}:" in o), origins[0])
    return f"{origin}/namespaces/{settings.namespace}/workflows/{pathway_id}"


def _retry_key(values: dict[str, str], error: ApiError) -> str:
    """The form key to render after a refusal: on 503 (outcome unknown) the same one, so that
    sending the form again is the same request, applied once; otherwise a new one."""
    sent = values.get("key", "")
    if error.status == 503 and re.fullmatch(r"[0-9a-f]{24}(-\w+)?", sent):
        return sent.split("-")[0]
    return secrets.token_hex(12)


async def _detail(
    request: Request,
    pathway_id: str,
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
    key: str | None = None,
) -> HTMLResponse:
    try:
        state = await context.gateway(request).state(pathway_id)
    except ApiError as error:
        return page(
            request,
            "error.html",
            {"status": error.status, "problems": error.problems},
            error.status,
        )
    events = await asyncio.to_thread(context.store(request).events, pathway_id)
    now = datetime.now(UTC)
    steps = {sid: str(getattr(s.status, "value", s.status)) for sid, s in state.steps.items()}
    definition = state.definition
    roles = {r.id: [p.id for p in r.providers] for r in definition.roles}
    unfinished = [h for h in state.handovers.values() if h.is_unfinished and not state.is_finished]
    alternates = {
        h.id: [p for p in roles.get(definition.step(h.step_id).role, []) if p != h.provider_id]
        for h in unfinished
    }
    refused = [e for e in events if str(getattr(e.kind, "value", e.kind)) == "refused-delivery"]
    return page(
        request,
        "pathway.html",
        {
            "state": state,
            "definition": definition,
            "graph": render.step_graph_svg(definition, steps),
            "timeline": render.timeline(state, now),
            "events": events,
            "refused": refused,
            "unfinished": sorted(unfinished, key=lambda h: (h.ready_at, h.id)),
            "alternates": alternates,
            "portal_links": portal.open_links(context.settings(request), state, now),
            "errors": errors or {},
            "done": request.query_params.get("done", ""),
            "temporal_ui": _temporal_ui(request, pathway_id),
            "cursor": render.iso(state.updated_at),
            "key": key or secrets.token_hex(12),
            "sla_state": str(getattr(state.sla_state, "value", state.sla_state)),
            "status": str(getattr(state.status, "value", state.status)),
        },
        status,
    )


@router.get("/pathways/{pathway_id}")
async def pathway_page(request: Request, pathway_id: str) -> HTMLResponse:
    session.require(request)
    return await _detail(request, pathway_id)


def _extend_body(values: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "handover_id": values.get("handover_id", ""),
        "reason": values.get("reason", ""),
    }
    by = values.get("by", "").strip()
    if by == "custom":
        by = values.get("by_custom", "").strip()
    until = values.get("until", "").strip()
    if until:
        body["until"] = until if re.search(r"(Z|[+-]\d\d:\d\d)$", until) else until + "Z"
    elif by:
        body["by"] = by
    return body


async def _apply(
    request: Request, principal: Principal, values: dict[str, str], pathway_id: str, action: str
) -> None:
    """One pathway action through the coordinator API's own functions (same validation and
    Updates); a refusal raises ApiError or ValidationError."""
    key = values.get("key") or None
    reason = values.get("reason", "").strip()
    who = (principal, request)
    if action == "reassign":
        fields = {k: values.get(k, "") for k in ("handover_id", "provider_id")}
        body = ReassignRequest(**fields, reason=reason)
        await _call(api.reassign, pathway_id, body, *who, idempotency_key=key)
    elif action == "extend":
        extend = ExtendRequest.model_validate(_extend_body(values))
        await _call(api.extend, pathway_id, extend, *who, idempotency_key=key)
    elif action == "hold":
        await _call(api.hold, pathway_id, ReasonRequest(reason=reason), *who, idempotency_key=key)
    elif action == "cancel":
        if values.get("confirm") != "yes":
            confirm = "tick the box to confirm: cancelling ends the pathway for every provider"
            raise ApiError(422, [confirm])
        await _call(api.cancel, pathway_id, ReasonRequest(reason=reason), *who, idempotency_key=key)
    elif action == "resume":
        ReasonRequest(reason=reason)  # a reason is asked for, and kept as a note
        await _call(api.resume, pathway_id, *who, idempotency_key=key)
        note = NoteRequest(text=f"Resumed: {reason}")
        note_key = f"{key}-note" if key else None
        await _call(api.add_note, pathway_id, note, *who, idempotency_key=note_key)
    elif action == "note":
        note = NoteRequest(text=values.get("text", "").strip())
        await _call(api.add_note, pathway_id, note, *who, idempotency_key=key)
    else:
        raise ApiError(404, ["no such action"])


@router.post("/pathways/{pathway_id}/{action}")
async def pathway_action(request: Request, pathway_id: str, action: str) -> Response:
    """Apply one coordinator action; a refusal re-renders the page with the API's own text."""
    principal, values = await _checked(request)
    try:
        await _apply(request, principal, values, pathway_id, action)
    except ValidationError as error:
        return await _detail(request, pathway_id, {action: _problems(error)}, 422)
    except ApiError as error:
        key = _retry_key(values, error)
        return await _detail(request, pathway_id, {action: error.problems}, error.status, key)
    return _see_other(f"/pathways/{pathway_id}?done={action}#actions")


# --- escalation inbox ------------------------------------------------------------------------------

SEVERITY = {"mark-breached": 0, "reassign": 1, "alert-coordinator": 2, "remind-provider": 3}


@router.get("/escalations")
async def inbox_page(request: Request) -> HTMLResponse:
    session.require(request)
    store = context.store(request)
    items = _by_severity(await asyncio.to_thread(worklist.escalation_items, store))
    focus = request.query_params.get("focus", "")
    number, pages = _inbox_page(request, items, focus)
    shown = items[(number - 1) * INBOX_PAGE:number * INBOX_PAGE]
    names = await _patient_names(request, sorted({i.pathway_id for i in shown}))
    return page(
        request,
        "escalations.html",
        {
            "items": shown,
            "total": len(items),
            "page_number": number,
            "pages": pages,
            "first": (number - 1) * INBOX_PAGE + 1,
            "names": names,
            "alternates_list": [_alternates(request, i) for i in shown],
            "focus": focus,
            "done": request.query_params.get("done", ""),
            "error": request.query_params.get("error", ""),
            "key": secrets.token_hex(12),
        },
    )


INBOX_PAGE = 50
"""Escalations per inbox page: a page stays quick to read and to render at 1,000 open."""


def _inbox_page(request: Request, items: list[Any], focus: str) -> tuple[int, int]:
    """(page shown, pages): the one asked for, else the one holding the focused escalation
    (where "then next" lands), else the first."""
    pages = max(1, math.ceil(len(items) / INBOX_PAGE))
    asked = request.query_params.get("page", "")
    if asked.isdigit() and 1 <= len(asked) <= 6:
        return min(max(int(asked), 1), pages), pages
    idents = [f"{i.pathway_id}-{i.escalation.id}" for i in items]
    if focus in idents:
        return idents.index(focus) // INBOX_PAGE + 1, pages
    return 1, pages


async def _patient_names(request: Request, ids: list[str]) -> dict[str, str | None]:
    """Display names from the read model's rendered Tasks (one read, as the worklist does);
    a Query to the pathway only for those it has none for."""
    facts = await asyncio.to_thread(worklist.task_facts, context.store(request), ids)
    names = {pathway_id: facts.get(pathway_id, (None, None))[0] for pathway_id in ids}
    missing = await _names(request, [i for i, name in names.items() if name is None])
    return {i: name or missing.get(i) for i, name in names.items()}


def _alternates(request: Request, item: Any) -> list[str]:
    """Other providers of the escalated handover's role (from the catalogue's definition)."""
    try:
        definition = context.catalogue(request).get(item.definition, None)
        role = definition.step(item.escalation.step_id).role
    except (UnknownDefinition, StopIteration):
        return []
    providers = next((r.providers for r in definition.roles if r.id == role), ())
    return [p.id for p in providers if p.id != item.escalation.provider_id]


def _next_after(items: list[Any], pathway_id: str, escalation_id: int) -> str:
    ids = [f"{i.pathway_id}-{i.escalation.id}" for i in items]
    current = f"{pathway_id}-{escalation_id}"
    if current in ids:
        position = ids.index(current)
        rest = ids[position + 1 :] or ids[:position]
        return rest[0] if rest else ""
    return ids[0] if ids else ""


def _by_severity(items: list[Any]) -> list[Any]:
    """Most severe first, then oldest (the inbox's order)."""
    return sorted(
        items,
        key=lambda i: (
            SEVERITY.get(str(i.escalation.level.value), 9),
            i.escalation.at,
            i.pathway_id,
        ),
    )


async def _escalation_command(
    request: Request,
    principal: Principal,
    values: dict[str, str],
    pathway_id: str,
    escalation_id: int,
    action: str,
) -> None:
    """One inbox action through the coordinator API's functions; refusals raise ApiError."""
    key = values.get("key") or None
    if action in ("acknowledge", "resolve"):
        method = api.acknowledge if action == "acknowledge" else api.resolve
        body = EscalationRequest(note=values.get("note", "").strip() or None)
        args = (pathway_id, escalation_id, body, principal, request)
        await _call(method, *args, idempotency_key=key)
    elif action == "reassign":
        reassign = ReassignRequest(
            handover_id=values.get("handover_id", ""),
            provider_id=values.get("provider_id", ""),
            reason=values.get("reason", "").strip(),
        )
        await _call(api.reassign, pathway_id, reassign, principal, request, idempotency_key=key)
    elif action == "extend":
        extend = ExtendRequest.model_validate(_extend_body(values))
        await _call(api.extend, pathway_id, extend, principal, request, idempotency_key=key)
    else:
        raise ApiError(404, ["no such action"])


@router.post("/escalations/{pathway_id}/{escalation_id}/{action}")
async def escalation_action(
    request: Request, pathway_id: str, escalation_id: int, action: str
) -> Response:
    """Acknowledge, resolve, reassign or extend from the inbox, then go on to the next
    escalation ("act, then next")."""
    principal, values = await _checked(request)
    store = context.store(request)
    before = _by_severity(await asyncio.to_thread(worklist.escalation_items, store))
    following = _next_after(before, pathway_id, escalation_id)
    try:
        await _escalation_command(request, principal, values, pathway_id, escalation_id, action)
    except (ApiError, ValidationError) as error:
        problems = error.problems if isinstance(error, ApiError) else _problems(error)
        if values.get("back") == "pathway":
            return await _detail(
                request,
                pathway_id,
                {"escalation": problems},
                error.status if isinstance(error, ApiError) else 422,
            )
        query = urlencode({"focus": f"{pathway_id}-{escalation_id}", "error": "; ".join(problems)})
        return _see_other(f"/escalations?{query}")
    done = {"acknowledge": "acknowledged", "resolve": "resolved"}.get(action, action)
    if values.get("back") == "pathway":  # acted from the pathway page: stay there
        return _see_other(f"/pathways/{pathway_id}?done={action}#esc-h")
    return _see_other(f"/escalations?{urlencode({'focus': following, 'done': done})}")


@router.post("/escalations/acknowledge")
async def acknowledge_all(request: Request) -> Response:
    """Bulk acknowledge the ticked escalations (the form asks for confirmation first)."""
    principal, values = await _checked(request)
    form = await request.form()
    chosen = [str(v) for v in form.getlist("chosen")]
    if values.get("confirm") != "yes" or not chosen:
        message = "tick the escalations and confirm to acknowledge them together"
        return _see_other(f"/escalations?{urlencode({'error': message})}")
    failures = []
    for choice in chosen[:200]:
        pathway_id, _, number = choice.rpartition("-")
        try:
            body = EscalationRequest(note=values.get("note", "").strip() or None)
            await _call(api.acknowledge, pathway_id, int(number), body, principal, request)
        except (ApiError, ValueError) as error:
            failures.append(f"{choice}: {'; '.join(getattr(error, 'problems', [str(error)]))}")
    query = {"done": f"{len(chosen) - len(failures)} acknowledged"}
    if failures:
        query["error"] = " | ".join(failures)
    return _see_other(f"/escalations?{urlencode(query)}")


# --- start a pathway and the catalogue --------------------------------------------------------------


def _scrub(messages: list[str], values: dict[str, str]) -> list[str]:
    """Never echo an NHS number back: drop what was typed from every message, digits or not."""
    typed = values.get("nhs_number", "")
    candidates = {typed.strip(), normalise(typed)} - {""}
    cleaned = []
    for message in messages:
        for candidate in candidates:
            message = message.replace(candidate, "[the NHS number]")
        cleaned.append(re.sub(r"\b\d{3}[ -]?\d{3}[ -]?\d{4}\b", "[a number]", message))
    return cleaned


@router.get("/start")
async def start_page(request: Request) -> HTMLResponse:
    session.require(request)
    chosen = request.query_params.get("definition", "")
    return page(
        request,
        "start.html",
        {
            "definitions": list(context.catalogue(request)),
            "values": {"definition": chosen},
            "errors": [],
            "key": secrets.token_hex(12),
        },
    )


@router.post("/start")
async def start(request: Request) -> Response:
    principal, values = await _checked(request)
    patient = {
        "nhs_number": values.get("nhs_number", ""),
        "name": values.get("name", "").strip() or None,
    }
    if values.get("birth_date"):
        patient["birth_date"] = values["birth_date"]
    raw: dict[str, Any] = {"definition": values.get("definition", ""), "patient": patient}
    if values.get("allow_duplicate") == "yes" and "allow_duplicate" in StartRequest.model_fields:
        raw["allow_duplicate"] = True
    shown = {
        "definition": values.get("definition", ""),
        "name": values.get("name", ""),
        "birth_date": values.get("birth_date", ""),
    }
    definitions = list(context.catalogue(request))
    try:
        body = StartRequest.model_validate(raw)
        created = await _call(
            api.start,
            body,
            principal,
            request,
            Response(),
            idempotency_key=values.get("key") or None,
        )
    except ValidationError as error:
        problems = _scrub(_problems(error), values)
        return page(
            request,
            "start.html",
            {
                "definitions": definitions,
                "values": shown,
                "errors": problems,
                "key": secrets.token_hex(12),
            },
            422,
        )
    except ApiError as error:
        problems = _scrub(error.problems, values)
        duplicate = error.status == 409
        running = error.extensions.get("pathway_id")  # the API's problem member, not its text
        if duplicate and running:
            definition = error.extensions.get("definition_id") or shown["definition"]
            problems = [
                f"{definition} is already running for this patient: open it below, or tick "
                "“Start anyway” and enter the NHS number again (it is never shown back) to start a "
                "second one."
            ]
            shown["duplicate_of"] = str(running)
        return page(
            request,
            "start.html",
            {
                "definitions": definitions,
                "values": shown,
                "errors": problems,
                "duplicate": duplicate,
                "key": _retry_key(values, error),
            },
            error.status,
        )
    return _see_other(f"/pathways/{created.id}?done=start")


def _entry(definition: Any, graph: bool) -> dict[str, Any]:
    path = critical_path(definition)
    return {
        "definition": definition,
        "graph": render.step_graph_svg(definition) if graph else "",
        "critical": path.steps,
        "lead_time": path.lead_time,
        "width": max_parallelism(definition),
        "ladders": {s.id: list(definition.ladder(s)) for s in definition.steps},
    }


@router.get("/catalogue")
async def catalogue_page(request: Request) -> HTMLResponse:
    """Every definition at a glance: steps, planned lead time, critical path."""
    session.require(request)
    entries = [_entry(d, graph=False) for d in context.catalogue(request)]
    return page(request, "catalogue.html", {"entries": entries})


@router.get("/catalogue/{definition_id}")
async def definition_page(request: Request, definition_id: str) -> HTMLResponse:
    """One definition: its graph with the critical path, SLAs and escalation ladders."""
    session.require(request)
    try:
        definition = context.catalogue(request).get(definition_id, None)
    except UnknownDefinition:
        problems = [f"no definition {definition_id}"]
        return page(request, "error.html", {"status": 404, "problems": problems}, 404)
    return page(request, "definition.html", {"e": _entry(definition, graph=True)})
