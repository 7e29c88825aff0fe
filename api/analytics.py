"""Lean flow analytics for coordinators and the console (/api/analytics), and event-log exports.

Everything is read from the event store (flow summary folded from the event log), never from
Temporal. Periods are `since` (inclusive) and `until` (exclusive): ISO dates (midnight UTC) or
date-times with an offset; by default the quarter (13 weeks) up to now.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from activities.analytics import flow_report, iter_events
from api import context
from api.auth import Coordinator
from api.problems import ApiError, api_errors
from pathways.analytics.exports import csv_lines, ocel_chunks, xes_chunks
from pathways.analytics.measures import Ranked
from pathways.analytics.report import Flow, Measures, Report
from pathways.analytics.spc import XmrChart, svg
from pathways.catalogue import UnknownDefinition
from pathways.dates import utc_instant

router = APIRouter(prefix="/api/analytics", tags=["Analytics"])

DefinitionQuery = Annotated[str | None, Query(max_length=200, description="definition id")]
ProviderQuery = Annotated[str | None, Query(max_length=200, description="provider id")]
SinceQuery = Annotated[str | None, Query(max_length=40, description="from (date or date-time)")]
UntilQuery = Annotated[str | None, Query(max_length=40, description="to, exclusive")]


def instant(value: str | None, name: str) -> datetime | None:
    """An ISO date (midnight UTC) or a date-time (UTC when it has no offset)."""
    if value is None:
        return None
    try:
        return utc_instant(value)
    except ValueError:
        raise ApiError(400, [f"{name} must be an ISO date or date-time"]) from None



def report_for(request: Request, definition: str | None, provider: str | None,
               since: str | None, until: str | None) -> Report:
    """The report for these parameters, from the report cache every analytics page and route
    shares (activities.analytics.CACHE: the console's pages ask for the same one several
    times): one refresh of the flow summary per request, cached or not."""
    start, end = instant(since, "since"), instant(until, "until")
    try:
        return flow_report(context.store(request), definition, provider, start, end)
    except ValueError as error:
        raise ApiError(400, [str(error)]) from None


@router.get("/report", response_model=Report, responses=api_errors(400, 401, 403))
def report(principal: Coordinator, request: Request, definition: DefinitionQuery = None,
           provider: ProviderQuery = None, since: SinceQuery = None,
           until: UntilQuery = None) -> Report:
    """The whole flow report: measures overall, per step and per provider, bottlenecks, WIP
    and Little's law, weekly SPC charts and national standards."""
    return report_for(request, definition, provider, since, until)


class StreamStep(BaseModel):
    """One step of the value-stream map, in the definition's order."""

    step_id: str
    title: str
    measures: Measures | None
    bottleneck: bool = Field(description="the step with the largest share of waiting")
    waiting_share: float | None


class ValueStream(BaseModel):
    definition_id: str
    since: datetime
    until: datetime
    steps: list[StreamStep]
    flow_efficiency: float | None
    lead: Measures


@router.get("/value-stream", response_model=ValueStream, responses=api_errors(400, 401, 403, 404))
def value_stream(principal: Coordinator, request: Request, definition: str = Query(max_length=200),
                 since: SinceQuery = None, until: UntilQuery = None) -> ValueStream:
    """Steps in definition order, each with waiting and working time, flow efficiency and
    breach rate; the bottleneck flagged."""
    try:
        steps = context.catalogue(request).get(definition).steps
    except UnknownDefinition:
        raise ApiError(404, [f"definition {definition} not found"]) from None
    data = report_for(request, definition, None, since, until)
    measured = {m.key: m for m in data.steps}
    shares: dict[str, Ranked] = {r.key: r for r in data.bottlenecks.steps}
    top = data.bottlenecks.steps[0].key if data.bottlenecks.steps else None
    return ValueStream(
        definition_id=definition, since=data.since, until=data.until,
        flow_efficiency=data.overall.flow_efficiency, lead=data.overall,
        steps=[
            StreamStep(step_id=step.id, title=step.title, measures=measured.get(step.id),
                       bottleneck=step.id == top and shares[step.id].waiting_seconds > 0,
                       waiting_share=shares[step.id].share if step.id in shares else None)
            for step in steps
        ],
    )


class Scorecard(BaseModel):
    since: datetime
    until: datetime
    providers: list[Measures]
    ranking: list[Ranked] = Field(description="providers by their share of waiting")


@router.get("/providers", response_model=Scorecard, responses=api_errors(400, 401, 403))
def providers(principal: Coordinator, request: Request, definition: DefinitionQuery = None,
              provider: ProviderQuery = None, since: SinceQuery = None,
              until: UntilQuery = None) -> Scorecard:
    """The provider scorecard: SLA attainment, breach rate, escalations per 100, reassignments,
    rejections, refused deliveries and first-time-right per provider."""
    data = report_for(request, definition, provider, since, until)
    return Scorecard(since=data.since, until=data.until, providers=data.providers,
                     ranking=data.bottlenecks.providers)


@router.get("/wip", response_model=Flow, responses=api_errors(400, 401, 403))
def wip(principal: Coordinator, request: Request, definition: DefinitionQuery = None,
        provider: ProviderQuery = None, since: SinceQuery = None,
        until: UntilQuery = None) -> Flow:
    """Work in progress now and per day, arrival and completion rates, Little's law."""
    return report_for(request, definition, provider, since, until).flow


class Measure(StrEnum):
    LEAD_TIME = "lead_time"
    BREACH_RATE = "breach_rate"


def _chart(data: Report, measure: Measure) -> XmrChart:
    chart = data.spc.lead_time if measure is Measure.LEAD_TIME else data.spc.breach_rate
    if chart is None:
        raise ApiError(404, ["fewer than two weeks with completed handovers in the period"])
    return chart


@router.get("/spc", response_model=XmrChart, responses=api_errors(400, 401, 403, 404))
def spc(principal: Coordinator, request: Request, measure: Measure = Measure.LEAD_TIME,
        definition: DefinitionQuery = None, provider: ProviderQuery = None,
        since: SinceQuery = None, until: UntilQuery = None) -> XmrChart:
    """XmR chart of weekly mean lead time (seconds) or breach rate, with special causes."""
    return _chart(report_for(request, definition, provider, since, until), measure)


@router.get("/spc.svg", responses={200: {"content": {"image/svg+xml": {}}},
                                   **api_errors(400, 401, 403, 404)})
def spc_svg(principal: Coordinator, request: Request, measure: Measure = Measure.LEAD_TIME,
            definition: DefinitionQuery = None, provider: ProviderQuery = None,
            since: SinceQuery = None, until: UntilQuery = None) -> Response:
    """The same chart drawn as SVG on the server (no script, no CDN)."""
    chart = _chart(report_for(request, definition, provider, since, until), measure)
    title = "Weekly mean lead time (s)" if measure is Measure.LEAD_TIME else "Weekly breach rate"
    return Response(svg(chart, title), media_type="image/svg+xml")


class ExportFormat(StrEnum):
    CSV = "csv"
    XES = "xes"
    OCEL = "ocel"


MEDIA = {ExportFormat.CSV: ("text/csv", "csv"), ExportFormat.XES: ("application/xml", "xes"),
         ExportFormat.OCEL: ("application/json", "jsonocel")}


@router.get("/export", responses={200: {"content": {m: {} for m, _ in MEDIA.values()}},
                                  **api_errors(400, 401, 403)})
def export(principal: Coordinator, request: Request, format: ExportFormat = ExportFormat.CSV,
           definition: DefinitionQuery = None, since: SinceQuery = None,
           until: UntilQuery = None) -> StreamingResponse:
    """The event log for process mining: CSV, XES (IEEE 1849) or OCEL 2.0 JSON, streamed."""
    events = iter_events(context.store(request), definition, instant(since, "since"),
                         instant(until, "until"))
    chunks: Iterator[str]
    if format is ExportFormat.CSV:
        chunks = csv_lines(events)
    elif format is ExportFormat.XES:
        chunks = xes_chunks(events)
    else:
        chunks = ocel_chunks(events)
    media, suffix = MEDIA[format]
    headers = {"Content-Disposition": f'attachment; filename="pathways-events.{suffix}"'}
    return StreamingResponse(chunks, media_type=media, headers=headers)



