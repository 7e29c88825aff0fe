"""The console's analytics pages over real HTTP and in chromium: value-stream map, provider
scorecard, SPC charts and work in progress show the analytics API's own numbers, the bottleneck is
the step where pathways run by the engine waited, bad filters give the form back (400), and an
empty store gives empty states, never a 500.

The store is the test's own SQLite file, filled two ways: urgent community response pathways run
now by the engine (a real worker on the Temporal dev server, providers moving their Tasks over
FHIR, the GP follow-up left waiting a few seconds), and twelve past weeks of the same definition
written as recorded batches (the engine cannot run weeks in the past), so the SPC and WIP charts
have weeks to draw.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities.store import EventStore
from api.console.charts import percent, seconds, week_label
from api.tokens import TokenStore
from pathways.catalogue import load_catalogue
from pathways.events import EventKind, HandoverRow, PathwayEvent, PathwayRow, RecordBatch
from pathways.settings import SHIPPED_CATALOGUE
from tests.api.conftest import free_port, serve_in_thread
from tests.api.flow import bearer, fhir_outputs, put_status, read_task
from tests.conftest import make_settings, run_worker
from tests.console.conftest import Console, axe_violations, fresh_nhs_number, screenshot, sign_in

pytestmark = pytest.mark.devserver

UCR = "urgent-community-response"
RESPONSE, GP = "urgent-response", "gp-follow-up"
GP_WAIT = 3.0
"""Seconds the GP practice leaves each follow-up waiting before accepting it (the bottleneck)."""
ENGINE_PATHWAYS = 3


@dataclass
class Served:
    console: Console
    store: EventStore
    engine_ids: list[str]

    @property
    def base(self) -> str:
        return self.console.base_url


async def _serve(dev_env: WorkflowEnvironment, directory: Path, queue: str) -> Any:
    settings = make_settings(directory, dev_env.client.service_client.config.target_host,
                             task_queue=queue, api_port=free_port())
    store = EventStore(settings.event_store)
    store.migrate()
    tokens = TokenStore(settings.event_store)
    tokens.migrate()
    served = serve_in_thread(settings, timeout_graceful_shutdown=2)
    console = Console(next(served), settings, tokens, tokens.issue_coordinator("olivia"))
    return served, console, store


@pytest_asyncio.fixture(scope="module")
async def seeded(dev_env: WorkflowEnvironment,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    """The API and console on their own store and task queue, with engine runs and history."""
    served, console, store = await _serve(
        dev_env, tmp_path_factory.mktemp("console-analytics"), "console-analytics")
    async for _ in run_worker(dev_env.client, console.settings):
        async with httpx.AsyncClient(base_url=console.base_url, timeout=30) as http:
            ids = await asyncio.gather(*(run_ucr(http, console, store)
                                         for _ in range(ENGINE_PATHWAYS)))
        write_history(store, datetime.now(UTC))
        yield Served(console, store, list(ids))
    served.close()


@pytest_asyncio.fixture(scope="module")
async def empty(dev_env: WorkflowEnvironment,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    served, console, store = await _serve(
        dev_env, tmp_path_factory.mktemp("console-analytics-empty"), "console-analytics-empty")
    yield Served(console, store, [])
    served.close()


# --- seeding -------------------------------------------------------------------------------------


async def _task(http: httpx.AsyncClient, console: Console, store: EventStore,
                task_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    for _ in range(300):
        row = await asyncio.to_thread(store.get_task_row, task_id)
        if row is not None:
            auth = bearer(console.provider_token(row.provider_id))
            return await read_task(http, task_id, auth), auth
        await asyncio.sleep(0.05)
    raise AssertionError(f"{task_id} never reached the read model")


async def run_ucr(http: httpx.AsyncClient, console: Console, store: EventStore) -> str:
    """One urgent community response through the engine: the response team accepts and
    completes at once (the person stays at home), the GP practice waits GP_WAIT seconds."""
    definition = load_catalogue(SHIPPED_CATALOGUE).get(UCR)
    body = {"definition": UCR, "patient": {"nhs_number": fresh_nhs_number(), "name": "Flow"}}
    started = await http.post("/api/pathways", json=body, headers=console.api_headers)
    assert started.status_code == 201, started.text
    pathway_id = str(started.json()["id"])
    task, auth = await _task(http, console, store, f"{pathway_id}.{RESPONSE}.1")
    accepted = await put_status(http, task, "accepted", auth)
    assert accepted.status_code == 200, accepted.text
    output = fhir_outputs(definition.step(RESPONSE), {"disposition": "remain-at-home"})
    done = await put_status(http, accepted.json(), "completed", auth, output=output)
    assert done.status_code == 200, done.text
    task, auth = await _task(http, console, store, f"{pathway_id}.{GP}.1")
    await asyncio.sleep(GP_WAIT)
    accepted = await put_status(http, task, "accepted", auth)
    assert accepted.status_code == 200, accepted.text
    done = await put_status(http, accepted.json(), "completed", auth,
                            output=fhir_outputs(definition.step(GP)))
    assert done.status_code == 200, done.text
    for _ in range(300):
        rows = await asyncio.to_thread(store.events, pathway_id)
        if any(e.kind is EventKind.PATHWAY_COMPLETED for e in rows):
            return pathway_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"{pathway_id} never completed")


TEAMS = ("elmshire-ucr-central", "elmshire-ucr-north", "riverside-rapid-response")
PRACTICE = "elmshire-central-pcn"


def write_history(store: EventStore, now: datetime) -> None:
    """Twelve past weeks of urgent responses (seeded random, so the same every run): the GP
    follow-up waits hours to days, and one week much longer (a special cause)."""
    chance = random.Random(10)
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0,
                                                           microsecond=0)
    first = monday - timedelta(weeks=12)
    for week in range(12):
        for n in range(chance.randint(5, 8)):
            ready = first + timedelta(weeks=week, days=chance.uniform(0, 6.5))
            slow = 5.0 if week == 8 else 1.0
            _history_pathway(store, f"pw-hist-{week:02d}{n}", ready, chance, slow)


def _history_pathway(store: EventStore, pathway_id: str, t0: datetime, chance: random.Random,
                     slow: float) -> None:
    k = EventKind
    events: list[PathwayEvent] = []
    rows: list[HandoverRow] = []

    def event(kind: EventKind, at: datetime, step: str | None = None,
              provider: str | None = None, **detail: Any) -> None:
        events.append(PathwayEvent(
            event_id=f"{pathway_id}:{len(events) + 1}", pathway_id=pathway_id,
            definition_id=UCR, definition_version=1, seq=len(events) + 1, kind=kind, at=at,
            handover_id=None if step is None else f"{step}.1", step_id=step,
            provider_id=provider, detail=detail))

    def handover(step: str, provider: str, ready: datetime, due: datetime,
                 done: datetime) -> None:
        rows.append(HandoverRow(
            task_id=f"{pathway_id}.{step}.1", pathway_id=pathway_id, definition_id=UCR,
            handover_id=f"{step}.1", step_id=step, occurrence=1, provider_id=provider,
            status="completed", business_status="on-track", version=1, ready_at=ready,
            complete_by=due, updated_at=done))

    def minutes(low: float, high: float) -> timedelta:
        return timedelta(minutes=chance.uniform(low, high))

    team = chance.choice(TEAMS)
    event(k.PATHWAY_STARTED, t0)
    accepted = t0 + minutes(5, 45 if team == TEAMS[0] else 20)
    started = accepted + minutes(15, 50)
    response_done = started + minutes(20, 60)
    for kind, at in ((k.READY, t0), (k.DISPATCHED, t0), (k.ACCEPTED, accepted),
                     (k.STARTED, started), (k.COMPLETED, response_done)):
        event(kind, at, RESPONSE, team)
    handover(RESPONSE, team, t0, t0 + timedelta(hours=2), response_done)
    told = response_done + minutes(0, 10)
    gp_accepted = told + minutes(120, 1800) * slow
    if chance.random() < 0.15:
        event(k.READY, told, GP, PRACTICE)
        event(k.DISPATCHED, told, GP, PRACTICE)
        event(k.ESCALATED, told + timedelta(hours=36), GP, PRACTICE, escalation_id=1,
              level="alert-coordinator")
        event(k.ACCEPTED, gp_accepted, GP, PRACTICE)
    else:
        for kind, at in ((k.READY, told), (k.DISPATCHED, told), (k.ACCEPTED, gp_accepted)):
            event(kind, at, GP, PRACTICE)
    gp_done = gp_accepted + minutes(20, 60)
    event(k.STARTED, gp_accepted + minutes(1, 5), GP, PRACTICE)
    event(k.COMPLETED, gp_done, GP, PRACTICE)
    event(k.PATHWAY_COMPLETED, gp_done)
    handover(GP, PRACTICE, told, told + timedelta(days=2), gp_done)
    store.record(RecordBatch(events=events, handovers=rows, pathway=PathwayRow(
        pathway_id=pathway_id, definition_id=UCR, definition_version=1,
        lead_provider="elmshire-community-alliance", status="completed", sla_state="on-track",
        open_steps=[], open_providers=[], open_step_titles=[], started_at=t0,
        updated_at=gp_done, ended_at=gp_done)))


# --- helpers ----------------------------------------------------------------------------------


async def signed_in(served: Served) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=served.base, timeout=30)
    await client.get("/signin")
    nonce = client.cookies["pathways_signin"]
    done = await client.post("/signin", data={"token": served.console.coordinator_token,
                                              "csrf": nonce})
    assert done.status_code == 303
    return client


async def api(served: Served, path: str, **params: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=served.base, timeout=30) as http:
        response = await http.get(f"/api/analytics/{path}", params=params,
                                  headers=served.console.api_headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def text(html: str) -> str:
    """The page's visible text, tags dropped, spaces collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def row(html: str, attribute: str, key: str) -> str:
    match = re.search(rf'<tr {attribute}="{re.escape(key)}"[^>]*>(.*?)</tr>', html, re.S)
    assert match is not None, f"no row {attribute}={key}"
    return match.group(1)


def cell(row_html: str, measure: str) -> str:
    match = re.search(rf'data-measure="{measure}">(.*?)</td>', row_html, re.S)
    assert match is not None, measure
    return text(match.group(1))


def today() -> str:
    return datetime.now(UTC).date().isoformat()


# --- HTTP ----------------------------------------------------------------------------------------


async def test_the_value_stream_shows_the_apis_numbers_and_the_engines_bottleneck(
    seeded: Served,
) -> None:
    client = await signed_in(seeded)
    period = {"definition": UCR, "since": today()}
    page = await client.get("/analytics", params=period)
    assert page.status_code == 200, page.text
    stream = await api(seeded, "value-stream", **period)
    steps = {s["step_id"]: s for s in stream["steps"]}
    # the engine's runs: the GP follow-up waited GP_WAIT seconds for each, the response none
    gp, response = steps[GP]["measures"], steps[RESPONSE]["measures"]
    assert gp["completed"] == response["completed"] == ENGINE_PATHWAYS
    assert gp["waiting"]["mean"] >= GP_WAIT and response["waiting"]["mean"] < GP_WAIT
    assert [s["step_id"] for s in stream["steps"] if s["bottleneck"]] == [GP]
    html = page.text
    assert 'data-step="gp-follow-up" class="bottleneck-row"' in html
    assert "Bottleneck: GP follow-up after the urgent response." in text(html)
    assert re.search(r'class="vs-step bottleneck" data-step="gp-follow-up"', html)
    assert html.count("vs-step bottleneck") == 1
    # every figure in the table is the API's, formatted
    for step_id, step in steps.items():
        measures = step["measures"]
        if not measures:
            assert "No handovers in the period" in text(row(html, "data-step", step_id))
            continue
        cells = row(html, "data-step", step_id)
        assert cell(cells, "waiting").startswith(seconds(measures["waiting"]["mean"]))
        assert cell(cells, "working").startswith(seconds(measures["working"]["mean"]))
        assert cell(cells, "lead").startswith(seconds(measures["lead"]["mean"]))
        assert cell(cells, "flow_efficiency") == percent(measures["flow_efficiency"])
        assert cell(cells, "breach_rate") == percent(measures["breach_rate"])
        assert cell(cells, "waiting_share") == percent(step["waiting_share"])
    assert f'id="kpi-flow-efficiency">{percent(stream["flow_efficiency"])}<' in html
    # the map is an accessible image with the same bottleneck
    assert re.search(r'<svg[^>]+role="img"[^>]+aria-label="[^"]*the bottleneck is GP follow-up',
                     html)
    # the 2-hour standard of the definition, as the report counts it
    report = await api(seeded, "report", **period)
    (ucr,) = report["standards"]
    standard = text(row(html, "data-standard", "ucr-2h"))
    assert f"{ucr['within']} of {ucr['handovers']}" in standard
    assert percent(ucr["attainment"]) in standard and "Met" in standard
    await client.aclose()


async def test_the_quarter_scorecard_spc_and_wip_show_the_apis_numbers(seeded: Served) -> None:
    client = await signed_in(seeded)
    quarter = {"definition": UCR}
    stream = await api(seeded, "value-stream", **quarter)
    assert [s["step_id"] for s in stream["steps"] if s["bottleneck"]] == [GP]
    html = (await client.get("/analytics", params=quarter)).text
    assert html.count("vs-step bottleneck") == 1 and "Bottleneck: GP follow-up" in text(html)

    page = await client.get("/analytics/providers", params=quarter)
    assert page.status_code == 200
    card = await api(seeded, "providers", **quarter)
    shares = {r["key"]: r["share"] for r in card["ranking"]}
    order = re.findall(r'<tr data-provider="([^"]+)"', page.text)
    assert order == [r["key"] for r in card["ranking"]]  # worst (most waiting) first
    assert order[0] == PRACTICE
    for provider in card["providers"]:
        cells = row(page.text, "data-provider", provider["key"])
        assert cell(cells, "attainment").startswith(percent(provider["attainment"]))
        assert cell(cells, "breach_rate").startswith(percent(provider["breach_rate"]))
        assert cell(cells, "first_time_right") == percent(provider["first_time_right"])
        assert cell(cells, "rejections") == str(provider["rejections"])
        assert cell(cells, "waiting_share").startswith(percent(shares[provider["key"]]))
    by_breach = await client.get("/analytics/providers", params=quarter | {"sort": "breach_rate"})
    rates = [r["breach_rate"] or 0 for r in sorted(
        card["providers"], key=lambda p: -(p["breach_rate"] or 0))]
    shown = [next(p["breach_rate"] or 0 for p in card["providers"] if p["key"] == key)
             for key in re.findall(r'<tr data-provider="([^"]+)"', by_breach.text)]
    assert shown == rates
    assert 'aria-sort="descending"><a href="?definition=urgent-community-response&amp;sort=' \
           'breach_rate"' in by_breach.text

    spc = await client.get("/analytics/spc", params=quarter)
    assert spc.status_code == 200
    chart = await api(seeded, "spc", measure="lead_time", **quarter)
    panel = spc.text.split('id="spc-2"')[0]
    assert f'data-measure="mean">{seconds(chart["mean"])}<' in panel
    assert f'data-measure="upper">{seconds(chart["upper_limit"])}<' in panel
    special = [p for p in chart["points"] if p["rules"]]
    assert special, "the slow week should be a special cause"
    listed = re.findall(r'<li value="(\d+)" class="sc (\w+)" data-week="([^"]+)"', panel)
    assert [(w, v) for _, v, w in listed] == [(p["label"], p["variation"]) for p in special]
    slow = next(p for p in special if "outside-limits" in p["rules"])
    assert (f"Week of {week_label(slow['label'])}: {seconds(slow['value'])}. "
            "Special cause of concern: above the upper process limit") in text(panel)

    wip = await client.get("/analytics/wip", params=quarter)
    assert wip.status_code == 200
    flow = await api(seeded, "wip", **quarter)
    assert f'data-measure="wip_now">{flow["wip_now"]}<' in wip.text
    little = flow["little"]
    assert f'data-measure="predicted_wip">{little["predicted_wip"]:.1f} open<' in wip.text
    assert f'data-measure="observed_mean_wip">{little["observed_mean_wip"]:.1f} open<' in wip.text
    days = re.findall(r'<tr><th scope="row">(\d{4}-\d\d-\d\d)</th><td class="num">(\d+)</td>',
                      wip.text)
    assert [(d, int(n)) for d, n in days] == [(p["day"], p["wip"]) for p in flow["wip"]]
    await client.aclose()


async def test_exports_download_with_the_pages_filters(seeded: Served) -> None:
    client = await signed_in(seeded)
    page = (await client.get("/analytics", params={"definition": UCR})).text
    links = re.findall(r'href="(/analytics/export\?[^"]+)" download', page)
    assert len(links) == 3
    for link in links:
        response = await client.get(unescape(link))
        assert response.status_code == 200, link
        assert "attachment" in response.headers["content-disposition"]
    csv = await client.get(unescape(links[0]))
    assert csv.text.startswith("case_id,") and seeded.engine_ids[0] in csv.text
    anonymous = await httpx.AsyncClient(base_url=seeded.base).get(unescape(links[0]))
    assert anonymous.status_code == 303  # sign-in first
    await client.aclose()


async def test_bad_filters_show_the_form_with_the_problem(seeded: Served) -> None:
    client = await signed_in(seeded)
    cases = {
        ("/analytics", "since=soon"): "From: enter a date",
        ("/analytics/providers", "since=2026-02-01&until=2026-01-01"): "“From” must be before",
        ("/analytics/spc", "since=1000-01-01"): "between the years 1900 and 2200",
        ("/analytics/wip", "since=2001-01-01&until=2026-01-01"): "at most 5 years",
        ("/analytics", "definition=no-such-pathway"): "no definition “no-such-pathway”",
        ("/analytics/providers", "provider=nobody"): "no provider “nobody”",
        ("/analytics/spc", "until=" + "9" * 300): "at most 200 characters",
        ("/analytics/export", "format=pdf"): "the format is csv, xes or ocel",
        ("/analytics/wip", "since=0001-01-01T00:00:00%2B14:00"): "From",
    }
    for (path, query), message in cases.items():
        response = await client.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query, response.status_code)
        assert 'role="alert"' in response.text and message in unescape(response.text), query
        assert '<form method="get"' in response.text  # the form, to correct it
    shown = await client.get("/analytics?since=soon")
    assert 'id="f-since" name="since" type="text" value="soon"' in shown.text
    await client.aclose()


async def test_an_empty_store_gives_empty_states(empty: Served) -> None:
    async with httpx.AsyncClient(base_url=empty.base, timeout=30) as anonymous:
        for path in ("/analytics", "/analytics/providers", "/analytics/spc", "/analytics/wip"):
            response = await anonymous.get(path, params={"definition": UCR})
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/signin?next=%2Fanalytics"), path
    client = await signed_in(empty)
    for path, message in (("/analytics", "No handovers of Two-hour urgent community response"),
                          ("/analytics/providers", "No provider held a handover"),
                          ("/analytics/spc", "Fewer than two weeks"),
                          ("/analytics/wip", "Nothing arrived or was open")):
        response = await client.get(path, params={"definition": UCR})
        assert response.status_code == 200, (path, response.text[-2000:])
        assert message in text(response.text), path
    everything = await client.get("/analytics/providers")
    assert everything.status_code == 200 and "No provider held a handover" in everything.text
    first = await client.get("/analytics")  # no definition chosen: the first in the catalogue
    assert first.status_code == 200 and "Value stream of" in text(first.text)
    await client.aclose()


# --- browser -------------------------------------------------------------------------------------


async def test_the_analytics_pages_in_chromium_pass_axe(browser: Any, seeded: Served) -> None:
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    tab = await context.new_page()
    await sign_in(tab, seeded.console)
    await tab.get_by_role("link", name="Analytics", exact=True).click()
    await tab.wait_for_url(re.compile(r".*/analytics$"))
    await tab.get_by_label("Pathway").select_option(UCR)
    await tab.get_by_role("button", name="Show").click()
    await tab.wait_for_url(re.compile(rf".*/analytics\?definition={UCR}.*"))
    await tab.get_by_text("Bottleneck: GP follow-up after the urgent response.").wait_for()
    found = {"analytics-value-stream": await axe_violations(tab)}
    await screenshot(tab, "analytics-value-stream")
    for name, tab_name in (("analytics-providers", "Provider scorecard"),
                           ("analytics-spc", "Is it getting better? (SPC)"),
                           ("analytics-wip", "Work in progress")):
        async with tab.expect_navigation():
            await tab.get_by_role("navigation", name="Analytics").get_by_role(
                "link", name=tab_name).click()
        assert f"definition={UCR}" in tab.url  # the filters follow the tabs
        if name == "analytics-spc":
            await tab.get_by_text("Special cause of concern").first.wait_for()
        found[name] = await axe_violations(tab)
        await screenshot(tab, name)
    await tab.goto(f"{seeded.base}/analytics?definition=hip-replacement-d2a")
    await tab.get_by_text("No handovers of Elective hip replacement").wait_for()
    found["analytics-long-chain"] = await axe_violations(tab)
    await screenshot(tab, "analytics-long-chain")
    await tab.goto(f"{seeded.base}/")
    await tab.keyboard.press("g")
    await tab.keyboard.press("a")
    await tab.wait_for_url(re.compile(r".*/analytics$"))
    await tab.goto(f"{seeded.base}/analytics/wip?since=soon")
    await tab.get_by_role("alert").get_by_text("From: enter a date").wait_for()
    found["analytics-bad-filter"] = await axe_violations(tab)
    await screenshot(tab, "analytics-bad-filter")
    await context.close()
    tablet = await browser.new_context(viewport={"width": 820, "height": 1180})
    tab = await tablet.new_page()
    await sign_in(tab, seeded.console)
    await tab.goto(f"{seeded.base}/analytics?definition={UCR}")
    await screenshot(tab, "analytics-value-stream-tablet")
    width = await tab.evaluate("document.documentElement.scrollWidth")
    assert width <= 820, f"the value stream scrolls sideways at tablet width ({width}px)"
    found["analytics-value-stream-tablet"] = await axe_violations(tab)
    await tablet.close()
    assert {name: v for name, v in found.items() if v} == {}
