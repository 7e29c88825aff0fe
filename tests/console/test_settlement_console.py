"""The console's Settlement pages and the patient's questionnaire page in Debian's chromium
(Playwright), on the real API over HTTP with a SQLite event store holding real engine runs (no
Temporal needed: settlement reads the event log). Screenshots go to
build/screenshots/settlement-*.png; axe-core finds no serious or critical violations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from activities.store import EventStore
from api.tokens import TokenStore
from pathways.settings import Settings
from pathways.settlement import Period
from tests.api.conftest import free_port, serve_in_thread
from tests.conftest import make_settings
from tests.console.conftest import axe_violations, screenshot
from tests.settlement.support import DAY, HOUR, MINUTE, Scenario, record, response_output

UCR = "elmshire-ucr-central"


class Served:
    def __init__(self, base_url: str, settings: Settings) -> None:
        self.base_url = base_url
        self.settings = settings
        self.token = TokenStore(settings.event_store).issue_coordinator("casey")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    settings = make_settings(tmp_path, "127.0.0.1:1", api_port=free_port(),
                             update_timeout_seconds=1.0,
                             event_store_url=f"sqlite:///{tmp_path / 'pathways.db'}")
    store = EventStore(settings.event_store)
    store.migrate()
    now = datetime.now(UTC).replace(microsecond=0)
    on_time = Scenario("pw-on-time", start=now - 2 * DAY).simple()
    late = Scenario("pw-late", start=now - 2 * DAY + 3 * HOUR)
    late.accept("urgent-response", now - 2 * DAY + 3 * HOUR + 5 * MINUTE)
    late.refused("urgent-response", now - 2 * DAY + 3 * HOUR + 30 * MINUTE)
    done = now - 2 * DAY + 6 * HOUR  # three hours: the patient's two-hour clock breached
    late.complete("urgent-response", done, response_output(done))
    for s in (on_time, late):
        for batch in s.batches:
            record(store, s, batch)
    store.close()
    server = serve_in_thread(settings)
    yield Served(next(server), settings)
    server.close()


@pytest_asyncio.fixture
async def tab(browser: Any, served: Served) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    await page.goto(f"{served.base_url}/settlement")  # signed out: to sign-in, then back
    await page.get_by_label("Coordinator token").fill(served.token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{served.base_url}/settlement")
    yield page
    await context.close()


async def _no_violations(page: Any) -> None:
    violations = await axe_violations(page)
    assert violations == [], violations


@pytest.mark.asyncio
async def test_statements_alliance_position_and_the_patient_link(
    tab: Any, served: Served, browser: Any
) -> None:
    period = str(Period.containing(datetime.now(UTC)))
    page = tab
    nav = page.get_by_role("navigation", name="Console").get_by_role("link", name="Settlement")
    assert await nav.get_attribute("aria-current") == "page"
    await page.get_by_label("Quarter").select_option(period)
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url(f"**/settlement?period={period}")
    assert await page.get_by_role("heading", level=1).inner_text() == f"Settlement {period}"

    ucr = page.locator(f"#statement-{UCR}")
    lines = ucr.locator("table.lines tbody tr")
    assert await lines.count() >= 4
    text = await ucr.inner_text()
    assert "Base price" in text and "£180.00" in text and "−£18.00" in text  # 10% withheld
    assert "Best-practice top-up" in text and "£25.00" in text  # on time, first time right
    event_link = ucr.locator("td.causes a").first
    assert (await event_link.get_attribute("href") or "").startswith("/settlement/pathways/pw-")
    missed = await ucr.locator("details.missed").inner_text()
    assert "Top-ups not earned" in missed
    await ucr.locator("details.missed summary").click()
    assert "pw-late" in await ucr.locator("details.missed").inner_text()

    alliance = await page.locator(".alliance").inner_text()
    assert "Gain to share" in alliance and "Capped" in alliance and "Stop-loss" in alliance
    await _no_violations(page)
    await screenshot(page, "settlement-statements")

    csv = await page.request.get(f"{served.base_url}/settlement/statements.csv?period={period}")
    assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")
    body = await csv.text()
    assert body.splitlines()[0].startswith("provider_id,period,entry_id")
    assert f"{UCR},{period}" in body

    # a pathway's payment position: what is at risk and why
    await page.get_by_label("Pathway payment position").fill("pw-late")
    await page.get_by_role("button", name="Open").click()
    await page.wait_for_url("**/settlement/pathways/pw-late")
    risk = await page.locator("table.position").inner_text()
    assert "Missed" in risk and "late: patient's clock breached" in risk
    assert "Pending outcome" in risk
    summary = await page.locator("#risk-h + dl").inner_text()
    assert "Withheld, pending the outcome" in summary and "£18.00" in summary
    await _no_violations(page)
    await screenshot(page, "settlement-pathway")

    # the coordinator records the answer on the patient's behalf
    await page.get_by_role("group", name="Overall, how was your experience").get_by_label(
        "Poor", exact=True).check()
    await page.get_by_role("button", name="Record answer").click()
    await page.wait_for_url("**/settlement/pathways/pw-late?done=outcome*")
    assert "recorded" in await page.locator(".done").inner_text()
    assert "recorded by coordinator:casey" in await page.locator("#risk-h ~ p.hint").inner_text()

    # the completed pathway's link, copied and opened by the patient (no sign-in)
    await page.goto(f"{served.base_url}/settlement/pathways/pw-on-time")
    url = await page.get_by_label("Single-use link").input_value()
    assert url.startswith(f"{served.settings.base_url}/questionnaire/")
    # bypass_csp: the page allows no script at all; axe-core is injected for the scan only
    patient_context = await browser.new_context(viewport={"width": 390, "height": 844},
                                                bypass_csp=True)
    patient = await patient_context.new_page()
    opened = await patient.goto(url)
    assert opened.status == 200
    await _no_violations(patient)
    await screenshot(patient, "settlement-patient")
    await patient.get_by_role("button", name="Send my answers").click()
    assert "There is a problem" in await patient.get_by_role("alert").inner_text()
    await _no_violations(patient)
    await screenshot(patient, "settlement-patient-error")
    await patient.get_by_label("Very good").check()
    await patient.get_by_role("group", name="Did you feel involved").get_by_label(
        "Yes, definitely").check()
    await patient.get_by_role("button", name="Send my answers").click()
    assert await patient.get_by_role("heading", level=1).inner_text() == "Thank you"
    await screenshot(patient, "settlement-patient-done")
    again = await patient.goto(url)
    assert again.status == 410
    assert "already been used" in await patient.locator("#reason").inner_text()
    await _no_violations(patient)
    await screenshot(patient, "settlement-patient-gone")
    await patient_context.close()

    await page.reload()
    assert "recorded by patient:link" in await page.locator("#risk-h ~ p.hint").inner_text()
    assert "Released" in await page.locator("table.position").inner_text()


def test_settlement_pages_need_a_session_and_refuse_bad_input(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, timeout=30) as http:
        away = http.get("/settlement", follow_redirects=False)
        assert away.status_code == 303 and away.headers["location"].startswith("/signin")
        assert http.get("/settlement/statements.csv?period=2026-Q4",
                        follow_redirects=False).status_code == 303
        http.cookies.set("pathways_console", served.token)
        assert http.get("/settlement", params={"period": "2026-Q9"}).status_code == 400
        assert http.get("/settlement/pathways/pw-none").status_code == 404
        refused = http.post("/settlement/pathways/pw-late/outcome", data={"score": "good"})
        assert refused.status_code == 403  # no CSRF token
