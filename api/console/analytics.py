"""The console's analytics pages: value-stream map, provider scorecard, SPC charts, work in progress.

Every number comes from the analytics API's own functions (api/analytics.py: the same report,
from the one report cache, value stream and scorecard /api/analytics serves), never recomputed
here; this module only chooses, orders and draws. Filters live in the URL (definition, provider,
since, until) so a view can be bookmarked and shared; a bad filter shows the form with its
problem (400), never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api import analytics as api
from api import context
from api.console import charts, session
from api.console.pages import page, templates
from api.problems import ApiError
from api.tokens import Principal
from pathways.analytics.measures import Ranked
from pathways.analytics.report import Measures, Report
from pathways.analytics.spc import Point, Rule, XmrChart
from pathways.model import PathwayDefinition

T = TypeVar("T")
router = APIRouter(include_in_schema=False)
templates.env.filters.update(secs=charts.seconds, pct=charts.percent, week=charts.week_label,
                             moment=charts.moment)

LONGEST_VALUE = 200
"""The API's own limit on an id or a date in the query."""
FIELDS = {"definition": "Pathway", "provider": "Provider", "since": "From", "until": "Before"}
TABS = (
    ("/analytics", "Value stream"),
    ("/analytics/providers", "Provider scorecard"),
    ("/analytics/spc", "Is it getting better? (SPC)"),
    ("/analytics/wip", "Work in progress"),
)


@dataclass(frozen=True)
class Filters:
    """The view's filters as given in the URL (None when not given: the API's defaults)."""

    definition: str | None = None
    provider: str | None = None
    since: str | None = None
    until: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Filters:
        def value(name: str) -> str | None:
            text = str(params.get(name, "")).strip()
            return text or None

        return cls(*(value(name) for name in FIELDS))

    def params(self, **changes: str | None) -> dict[str, str]:
        values = {name: getattr(self, name) for name in FIELDS} | changes
        return {k: v for k, v in values.items() if v}

    def query(self, **changes: str | None) -> str:
        return urlencode(self.params(**changes))


def providers_of(definitions: list[PathwayDefinition]) -> dict[str, str]:
    """Provider names by id, from the definitions' roles (the lead provider included)."""
    names: dict[str, str] = {}
    for definition in definitions:
        names.setdefault(definition.lead_provider.id, definition.lead_provider.name)
        for role in definition.roles:
            for provider in role.providers:
                names.setdefault(provider.id, provider.name)
    return names


def problems(filters: Filters, definitions: list[PathwayDefinition]) -> list[str]:
    """What is wrong with the filters, in the form's words (empty when nothing is)."""
    found = []
    for name, label in FIELDS.items():
        if len(getattr(filters, name) or "") > LONGEST_VALUE:
            found.append(f"{label}: at most {LONGEST_VALUE} characters.")
    if found:
        return found
    if filters.definition and filters.definition not in {d.id for d in definitions}:
        found.append(f"Pathway: there is no definition “{filters.definition}” in the catalogue; "
                     "choose one from the list.")
    if filters.provider and filters.provider not in providers_of(definitions):
        found.append(f"Provider: there is no provider “{filters.provider}” in the catalogue; "
                     "choose one from the list.")
    for name in ("since", "until"):
        try:
            api.instant(getattr(filters, name), name)
        except ApiError:
            found.append(f"{FIELDS[name]}: enter a date as YYYY-MM-DD (or an ISO date-time).")
    return found


def in_form_words(messages: list[str]) -> list[str]:
    """The report's refusals ('since must be before until') with the form's field names."""
    found = []
    for message in messages:
        text = re.sub(r"\b(since|until)\b", lambda m: f"“{FIELDS[m.group(1)]}”", message)
        found.append(text[:1].upper() + text[1:])
    return found


def date_value(value: str | None) -> tuple[str, str]:
    """A filter's value and the input type that can show it (a date input drops anything that
    is not a plain date, so a date-time or a typing error is shown in a text input)."""
    if value is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return value or "", "date"
    return value, "text"


class View:
    """What every analytics page shows around its own content: filters, tabs, period, exports."""

    def __init__(self, request: Request, need_definition: bool = False) -> None:
        self.request = request
        self.principal: Principal = session.require(request)
        self.definitions = list(context.catalogue(request))
        self.filters = Filters.parse(request.query_params)
        self.errors = problems(self.filters, self.definitions)
        if need_definition and not self.errors and not self.filters.definition:
            if not self.definitions:
                self.errors.append("Pathway: the catalogue has no definitions yet.")
            else:
                self.filters = replace(self.filters, definition=self.definitions[0].id)

    def load(self, fetch: Callable[[Filters], T]) -> T | None:
        """The page's data from the API's functions, or None with the refusal in self.errors."""
        if self.errors:
            return None
        try:
            return fetch(self.filters)
        except ApiError as error:
            self.errors = in_form_words(error.problems)
            return None

    def report(self, provider: bool = True) -> Report | None:
        return self.load(lambda f: api.report_for(
            self.request, f.definition, f.provider if provider else None, f.since, f.until))

    def render(self, name: str, values: dict[str, Any]) -> HTMLResponse:
        f = self.filters
        chosen = next((d for d in self.definitions if d.id == f.definition), None)
        every = providers_of(self.definitions)
        names = providers_of([chosen] if chosen else self.definitions)
        if f.provider in every:  # a provider of another pathway stays chosen, shown by name
            names.setdefault(f.provider, every[f.provider])
        since, since_type = date_value(f.since)
        until, until_type = date_value(f.until)
        report: Report | None = values.get("report")
        if report is not None and not since:
            since, since_type = report.since.date().isoformat(), "date"
        base = {
            "filters": f,
            "definitions": self.definitions,
            "definition": chosen,
            "provider_names": every,
            "provider_choices": sorted(names.items(), key=lambda kv: kv[1].lower()),
            "since_value": since, "since_type": since_type,
            "until_value": until, "until_type": until_type,
            "errors": self.errors,
            "invalid": {name for name, label in FIELDS.items()
                        if any(e.startswith(f"{label}:") or f"“{label}”" in e
                               for e in self.errors)},
            "tabs": TABS,
            "query": f.query(),
            "exports": [(kind, "/analytics/export?" + urlencode(
                {"format": kind, **f.params(provider=None)})) for kind in ("csv", "xes", "ocel")],
        }
        return page(self.request, name, base | values, 400 if self.errors else 200)


# --- value stream ----------------------------------------------------------------------------------


@router.get("/analytics")
def value_stream_page(request: Request) -> HTMLResponse:
    """One definition's value-stream map: steps in order with waiting and working time, flow
    efficiency, breach rate and handover gaps, the bottleneck highlighted; national standards."""
    view = View(request, need_definition=True)
    stream = view.load(lambda f: api.value_stream(
        view.principal, request, f.definition or "", f.since, f.until))
    report = view.report(provider=False) if stream is not None else None
    values: dict[str, Any] = {"stream": stream, "report": report}
    if stream is not None and report is not None:
        steps = [(s.step_id, s.title, s.measures, s.bottleneck) for s in stream.steps]
        title = f"Value stream of {view_title(view)}"
        values |= {
            "map": charts.value_stream_svg(steps, title),
            "bottleneck": next((s for s in stream.steps if s.bottleneck), None),
            "critical": {r.key: r for r in report.bottlenecks.critical_path},
            "titles": {s.step_id: s.title for s in stream.steps},
        }
    return view.render("analytics.html", values)


def view_title(view: View) -> str:
    chosen = next((d for d in view.definitions if d.id == view.filters.definition), None)
    return chosen.title if chosen else "every pathway"


# --- provider scorecard ------------------------------------------------------------------------------

SCORE_COLUMNS: dict[str, tuple[str, Callable[[Measures, Ranked | None], Any], bool]] = {
    "provider": ("Provider", lambda m, r: m.key, False),
    "handovers": ("Handovers", lambda m, r: m.handovers, True),
    "attainment": ("SLA attainment", lambda m, r: m.attainment, False),
    "breach_rate": ("Breach rate", lambda m, r: m.breach_rate, True),
    "first_time_right": ("First-time-right", lambda m, r: m.first_time_right, False),
    "escalations": ("Escalations per 100", lambda m, r: m.escalations_per_100, True),
    "reassignments": ("Reassigned away", lambda m, r: m.reassignments, True),
    "rejections": ("Rejections", lambda m, r: m.rejections, True),
    "refused": ("Refused deliveries", lambda m, r: m.refused_deliveries, True),
    "waiting": ("Share of waiting", lambda m, r: r.share if r else None, True),
}
"""Column: heading, value, and whether larger is worse (one click sorts worst first)."""
DEFAULT_SORT = "waiting"


def ordered(providers: list[Measures], ranking: dict[str, Ranked], sort: str,
            names: Mapping[str, str]) -> list[Measures]:
    """Worst first on the column (providers by name when sorting by provider), none last; ties
    in bottleneck order."""
    _, value, larger_worse = SCORE_COLUMNS[sort]

    def key(m: Measures) -> tuple[Any, ...]:
        v = value(m, ranking.get(m.key))
        rank = ranking[m.key].rank if m.key in ranking else len(ranking) + 1
        if sort == "provider":
            return (0, names.get(m.key, m.key).lower(), rank)
        if v is None:
            return (1, 0, rank)
        return (0, -v if larger_worse else v, rank)

    return sorted(providers, key=key)


@router.get("/analytics/providers")
def scorecard_page(request: Request) -> HTMLResponse:
    """Each provider's SLA attainment, breach rate, first-time-right, escalations per 100,
    reassignments, rejections and share of waiting; worst first (the bottleneck on top)."""
    view = View(request)
    sort = request.query_params.get("sort", DEFAULT_SORT)
    if sort not in SCORE_COLUMNS:
        sort = DEFAULT_SORT
    card = view.load(lambda f: api.providers(
        view.principal, request, f.definition, f.provider, f.since, f.until))
    values: dict[str, Any] = {"card": card, "sort": sort, "columns": SCORE_COLUMNS,
                              "report": view.report() if card is not None else None}
    if card is not None:
        ranking = {r.key: r for r in card.ranking}
        names = providers_of(view.definitions)
        values |= {"rows": ordered(list(card.providers), ranking, sort, names),
                   "ranking": ranking}
    return view.render("analytics_providers.html", values)


# --- SPC -------------------------------------------------------------------------------------------

RULE_TEXT = {
    Rule.OUTSIDE_LIMITS: "{beyond} the {limit} process limit",
    Rule.RUN: "one of 7 or more weeks in a row {side} the mean",
    Rule.TREND: "one of 7 or more weeks in a row, each {slope} than the one before",
    Rule.NEAR_LIMIT: "two of three weeks close to the {limit} limit (beyond 2 sigma)",
}
VARIATION_TEXT = {
    "concern": "Special cause of concern",
    "improvement": "Special cause of improvement",
    "special": "Special cause (neither better nor worse by itself)",
}


def explain(chart: XmrChart, point: Point) -> list[str]:
    """Why a point is special, one phrase per rule it triggers, in plain words."""
    at = chart.points.index(point)
    before = chart.points[at - 1].value if at > 0 else None
    after = chart.points[at + 1].value if at + 1 < len(chart.points) else None
    rising = (before is not None and point.value > before) or (
        before is None and after is not None and after > point.value)
    words = {
        "beyond": "above" if point.side > 0 else "below",
        "limit": "upper" if point.side > 0 else "lower",
        "side": "above" if point.side > 0 else "below",
        "slope": "higher" if rising else "lower",
    }
    return [RULE_TEXT[rule].format(**words) for rule in point.rules]


def verdict(chart: XmrChart) -> str:
    """The chart in one sentence, as Making Data Count reads it."""
    kinds = [p.variation for p in chart.special]
    if not kinds:
        return "Common cause variation only: no signal that the process has changed."
    parts = []
    for kind, text in (("concern", "of concern"), ("improvement", "of improvement"),
                       ("special", "without a direction")):
        count = kinds.count(kind)
        if count:
            parts.append(f"{count} week{'s' if count != 1 else ''} {text}")
    return "Special cause variation: " + ", ".join(parts) + "."


def spc_panel(chart: XmrChart | None, title: str, fmt: charts.Format) -> dict[str, Any]:
    if chart is None:
        return {"title": title, "chart": None}
    floored = chart.lower_limit < 0
    return {
        "title": title, "chart": chart, "fmt": fmt, "verdict": verdict(chart),
        "svg": charts.xmr_svg(chart, title, fmt),
        "special": [(n, p, explain(chart, p), VARIATION_TEXT.get(p.variation, p.variation))
                    for n, p in charts.special_points(chart)],
        "lower": max(0.0, chart.lower_limit), "floored": floored,
    }


@router.get("/analytics/spc")
def spc_page(request: Request) -> HTMLResponse:
    """XmR charts of weekly mean lead time and breach rate with their special causes."""
    view = View(request)
    report = view.report()
    values: dict[str, Any] = {"report": report}
    if report is not None:
        values["panels"] = [
            spc_panel(report.spc.lead_time, "Weekly mean lead time of handovers", charts.seconds),
            spc_panel(report.spc.breach_rate, "Weekly breach rate", charts.percent),
        ]
    return view.render("analytics_spc.html", values)


# --- work in progress ----------------------------------------------------------------------------------


def little_text(departure: float | None) -> str:
    """What the departure from Little's law says about the period."""
    if departure is None:
        return "No prediction: nothing arrived in the period."
    if abs(departure) < 0.1:
        return ("The observed work in progress is close to what Little's law predicts: the flow "
                "was about stable over the period.")
    if departure > 0:
        return (f"The observed work in progress is {charts.percent(departure)} above what "
                "Little's law predicts: work built up over the period, so lead times measured on "
                "finished handovers understate what patients now wait.")
    return (f"The observed work in progress is {charts.percent(-departure)} below what Little's "
            "law predicts: the queue was draining, or long handovers are still open and not yet "
            "in the lead time.")


@router.get("/analytics/wip")
def wip_page(request: Request) -> HTMLResponse:
    """Open handovers over time with arrivals and completions, and Little's law."""
    view = View(request)
    flow = view.load(lambda f: api.wip(
        view.principal, request, f.definition, f.provider, f.since, f.until))
    values: dict[str, Any] = {"flow": flow, "report": view.report() if flow else None}
    if flow is not None:
        predicted = flow.little.predicted_wip if flow.little else None
        values |= {
            "svg": charts.wip_svg(flow.wip, predicted, f"Work in progress of {view_title(view)}"),
            "little_text": little_text(flow.little.departure if flow.little else None),
            "arrived": sum(p.arrivals for p in flow.wip),
            "completed": sum(p.completions for p in flow.wip),
        }
    return view.render("analytics_wip.html", values)


# --- event-log export ------------------------------------------------------------------------------------


@router.get("/analytics/export")
def export(request: Request) -> Response:
    """The event log (CSV, XES or OCEL 2.0) for process mining, with the page's filters."""
    view = View(request)
    kind = request.query_params.get("format", "csv")
    if kind not in {k.value for k in api.ExportFormat}:
        view.errors.append("Export: the format is csv, xes or ocel.")
    download: Response | None = view.load(lambda f: api.export(
        view.principal, request, api.ExportFormat(kind), f.definition, f.since, f.until))
    if download is None:
        return view.render("analytics.html", {"stream": None, "report": None,
                                              "action": "/analytics"})
    return download
