"""Settlement in the console, and the patient's questionnaire page.

- GET  /settlement?period=2026-Q4: each provider's statement for the quarter (every line in
  pounds, its rule, why, and links to the pathway and the events behind it), the alliance's gain
  or loss share with its caps, a CSV download (/settlement/statements.csv);
- GET  /settlement/pathways/{id}: the pathway's payment position (what is at risk and why),
  its ledger lines and events, the patient's questionnaire link to copy, and a form to record
  the answer on the patient's behalf (POSTs to .../questionnaire-link and .../outcome);
- GET/POST /questionnaire/{token}: the patient's page, no sign-in: the NHS Friends and Family
  Test question and the contract's own items; the answer is recorded as the pathway's outcome
  (the same input as POST /api/settlement/outcomes) and spends the link. A used, replaced or
  expired link shows a plain page saying so (410), never an error.

Reads and writes go through api/settlement.py's ledger (same refusals as the JSON API).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from activities.ledger import LedgerRefused, LedgerStore, LinkGone
from api import context, portal
from api import settlement as api
from api.console import session
from api.console.pages import _checked, page, templates
from api.problems import ApiError
from pathways.settlement import Outcome, Period
from pathways.settlement.ledger import alliance
from pathways.settlement.position import missed_top_ups, position
from pathways.settlement.statements import alliance_view, providers_in, statement, to_csv
from pathways.settlement.terms import Contract

router = APIRouter(include_in_schema=False)
T = TypeVar("T")

FFT_QUESTION = "Overall, how was your experience of our service?"
"""The NHS Friends and Family Test question (NHS England, from April 2020)."""
FFT_ANSWERS = [
    (Outcome.VERY_GOOD, "Very good"),
    (Outcome.GOOD, "Good"),
    (Outcome.NEITHER, "Neither good nor poor"),
    (Outcome.POOR, "Poor"),
    (Outcome.VERY_POOR, "Very poor"),
    (Outcome.DONT_KNOW, "Don't know"),
]
RULE_TEXT = {
    "base": "Base price",
    "top-up": "Best-practice top-up",
    "withhold": "Withheld pending outcome",
    "withhold-release": "Withheld share released",
    "alliance-share": "Alliance gain/loss share",
}
MAX_FORM_BYTES = 16 * 1024


def pounds(pence: int | None) -> str:
    """'£1,234.56', '−£9.00' (a true minus sign): integer pence shown, never computed."""
    if pence is None:
        return "pending"
    whole, part = divmod(abs(pence), 100)
    return f"{'−' if pence < 0 else ''}£{whole:,}.{part:02d}"


templates.env.filters.update(pounds=pounds, rule_text=lambda r: RULE_TEXT.get(str(r), str(r)))


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(function, *args)


def _ledger(request: Request) -> LedgerStore:
    return api.ledger(request)


def _period(request: Request) -> tuple[Period, list[str]]:
    """The period asked for (default: the current quarter) and any problem with it."""
    text = request.query_params.get("period", "").strip()
    if not text:
        return Period.containing(datetime.now(UTC)), []
    try:
        return Period.parse(text), []
    except ValueError as error:
        return Period.containing(datetime.now(UTC)), [str(error)]


def _statements(books: LedgerStore, period: Period) -> dict[str, Any]:
    now = datetime.now(UTC)
    events = books.settled_events(now)
    wanted = str(period)
    entries = books.entries(period=wanted)
    closed = wanted in books.closed_periods()
    found = [statement(entries, p, wanted, closed,
                       missed=missed_top_ups(events, books.contracts, p, period))
             for p in providers_in(entries, wanted)]
    views = [alliance_view(r) for r in alliance(events, books.inputs(), books.contracts, period,
                                                books.entries())]
    current = Period.containing(now)
    known = {Period.parse(p) for p in books.periods()} | {current, period}
    periods = [str(p) for p in sorted(known | {current.previous(), current.next()}, reverse=True)]
    return {"statements": found, "alliances": views, "closed": closed, "periods": periods}


@router.get("/settlement")
async def settlement_page(request: Request) -> HTMLResponse:
    session.require(request)
    period, problems = _period(request)
    try:
        values = await _in_thread(_statements, _ledger(request), period)
    except ApiError as error:
        return page(request, "error.html", {"status": error.status, "problems": error.problems},
                    error.status)
    return page(request, "settlement.html",
                {"period": str(period), "problems": problems, **values},
                400 if problems else 200)


@router.get("/settlement/statements.csv")
async def statements_csv(request: Request) -> Response:
    session.require(request)
    period, problems = _period(request)
    if problems:
        return Response("\n".join(problems) + "\n", 400, media_type="text/plain")
    values = await _in_thread(_statements, _ledger(request), period)
    return Response(to_csv(values["statements"]), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="statements-{period}.csv"',
        "Cache-Control": "no-store"})


def _pathway(request: Request, books: LedgerStore, pathway_id: str) -> dict[str, Any] | None:
    events = context.store(request).events(pathway_id)
    if not events:
        return None
    now = datetime.now(UTC)
    books.post(now)
    first = events[0]
    contract = books.contracts.for_pathway(
        f"{first.definition_id}@{first.definition_version}", first.at)
    answers = [i for i in books.inputs() if i.pathway_id == pathway_id]
    answer = answers[-1] if answers else None
    payment = None if contract is None else position(
        events, answer, now, contract, books.contracts.definition(contract))
    live = books.live_link(pathway_id, now)
    return {
        "pathway_id": pathway_id, "events": events, "contract": contract, "position": payment,
        "answer": answer, "entries": books.entries(pathway_id=pathway_id),
        "link": None if live is None else api.link_view(context.settings(request), live),
        "ended": any(e.kind.value in ("pathway-completed", "pathway-cancelled") for e in events),
        "now": now,
    }


def _at_risk(values: dict[str, Any]) -> dict[str, int]:
    """Totals for the summary: earned so far, top-ups still to earn, withheld pending."""
    rows = values["position"].handovers if values["position"] else []
    return {
        "base": sum(h.base for h in rows if h.status == "completed"),
        "top_up": sum(h.top_up for h in rows),
        "top_up_at_risk": sum(h.top_up_at_risk for h in rows),
        "withheld_pending": sum(h.withheld for h in rows
                                if h.status == "completed" and h.released is None),
        "released": sum(h.released or 0 for h in rows),
    }


async def _pathway_page(request: Request, pathway_id: str, errors: list[str] | None = None,
                        status: int = 200) -> HTMLResponse:
    values = await _in_thread(_pathway, request, _ledger(request), pathway_id)
    if values is None:
        return page(request, "error.html",
                    {"status": 404, "problems": [f"pathway {pathway_id} not found"]}, 404)
    return page(request, "settlement_pathway.html", {
        **values, "totals": _at_risk(values), "errors": errors or [],
        "done": request.query_params.get("done", ""), "fft": FFT_ANSWERS,
        "question": FFT_QUESTION}, status)


@router.get("/settlement/find")
async def find(request: Request, pathway: str = "") -> Response:
    session.require(request)
    return RedirectResponse(f"/settlement/pathways/{quote(pathway.strip(), safe='')}", 303)


@router.get("/settlement/pathways/{pathway_id}")
async def pathway_payments(request: Request, pathway_id: str) -> HTMLResponse:
    session.require(request)
    return await _pathway_page(request, pathway_id)


@router.post("/settlement/pathways/{pathway_id}/questionnaire-link")
async def issue_link(request: Request, pathway_id: str) -> Response:
    principal, _ = await _checked(request)
    try:
        await _in_thread(_ledger(request).issue_link, pathway_id, principal.actor,
                         datetime.now(UTC))
    except LedgerRefused as refused:
        return await _pathway_page(request, pathway_id, [str(refused)], 404)
    return RedirectResponse(f"/settlement/pathways/{pathway_id}?done=link#questionnaire", 303)


@router.post("/settlement/pathways/{pathway_id}/outcome")
async def record_outcome(request: Request, pathway_id: str) -> Response:
    """The coordinator records the patient's answer on their behalf."""
    principal, form = await _checked(request)
    books = _ledger(request)
    try:
        score = Outcome(form.get("score", ""))
    except ValueError:
        return await _pathway_page(request, pathway_id, ["Choose the patient's answer."], 400)
    contract = await _in_thread(_contract_of, request, books, pathway_id)
    answers = _item_answers(contract, form)
    try:
        await _in_thread(books.record_outcome, pathway_id, score, principal.actor,
                         datetime.now(UTC), answers)
    except LedgerRefused as refused:
        return await _pathway_page(request, pathway_id, [str(refused)], 404)
    return RedirectResponse(f"/settlement/pathways/{pathway_id}?done=outcome#questionnaire", 303)


def _contract_of(request: Request, books: LedgerStore, pathway_id: str) -> Contract | None:
    events = context.store(request).events(pathway_id)
    if not events:
        return None
    return books.contracts.for_pathway(
        f"{events[0].definition_id}@{events[0].definition_version}", events[0].at)


def _item_answers(contract: Contract | None, form: dict[str, str]) -> dict[str, str]:
    """The contract's own items answered in the form (only offered answers are kept)."""
    if contract is None:
        return {}
    return {item.id: form[f"item.{item.id}"] for item in contract.outcome.items
            if form.get(f"item.{item.id}") in item.answers}


# --- the patient's page ---------------------------------------------------------------------


def _patient(request: Request, name: str, values: dict[str, Any], status: int = 200
             ) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, values, status_code=status)
    response.headers.update(portal.HEADERS)
    return response


def _gone(request: Request, message: str, status: int = 410) -> HTMLResponse:
    return _patient(request, "questionnaire.html", {"state": "gone", "message": message}, status)


def _open(request: Request, token: str) -> tuple[LedgerStore, str, Contract | None]:
    """(ledger, link id, contract) for a working link; LinkGone otherwise."""
    link_id = api.link_id(context.settings(request), token)
    if link_id is None:
        raise LinkGone("This link has expired, or it was not copied in full.")
    books = _ledger(request)
    link = books.link(link_id, datetime.now(UTC))
    return books, link_id, _contract_of(request, books, link.pathway_id)


@router.get("/questionnaire/{token}")
async def questionnaire(request: Request, token: str) -> Response:
    try:
        _, _, contract = await _in_thread(_open, request, token)
    except LinkGone as gone:
        return _gone(request, gone.reason)
    except (SQLAlchemyError, ApiError):
        return _gone(request, "The service is busy. Please try again in a few minutes.", 503)
    return _patient(request, "questionnaire.html", _form_values(contract, {}, []))


def _form_values(contract: Contract | None, form: dict[str, str], errors: list[str]
                 ) -> dict[str, Any]:
    return {"state": "form", "question": FFT_QUESTION, "fft": FFT_ANSWERS, "form": form,
            "errors": errors,
            "items": contract.outcome.items if contract else ()}


async def _patient_form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[-1] for name, values in fields.items()}


@router.post("/questionnaire/{token}")
async def answer(request: Request, token: str) -> Response:
    """Record the answer (spending the link), or show the form again with what is missing."""
    try:
        books, link_id, contract = await _in_thread(_open, request, token)
        form = await _patient_form(request)
        try:
            score = Outcome(form.get("score", ""))
        except ValueError:
            errors = [f"Answer the question: {FFT_QUESTION}"]
            return _patient(request, "questionnaire.html", _form_values(contract, form, errors),
                            400)
        answers = _item_answers(contract, form)
        missing = [item.text for item in contract.outcome.items
                   if item.required and item.id not in answers] if contract else []
        if missing:
            errors = [f"Answer the question: {text}" for text in missing]
            return _patient(request, "questionnaire.html", _form_values(contract, form, errors),
                            400)
        await _in_thread(books.answer_by_link, link_id, score, answers, datetime.now(UTC))
    except LinkGone as gone:
        return _gone(request, gone.reason)
    except (SQLAlchemyError, ApiError):
        return _gone(request, "The service is busy: your answer was not saved. Please try "
                     "again in a few minutes.", 503)
    return _patient(request, "questionnaire.html", {"state": "done"})
