"""The console's what-if page: pick a shipped scenario or paste/upload one, run it in the
background (pathways.simulation.background), and read baseline and changes side by side with
95% confidence intervals: national standards, SLA per step, breaches and escalations per 100
handovers, lead time and waiting, work in progress and utilisation per provider.

Bounded at the door: YAML size, replications, seed, simulated pathways per job, jobs running at
once. Every problem with a scenario is shown in the form (422), never as a server error.

Jobs are kept in the event store database (activities/whatif_jobs.py), the 20 newest: after a
restart the page shows them as they were, and those that were running as interrupted.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from activities.whatif_jobs import WhatifJobStore
from api import context
from api.console import session
from api.console.pages import page, templates
from api.console.session import CSRF_FIELD
from api.simulation import expected_pathways
from pathways.model import DefinitionError
from pathways.simulation.background import Busy, Job, Jobs
from pathways.simulation.metrics import Estimate
from pathways.simulation.report import PROVIDER_MEASURES, verdict
from pathways.simulation.runner import Column, Comparison
from pathways.simulation.scenario import Scenario, ScenarioError, parse_scenario, variants


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Kept jobs come back as the API starts; running ones end with it, kept as interrupted."""
    jobs_of(app)
    yield
    jobs: Jobs | None = getattr(app.state, "whatif_jobs", None)
    if jobs is not None:
        jobs.shutdown()


router = APIRouter(include_in_schema=False, lifespan=_lifespan)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
MAX_YAML = 64 * 1024
"""Bytes of pasted or uploaded scenario YAML."""
MAX_REPLICATIONS = 30
MAX_SEED = 2**31 - 1
MAX_PATHWAYS = 300_000
"""Simulated pathways one job may run (every replication of every variant): a few minutes of
one core; larger studies belong to `pathways simulate`, which uses every core."""
RUNNING_AT_ONCE = 2
KEPT = 20
"""Jobs kept (in memory and in the database), newest first; running ones are never dropped."""
DEFAULT_REPLICATIONS = 5


def _jobs(request: Request) -> Jobs:
    return jobs_of(request.app)


def jobs_of(app: FastAPI) -> Jobs:
    """The app's jobs, with those an earlier process kept (any it left running: interrupted)."""
    state = app.state
    if getattr(state, "whatif_jobs", None) is None:
        kept = WhatifJobStore(state.store, keep=KEPT)
        kept.migrate()
        kept.interrupt_running(datetime.now(UTC))
        state.whatif_jobs = Jobs(lambda: datetime.now(UTC), limit=RUNNING_AT_ONCE, keep=KEPT,
                                 keeper=kept)
    jobs: Jobs = state.whatif_jobs
    return jobs


@dataclass(frozen=True)
class Example:
    file: str
    name: str
    description: str


def examples() -> list[Example]:
    """The shipped scenarios (examples/scenarios/*.yaml) that parse."""
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict):
            found.append(Example(path.name, str(data.get("name", path.stem)),
                                 str(data.get("description", ""))))
    return found


# --- the form -----------------------------------------------------------------------------------
@router.get("/whatif", response_class=HTMLResponse)
async def whatif_page(request: Request) -> HTMLResponse:
    session.require(request)
    return _form_page(request, {})


def _form_page(request: Request, values: dict[str, Any], problems: list[str] | None = None,
               status: int = 200) -> HTMLResponse:
    shipped = examples()
    defaults = {"example": shipped[0].file if shipped else "", "yaml": "",
                "replications": str(DEFAULT_REPLICATIONS), "seed": "1"}
    return page(request, "whatif.html", {
        "examples": shipped,
        "values": defaults | values,
        "problems": problems or [],
        "jobs": _jobs(request).recent(),
        "limits": {"yaml_kib": MAX_YAML // 1024, "replications": MAX_REPLICATIONS,
                   "seed": MAX_SEED, "pathways": MAX_PATHWAYS, "running": RUNNING_AT_ONCE},
    }, status)


@router.post("/whatif", response_class=HTMLResponse)
async def whatif_start(request: Request) -> Response:
    """Validate the question and start it; the form again with every problem otherwise."""
    session.require(request)
    form = await request.form()
    session.check_csrf(request, _text(form.get(CSRF_FIELD)))
    values = {k: _text(form.get(k)) for k in ("example", "yaml", "replications", "seed")}
    problems: list[str] = []
    replications = _bounded(values["replications"], "Replications", 1, MAX_REPLICATIONS,
                            problems)
    seed = _bounded(values["seed"], "Seed", 0, MAX_SEED, problems)
    text, where = await _scenario_text(form.get("upload"), values, problems)
    question = None if text is None else _parse(text, where, problems)
    if question is None or problems:
        return _form_page(request, values, problems, 422)
    try:
        columns = variants(question, context.catalogue(request))
    except (ScenarioError, DefinitionError, ValueError, LookupError) as error:
        return _form_page(request, values, _listed(error), 422)
    size = expected_pathways(question, replications, len(columns))
    if size > MAX_PATHWAYS:
        return _form_page(request, values, [
            f"About {size:,} simulated pathways ({len(columns)} variants x {replications} "
            f"replications); this page runs at most {MAX_PATHWAYS:,} at a time: fewer "
            "replications or a shorter horizon, or `pathways simulate` for larger studies."],
            422)
    try:
        job = _jobs(request).start(question.name, question.description, columns,
                                   replications, seed)
    except Busy:
        return _form_page(request, values, [
            f"{RUNNING_AT_ONCE} simulations are running already: wait for one to finish or "
            "cancel one, then run this again."], 429)
    return RedirectResponse(f"/whatif/jobs/{job.id}", status_code=303)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _bounded(text: str, label: str, low: int, high: int, problems: list[str]) -> int:
    try:
        number = int(text)
    except ValueError:
        problems.append(f"{label}: a whole number from {low} to {high:,}")
        return low
    if not low <= number <= high:
        problems.append(f"{label}: a whole number from {low} to {high:,}")
    return number


async def _scenario_text(upload: Any, values: dict[str, str],
                         problems: list[str]) -> tuple[str | None, str]:
    """The YAML to run: an uploaded file, else the pasted text, else the chosen example."""
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read(MAX_YAML + 1)
        if len(data) > MAX_YAML:
            problems.append(f"The uploaded file is larger than {MAX_YAML // 1024} KiB.")
            return None, "upload"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            problems.append("The uploaded file is not UTF-8 text.")
            return None, "upload"
        values["yaml"] = text
        return text, "uploaded file"
    if values["yaml"]:
        if len(values["yaml"].encode()) > MAX_YAML:
            problems.append(f"The pasted scenario is larger than {MAX_YAML // 1024} KiB.")
            return None, "pasted"
        return values["yaml"], "pasted scenario"
    shipped = {e.file: e for e in examples()}
    if values["example"] not in shipped:
        problems.append("Choose a shipped scenario, or paste or upload one.")
        return None, "example"
    return (EXAMPLES / values["example"]).read_text(encoding="utf-8"), values["example"]


def _parse(text: str, where: str, problems: list[str]) -> Scenario | None:
    """YAML without aliases (a few lines of them can expand to millions of nodes), validated."""
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text)):
            problems.append(f"{where}: YAML aliases (*name) are not accepted here.")
            return None
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problems.append(f"{where}: not valid YAML{at}: {getattr(error, 'problem', '') or error}")
        return None
    except RecursionError:
        problems.append(f"{where}: nested too deeply to be a scenario.")
        return None
    try:
        return parse_scenario(data, where)
    except ScenarioError as error:
        problems.extend(error.problems)
        return None
    except RecursionError:
        problems.append(f"{where}: nested too deeply to be a scenario.")
        return None


def _listed(error: Exception) -> list[str]:
    return list(getattr(error, "problems", None) or [str(error)])


@router.get("/whatif/examples/{file}", response_class=PlainTextResponse)
async def whatif_example(request: Request, file: str) -> PlainTextResponse:
    """A shipped scenario as text, to read or to edit and paste back."""
    session.require(request)
    if file not in {e.file for e in examples()}:
        return PlainTextResponse("No such shipped scenario.", 404)
    text = (EXAMPLES / file).read_text(encoding="utf-8")
    return PlainTextResponse(text, media_type="text/yaml; charset=utf-8")


# --- a job --------------------------------------------------------------------------------------
@router.get("/whatif/jobs/{job_id}", response_class=HTMLResponse)
async def whatif_job(request: Request, job_id: str) -> HTMLResponse:
    session.require(request)
    job = _jobs(request).get(job_id)
    if job is None:
        return page(request, "error.html", {"status": 404, "problems": [
            f"No such simulation: only the {KEPT} most recent are kept. Run it again from the "
            "what-if page."]}, 404)
    return page(request, "whatif_job.html", _job_values(job))


@router.get("/whatif/jobs/{job_id}/progress", response_class=HTMLResponse)
async def whatif_progress(request: Request, job_id: str) -> HTMLResponse:
    """The job's body (htmx polls it while running; finished, it brings the answer)."""
    session.require(request)
    job = _jobs(request).get(job_id)
    if job is None:
        return HTMLResponse("<p role='alert'>This simulation is no longer kept.</p>", 404)
    response = templates.TemplateResponse(
        request, "whatif_body.html",
        _job_values(job) | {"csrf": session.csrf_token(request)})
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/whatif/jobs/{job_id}/cancel", response_class=HTMLResponse)
async def whatif_cancel(request: Request, job_id: str) -> Response:
    session.require(request)
    form = await request.form()
    session.check_csrf(request, _text(form.get(CSRF_FIELD)))
    _jobs(request).cancel(job_id)
    return RedirectResponse(f"/whatif/jobs/{job_id}", status_code=303)


def _job_values(job: Job) -> dict[str, Any]:
    return {"job": job, "answer": None if job.comparison is None else answer(job.comparison)}


# --- the answer, laid out for the templates -----------------------------------------------------
@dataclass(frozen=True)
class Cell:
    text: str
    difference: str = ""
    clear: bool = False
    """The paired difference's 95% interval excludes zero: a real change, not luck."""


@dataclass(frozen=True)
class Row:
    label: str
    cells: list[Cell]
    key: str = ""


@dataclass(frozen=True)
class Bar:
    """One variant's estimate on a 0-100% chart: x positions in percent of the scale."""

    name: str
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    target: float | None = None


STEP_ROWS = (
    ("sla_pct", "On time (%)"),
    ("breaches_per_100", "Breaches per 100 handovers"),
    ("escalations_per_100", "Escalations per 100 handovers"),
    ("coordinator_escalations_per_100", "Coordinator escalations per 100"),
    ("reassignments_per_100", "Reassignments per 100"),
    ("lead_p50_h", "Lead time, median (h)"),
    ("lead_p90_h", "Lead time, 90th centile (h)"),
    ("wait_p50_h", "Waiting, median (h)"),
    ("wait_p90_h", "Waiting, 90th centile (h)"),
    ("queue_p90_h", "Queued at provider, 90th centile (h)"),
)
PROVIDER_LABELS = dict(PROVIDER_MEASURES) | {
    "wip_mean": "Work in progress (mean)", "queue_mean": "Queue (mean)",
    "queue_max": "Queue (max)", "utilisation_pct": "Utilisation (%)",
}
PATHWAY_ROWS = (
    ("started", "Measured pathways"),
    ("lead_p50_h", "Lead time, median (h)"),
    ("lead_p90_h", "Lead time, 90th centile (h)"),
    ("open_mean", "Open pathways (mean)"),
    ("unfinished", "Unfinished at the end"),
)
TOTAL_ROWS = (
    ("sla_pct", "On time (%)"),
    ("breaches_per_100", "Breaches per 100 handovers"),
    ("escalations_per_100", "Escalations per 100 handovers"),
    ("reassignments_per_100", "Reassignments per 100 handovers"),
)


def answer(comparison: Comparison) -> dict[str, Any]:
    """Sections of rows (one cell per variant) and charts, from a finished comparison."""
    columns = comparison.columns
    standards = []
    charts = []
    for name, target in comparison.targets.items():
        key = f"standard|{name}|attainment_pct"
        standards.append({"name": name, "target": target, "row": _row(columns, name, key),
                          "verdicts": [_verdict(c.estimates.get(key), target) for c in columns]})
        charts.append(_chart(columns, f"{name} (target {target:g}%)", key, target))
    steps = _steps(columns)
    for step in steps:
        charts.append(_chart(columns, f"On time: {step}", f"step|{step}|sla_pct"))
    step_sections = [
        {"step": step, "handovers": _mean(columns[0], f"step|{step}|handovers"),
         "rows": [_row(columns, label, f"step|{step}|{m}") for m, label in STEP_ROWS]}
        for step in steps
    ]
    providers = sorted({k.split("|")[1] for c in columns for k in c.estimates
                        if k.startswith("provider|")})
    provider_rows = []
    for provider in providers:
        if not any(_mean(c, f"provider|{provider}|offers") for c in columns):
            continue  # offered nothing in any variant (e.g. a role no pathway reached)
        rows = [_row(columns, PROVIDER_LABELS[m], f"provider|{provider}|{m}")
                for m in ("wip_mean", "queue_mean", "queue_max", "utilisation_pct")
                if any(f"provider|{provider}|{m}" in c.estimates for c in columns)]
        provider_rows.append({"provider": provider, "rows": rows})
    faults = columns[0].estimates.get("engine|all|refused_commands")
    return {
        "columns": columns,
        "standards": standards,
        "charts": charts,
        "totals": [_row(columns, label, f"handovers|all|{m}") for m, label in TOTAL_ROWS],
        "steps": step_sections,
        "providers": provider_rows,
        "pathways": [_row(columns, label, f"pathways|all|{m}") for m, label in PATHWAY_ROWS],
        "open_series": _series(columns, "pathways|all|open"),
        "faults": 0.0 if faults is None else faults.mean,
    }


def _steps(columns: list[Column]) -> list[str]:
    """Steps in the baseline's order that ran at all (a condition may skip one entirely)."""
    order = [k.split("|")[1] for k in columns[0].estimates if k.endswith("|handovers")
             and k.startswith("step|")]
    return [s for s in order if any(_mean(c, f"step|{s}|handovers") for c in columns)]


def _mean(column: Column, key: str) -> float:
    value = column.estimates.get(key)
    return 0.0 if value is None or math.isnan(value.mean) else value.mean


def _row(columns: list[Column], label: str, key: str) -> Row:
    return Row(label, [_cell(c.estimates.get(key), c.differences.get(key)) for c in columns],
               key)


def _cell(value: Estimate | None, difference: Estimate | None) -> Cell:
    if value is None or math.isnan(value.mean):
        return Cell("–")
    text = _num(value.mean)
    if value.low is not None and value.high is not None:
        text += f" [{_num(value.low)}, {_num(value.high)}]"
    if difference is None or math.isnan(difference.mean):
        return Cell(text)
    sign = "+" if difference.mean >= 0 else "−"
    change = f"{sign}{_num(abs(difference.mean))}"
    if difference.half_width is not None:
        change += f" ± {_num(difference.half_width)}"
    clear = (difference.low is not None and difference.high is not None
             and (difference.low > 0 or difference.high < 0))
    return Cell(text, change, clear)


def _verdict(value: Estimate | None, target: float) -> str:
    return verdict(value, target) or "–"


def _chart(columns: list[Column], title: str, key: str, target: float | None = None) -> Chart:
    bars = []
    for column in columns:
        value = column.estimates.get(key)
        if value is None or math.isnan(value.mean):
            continue
        low = value.low if value.low is not None else value.mean
        high = value.high if value.high is not None else value.mean
        bars.append(Bar(column.name, _clip(value.mean), _clip(low), _clip(high)))
    return Chart(title, bars, target)


def _series(columns: list[Column], key: str) -> dict[str, Any]:
    """Weekly means as SVG polyline points on a 600 x 160 plot."""
    lines = [(c.name, c.series.get(key, [])) for c in columns]
    top = max((v for _, s in lines for v in s), default=0.0)
    if top <= 0:
        return {"top": 0.0, "weeks": 0, "lines": []}  # nothing open at the daily snapshots
    weeks = max((len(s) for _, s in lines), default=0)
    step = 600 / max(weeks - 1, 1)
    return {
        "top": top,
        "weeks": weeks,
        "lines": [
            {"name": name,
             "points": " ".join(f"{i * step:.1f},{160 - 160 * v / top:.1f}"
                                for i, v in enumerate(series))}
            for name, series in lines if series
        ],
    }


def _clip(value: float) -> float:
    return max(0.0, min(100.0, value))


def _num(x: float) -> str:
    return f"{x:,.1f}" if abs(x) >= 10 else f"{x:.2f}"
