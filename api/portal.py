"""A page for providers with no FHIR system: one signed link per handover.

A provider marked `portal: true` in a definition gets, for each open handover, a link the
coordinator passes on (GET /api/pathways/{id}/portal-links). The link is a signed, expiring
token naming one Task and one provider; the page shows that handover only and lets the provider
accept, reject with a reason, start, and complete by filling in the step's contract, which the
engine checks exactly as it checks a FHIR PUT (same command, same refusals). The link stops
working once the handover is finished or has moved to another provider.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from api import context
from api.auth import Coordinator
from api.problems import ApiError, api_errors
from pathways.commands import ProviderCommand
from pathways.elements import FieldType, HandoverField, Step
from pathways.lifecycle import PROVIDER_MOVES
from pathways.portal_link import expiry, link, verify
from pathways.settings import Settings
from pathways.state import Handover, PathwayState, TaskStatus, parse_task_id
from workflows.pathway import PathwayWorkflow

MAX_FORM_BYTES = 64 * 1024
OPEN = frozenset(PROVIDER_MOVES)
ACTIONS = {
    "accept": TaskStatus.ACCEPTED,
    "reject": TaskStatus.REJECTED,
    "start": TaskStatus.IN_PROGRESS,
    "complete": TaskStatus.COMPLETED,
}
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the link is the credential: never in a Referer
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
_LOCAL_MINUTE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")


# --- links --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    task_id: str
    provider_id: str


def _grant(settings: Settings, token: str) -> Grant | None:
    claims = verify(settings, token, ("sub", "task"))
    return None if claims is None else Grant(str(claims["task"]), str(claims["sub"]))


def _is_portal(state: PathwayState, provider_id: str) -> bool:
    definition = state.definition
    provider = definition.provider(provider_id)
    return provider is not None and provider.portal


# --- coordinator: the links to pass on ----------------------------------------------------------


class PortalLink(BaseModel):
    task_id: str
    provider: str
    step: str
    url: str
    expires: datetime


class PortalLinks(BaseModel):
    links: list[PortalLink]


router = APIRouter()


def open_links(settings: Settings, state: PathwayState, now: datetime) -> list[PortalLink]:
    """A signed link for each open handover whose provider is marked `portal: true`: what the
    coordinator passes on (API and console)."""
    links = []
    for handover in state.handovers.values():
        if handover.status in OPEN and _is_portal(state, handover.provider_id):
            task_id = f"{state.pathway_id}.{handover.id}"
            expires = expiry(handover.complete_by, now)
            links.append(
                PortalLink(
                    task_id=task_id,
                    provider=handover.provider_id,
                    step=state.definition.step(handover.step_id).title,
                    url=link(settings, task_id, handover.provider_id, expires),
                    expires=expires,
                )
            )
    return links


@router.get(
    "/api/pathways/{pathway_id}/portal-links",
    response_model=PortalLinks,
    responses=api_errors(404, 503),
    tags=["coordinator"],
    summary="Page links for the open handovers of providers without a FHIR system",
)
async def portal_links(pathway_id: str, principal: Coordinator, request: Request) -> PortalLinks:
    """One signed link per open handover whose provider is marked `portal: true`, to pass on."""
    state = await context.gateway(request).state(pathway_id)
    links = open_links(context.settings(request), state, datetime.now(UTC))
    return PortalLinks(links=links)


# --- the page -----------------------------------------------------------------------------------


class Gone(Exception):
    """The link does not (or no longer) open a handover; the page says which."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _handover(request: Request, token: str) -> tuple[Grant, PathwayState, Handover]:
    grant = _grant(context.settings(request), token)
    if grant is None:
        raise Gone(404, "This link is not valid or has expired.")
    try:
        pathway_id, handover_id = parse_task_id(grant.task_id)
        state = await context.gateway(request).state(pathway_id)
    except ValueError:
        raise Gone(404, "This link is not valid or has expired.") from None
    except ApiError as error:
        if error.status == 404:
            raise Gone(404, "This link is not valid or has expired.") from None
        raise Gone(503, "The service is busy: nothing was changed. Try again in a minute.") from None
    handover = state.handovers.get(handover_id)
    if handover is None or handover.provider_id != grant.provider_id or not _is_portal(state, grant.provider_id):
        raise Gone(410, "This handover has moved to another provider: the link no longer works.")
    if handover.status not in OPEN:
        raise Gone(410, f"This handover is {handover.status.value}: the link no longer works.")
    return grant, state, handover


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}}
label{{display:block;margin:.8rem 0 .2rem;font-weight:600}}
input,select,textarea{{width:100%;padding:.4rem;box-sizing:border-box}}
.errors{{border:2px solid #b00;padding:.5rem 1rem;color:#700}}button{{margin:.8rem .4rem 0 0;padding:.5rem 1rem}}
.status{{font-size:1.1rem}}</style></head><body>{body}</body></html>"""
    return HTMLResponse(html, status, HEADERS)


def _input(field: HandoverField, value: str) -> str:
    name = f"field.{field.name}"
    attrs = f'id="{escape(name)}" name="{escape(name)}"'
    if field.type is FieldType.CODED:
        options = "".join(
            f'<option value="{escape(code)}"{" selected" if code == value else ""}>{escape(code)}</option>'
            for code in field.codes
        )
        return f'<select {attrs}><option value=""></option>{options}</select>'
    if field.type is FieldType.BOOLEAN:
        options = "".join(
            f'<option value="{v}"{" selected" if v == value else ""}>{label}</option>'
            for v, label in (("", ""), ("true", "Yes"), ("false", "No"))
        )
        return f"<select {attrs}>{options}</select>"
    kind = {
        FieldType.NUMBER: 'type="number" step="any"',
        FieldType.INTEGER: 'type="number" step="1"',
        FieldType.DATE: 'type="date"',
        FieldType.DATE_TIME: 'type="datetime-local"',
        FieldType.DOCUMENT: 'type="url" placeholder="https://..."',
    }.get(field.type, 'type="text"')
    return f'<input {attrs} {kind} value="{escape(value)}">'


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, dict):  # a document
        return str(value.get("title") or value.get("url") or value.get("reference") or "")
    return str(value)


def _received(state: PathwayState, step: Step) -> str:
    """What the steps this one waits for delivered: the provider needs it to do the work."""
    sections = []
    for before_id in step.after:
        latest = state.latest_delivery(before_id)
        if latest is None or not latest.output:
            continue
        rows = "".join(
            f"<dt>{escape(name.replace('_', ' '))}</dt><dd>{escape(_shown(value))}</dd>"
            for name, value in latest.output.items()
        )
        sections.append(f"<h3>{escape(state.definition.step(before_id).title)}</h3><dl>{rows}</dl>")
    return f"<h2>Handed over to you</h2>{''.join(sections)}" if sections else ""


def _render(
    state: PathwayState,
    handover: Handover,
    form: dict[str, str] | None = None,
    problems: list[str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    step: Step = state.definition.step(handover.step_id)
    form = form or {}
    moves = PROVIDER_MOVES.get(handover.status, frozenset())
    errors = ""
    if problems:
        items = "".join(f"<li>{escape(p)}</li>" for p in problems)
        errors = f'<div class="errors" role="alert"><p>Not saved:</p><ul>{items}</ul></div>'
    patient = escape(state.patient.name or "") + f" (NHS number {escape(state.patient.nhs_number)})"
    due = handover.complete_by.astimezone(UTC).strftime("%d %b %Y %H:%M UTC")
    buttons = ""
    if TaskStatus.ACCEPTED in moves:
        buttons += '<button name="action" value="accept">Accept</button>'
    if TaskStatus.IN_PROGRESS in moves:
        buttons += '<button name="action" value="start">Start</button>'
    version = f'<input type="hidden" name="version" value="{handover.version}">'
    actions = f'<form method="post" novalidate>{version}{buttons}</form>' if buttons else ""
    reject = ""
    if TaskStatus.REJECTED in moves:
        reason = escape(form.get("reason", ""))
        reject = (
            f'<form method="post" novalidate>{version}<label for="reason">Reason for rejecting</label>'
            f'<textarea id="reason" name="reason">{reason}</textarea>'
            '<button name="action" value="reject">Reject</button></form>'
        )
    fields = "".join(
        f'<label for="field.{escape(f.name)}">{escape(f.name.replace("_", " "))}'
        f'{" (required)" if f.required else ""}</label>'
        + (f"<small>{escape(f.description)}</small>" if f.description else "")
        + _input(f, form.get(f"field.{f.name}", ""))
        for f in step.handover
    )
    complete = (
        f'<h2>Complete</h2><form method="post" novalidate>{version}{fields}'
        '<button name="action" value="complete">Complete</button></form>'
        if TaskStatus.COMPLETED in moves
        else ""
    )
    body = (
        f"<h1>{escape(step.title)}</h1>"
        f"<p>For {patient}. Complete by {due}.</p>"
        f'<p class="status">Status: <strong id="status">{escape(handover.status.value)}</strong></p>'
        f"{errors}{actions}{reject}{_received(state, step)}{complete}"
    )
    return _page(step.title, body, status)


@router.get("/portal/{token}", include_in_schema=False)
async def show(token: str, request: Request) -> Response:
    try:
        _, state, handover = await _handover(request, token)
    except Gone as gone:
        return _page("Link not available", f"<h1>Link not available</h1><p>{escape(gone.message)}</p>", gone.status)
    return _render(state, handover)


async def _form(request: Request) -> dict[str, str]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise ApiError(415, ["send the form as application/x-www-form-urlencoded"])
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ApiError(413, [f"the form must be at most {MAX_FORM_BYTES} bytes"])
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, ["the form is not valid"]) from None
    return {name: values[-1] for name, values in fields.items()}


def _value(field: HandoverField, raw: str) -> Any:
    """A form string as the value a FHIR client would send; the engine checks it either way."""
    text = raw.strip()
    if field.type is FieldType.INTEGER and re.fullmatch(r"-?\d{1,18}", text):
        return int(text)
    if field.type is FieldType.NUMBER:
        try:
            return float(text)
        except ValueError:
            return text
    if field.type is FieldType.BOOLEAN and text in ("true", "false"):
        return text == "true"
    if field.type is FieldType.DATE_TIME and _LOCAL_MINUTE.match(text):
        return f"{text}:00Z" if text.count(":") == 1 else f"{text}Z"  # the form says UTC
    if field.type is FieldType.DOCUMENT:
        return {"url": text}
    return text


def _output(step: Step, form: dict[str, str]) -> dict[str, Any]:
    return {
        f.name: _value(f, form[f"field.{f.name}"])
        for f in step.handover
        if form.get(f"field.{f.name}", "").strip()
    }


@router.post("/portal/{token}", include_in_schema=False)
async def act(token: str, request: Request) -> Response:
    """Apply one move; back to the page (303) when done, or the page with every problem."""
    try:
        grant, state, handover = await _handover(request, token)
    except Gone as gone:
        return _page("Link not available", f"<h1>Link not available</h1><p>{escape(gone.message)}</p>", gone.status)
    try:
        form = await _form(request)
    except ApiError as error:
        return _render(state, handover, problems=error.problems, status=error.status)
    status = ACTIONS.get(form.get("action", ""))
    if status is None:
        return _render(state, handover, form, ["choose accept, reject, start or complete"], 400)
    if status is TaskStatus.REJECTED and not form.get("reason", "").strip():
        return _render(state, handover, form, ["give a reason for rejecting"], 400)
    step = state.definition.step(handover.step_id)
    version = form.get("version", "")
    try:
        command = ProviderCommand(
            handover_id=handover.id,
            provider_id=grant.provider_id,
            status=status,
            output=_output(step, form) if status is TaskStatus.COMPLETED else {},
            reason=form.get("reason", "").strip() or None,
            expected_version=int(version) if version.isdigit() else None,
            actor=f"provider:{grant.provider_id}",
        )
        await context.gateway(request).update(
            state.pathway_id, PathwayWorkflow.provider_update, command, str(handover.version)
        )
    except ValidationError as error:
        problems = [str(e["msg"]) for e in error.errors(include_input=False)]
        return _render(state, handover, form, problems, 422)
    except ApiError as error:
        return _render(state, handover, form, error.problems, error.status)
    if status in (TaskStatus.COMPLETED, TaskStatus.REJECTED):  # the link's work is done
        done = f'<p class="status">Thank you: <strong id="status">{status.value}</strong>.</p>'
        return _page(step.title, f"<h1>{escape(step.title)}</h1>{done}")
    return RedirectResponse(str(request.url), 303, HEADERS)


def install(app: FastAPI) -> None:
    app.include_router(router)

