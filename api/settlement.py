"""Settlement JSON API (/api/settlement), for coordinators and the finance lead.

- GET  /api/settlement/statements?period=2026-Q4[&provider=ID]: each provider's statement, every
  line naming the events behind it (the ledger is first brought up to now; entries are never
  changed);
- GET  /api/settlement/pathways/{id}: a pathway's ledger lines and payment position (what each
  handover earned, what is at risk and why);
- GET  /api/settlement/alliance?period=2026-Q4: the alliance's gain or loss share per member;
- POST /api/settlement/outcomes: record a pathway's outcome score on the patient's behalf;
- POST /api/settlement/pathways/{id}/questionnaire-link: a new single-use link to the patient's
  questionnaire page (GET: the link that still works). A link is also issued when the pathway
  completes; the page (/questionnaire/{token}, api/console/settlement.py) records the answer
  as the same outcome input. The token is signed like the provider portal's links and names
  only a random link id: no patient data, no pathway id.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from activities.ledger import LedgerRefused, LedgerStore, Link
from api import context
from api.auth import Coordinator
from api.problems import ApiError, api_errors
from pathways.portal_link import sign, verify
from pathways.settings import Settings
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


class QuestionnaireLink(BaseModel):
    pathway_id: str
    url: str
    expires: datetime
    issued_at: datetime
    issued_by: str


class PathwayPayments(BaseModel):
    entries: list[LedgerEntry]
    position: PaymentPosition | None
    questionnaire: QuestionnaireLink | None = None


LINK_PURPOSE = b"questionnaire-link"


def questionnaire_url(settings: Settings, link: Link) -> str:
    """The patient's page URL: a signed, expiring token naming the link id alone."""
    claims = {"sub": link.link_id, "exp": int(link.expires_at.timestamp())}
    return f"{settings.base_url}/questionnaire/{sign(settings, claims, LINK_PURPOSE)}"


def link_id(settings: Settings, token: str) -> str | None:
    """The link id a token names, when its signature holds and it has not expired."""
    claims = verify(settings, token, ("sub",), LINK_PURPOSE)
    return None if claims is None else str(claims["sub"])


def link_view(settings: Settings, link: Link) -> QuestionnaireLink:
    return QuestionnaireLink(pathway_id=link.pathway_id, url=questionnaire_url(settings, link),
                             expires=link.expires_at, issued_at=link.issued_at,
                             issued_by=link.issued_by)


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
    events = books.settled_events(datetime.now(UTC))
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
    events = books.settled_events(datetime.now(UTC))
    found = alliance(events, books.inputs(), books.contracts, wanted, books.entries())
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
    entries = books.entries(pathway_id=pathway_id)
    live = books.live_link(pathway_id, now)
    return PathwayPayments(
        entries=entries, position=payment,
        questionnaire=None if live is None else link_view(context.settings(request), live))


@router.post("/pathways/{pathway_id}/questionnaire-link", response_model=QuestionnaireLink,
             status_code=201, responses=api_errors(401, 403, 404, 503))
def new_questionnaire_link(principal: Coordinator, request: Request,
                           pathway_id: str) -> QuestionnaireLink:
    """A new single-use link to the patient's outcome questionnaire, to pass on to the patient
    (earlier unused links for the pathway stop working)."""
    try:
        link = ledger(request).issue_link(pathway_id, principal.actor, datetime.now(UTC))
    except LedgerRefused as refused:
        raise ApiError(404, [str(refused)]) from None
    return link_view(context.settings(request), link)


@router.get("/pathways/{pathway_id}/questionnaire-link", response_model=QuestionnaireLink,
            responses=api_errors(401, 403, 404, 503))
def questionnaire_link(principal: Coordinator, request: Request,
                       pathway_id: str) -> QuestionnaireLink:
    """The pathway's questionnaire link that still works (issued at completion or on request)."""
    books = ledger(request)
    now = datetime.now(UTC)
    books.post(now)
    live = books.live_link(pathway_id, now)
    if live is None:
        raise ApiError(404, [f"no working questionnaire link for pathway {pathway_id}: "
                             "issue one with POST"])
    return link_view(context.settings(request), live)


@router.post("/outcomes", response_model=LedgerInput, status_code=201,
             responses=api_errors(401, 403, 404, 408, 413, 415, 503))
def record_outcome(principal: Coordinator, request: Request, body: OutcomeRequest) -> LedgerInput:
    """Record the pathway's outcome score on the patient's behalf (a later one replaces it)."""
    try:
        return ledger(request).record_outcome(body.pathway_id, body.score, principal.actor,
                                              datetime.now(UTC))
    except LedgerRefused as refused:
        raise ApiError(404, [str(refused)]) from None
