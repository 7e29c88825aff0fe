"""Settlement JSON API (/api/settlement), for coordinators and the finance lead.

- GET  /api/settlement/statements?period=2026-Q4[&provider=ID]: each provider's statement, every
  line naming the events behind it (the ledger is first brought up to now; entries are never
  changed);
- GET  /api/settlement/pathways/{id}: a pathway's ledger lines and payment position (what each
  handover earned, what is at risk and why);
- GET  /api/settlement/alliance?period=2026-Q4: the alliance's gain or loss share per member;
- POST /api/settlement/outcomes: record a pathway's outcome score on the patient's behalf.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from activities.ledger import LedgerRefused, LedgerStore
from api import context
from api.auth import Coordinator
from api.problems import ApiError, api_errors
from pathways.settlement import LedgerEntry, LedgerInput, Outcome, Period, load_contracts
from pathways.settlement.ledger import alliance
from pathways.settlement.position import PaymentPosition, missed_top_ups, position
from pathways.settlement.statements import (
    AllianceView,
    Statement,
    alliance_view,
    providers_in,
    statement,
)
from pathways.validation import DefinitionError

router = APIRouter(prefix="/api/settlement", tags=["Settlement"])


class Statements(BaseModel):
    period: str
    closed: bool
    statements: list[Statement]


class PathwayPayments(BaseModel):
    entries: list[LedgerEntry]
    position: PaymentPosition | None


class OutcomeRequest(BaseModel):
    pathway_id: str
    score: Outcome


def ledger(request: Request) -> LedgerStore:
    """The app's ledger, made (and migrated) on first use, under the contracts beside the
    catalogue."""
    found: LedgerStore | None = getattr(request.app.state, "ledger", None)
    if found is None:
        settings = context.settings(request)
        try:
            terms = load_contracts(settings.catalogue_dir.resolve().parent / "contracts",
                                   context.catalogue(request))
        except DefinitionError as error:
            raise ApiError(503, [f"invalid contract terms: {error}"]) from None
        found = LedgerStore(context.store(request), terms)
        found.migrate()
        request.app.state.ledger = found
    return found


@router.get("/statements", response_model=Statements, responses=api_errors(400, 401, 403, 503))
def statements(
    principal: Coordinator, request: Request,
    period: str = Query(description="quarter, e.g. 2026-Q4 (years 1970-2999)",
                        pattern=r"^(19[7-9][0-9]|2[0-9]{3})-Q[1-4]$"),
    provider: str | None = Query(default=None, max_length=200),
) -> Statements:
    """Each provider's statement for the period (or one provider's)."""
    try:
        wanted = str(Period.parse(period))
    except ValueError as error:
        raise ApiError(400, [str(error)]) from None
    books = ledger(request)
    books.post(datetime.now(UTC))
    entries = books.entries(period=wanted)
    closed = wanted in books.closed_periods()
    providers = [provider] if provider else providers_in(entries, wanted)
    events = books.events()
    found = [statement(entries, p, wanted, closed,
                       missed=missed_top_ups(events, books.contracts, p, Period.parse(wanted)))
             for p in providers]
    return Statements(period=wanted, closed=closed, statements=found)


class Alliance(BaseModel):
    period: str
    closed: bool
    alliances: list[AllianceView]


@router.get("/alliance", response_model=Alliance, responses=api_errors(400, 401, 403, 503))
def alliance_share(
    principal: Coordinator, request: Request,
    period: str = Query(description="quarter, e.g. 2026-Q4 (years 1970-2999)",
                        pattern=r"^(19[7-9][0-9]|2[0-9]{3})-Q[1-4]$"),
) -> Alliance:
    """The alliance's gain or loss against target per member (provisional until closed)."""
    try:
        wanted = Period.parse(period)
    except ValueError as error:
        raise ApiError(400, [str(error)]) from None
    books = ledger(request)
    books.post(datetime.now(UTC))
    found = alliance(books.events(), books.inputs(), books.contracts, wanted, books.entries())
    return Alliance(period=str(wanted), closed=str(wanted) in books.closed_periods(),
                    alliances=[alliance_view(r) for r in found])


@router.get("/pathways/{pathway_id}", response_model=PathwayPayments,
            responses=api_errors(401, 403, 404, 503))
def pathway_payments(principal: Coordinator, request: Request, pathway_id: str) -> PathwayPayments:
    """The pathway's ledger lines and its payment position now."""
    books = ledger(request)
    events = context.store(request).events(pathway_id)
    if not events:
        raise ApiError(404, [f"pathway {pathway_id} not found"])
    now = datetime.now(UTC)
    books.post(now)
    first = events[0]
    contract = books.contracts.for_pathway(
        f"{first.definition_id}@{first.definition_version}", first.at)
    answer = next((i for i in reversed(books.inputs()) if i.pathway_id == pathway_id), None)
    payment = None if contract is None else position(
        events, answer, now, contract, books.contracts.definition(contract))
    entries = [e for e in books.entries() if e.pathway_id == pathway_id]
    return PathwayPayments(entries=entries, position=payment)


@router.post("/outcomes", response_model=LedgerInput, status_code=201,
             responses=api_errors(401, 403, 404, 408, 413, 415, 503))
def record_outcome(principal: Coordinator, request: Request, body: OutcomeRequest) -> LedgerInput:
    """Record the pathway's outcome score on the patient's behalf (a later one replaces it)."""
    try:
        return ledger(request).record_outcome(body.pathway_id, body.score, principal.actor,
                                              datetime.now(UTC))
    except LedgerRefused as refused:
        raise ApiError(404, [str(refused)]) from None
