"""The console under test: the real API app (console included) over real HTTP on a free port, a
real worker on the Temporal dev server, and Debian's chromium driven by Playwright.

The catalogue is the shipped one plus a short-SLA definition (accept within 2 seconds, then the
coordinator is alerted), so an escalation arrives while the test watches.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.worker import Worker

from api.tokens import TokenStore
from pathways.nhs_number import check_digit
from pathways.settings import SHIPPED_CATALOGUE, Settings
from tests.api.conftest import free_port, serve_in_thread

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("PATHWAYS_SCREENSHOTS_DIR", REPO / "build" / "screenshots"))
"""Test artefacts; `make screenshots` points this at docs/screenshots to refresh the README's."""
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SHORT = "console-short-sla"
BREACH = "console-breach"

SHORT_SLA = """\
id: console-short-sla
version: 1
title: Short-SLA test referral
description: A one-step referral that must be accepted within 2 seconds (console tests).
lead_provider: {id: test-lead, name: Test lead provider}
roles:
  - id: clinic
    title: Test clinic
    providers:
      - {id: test-clinic-a, name: Test clinic A}
      - {id: test-clinic-b, name: Test clinic B}
steps:
  - id: triage
    title: Triage the referral
    role: clinic
    sla: {accept_within: PT2S, complete_within: PT1H}
    escalation:
      - {clock: accept, at: PT0S, action: alert-coordinator}
    handover:
      - {name: outcome, type: coded, codes: [seen, declined]}
"""


BREACH_SLA = """\
id: console-breach
version: 1
title: Breaching test referral
description: A one-step referral due 3 seconds after it is ready (console screenshots).
lead_provider: {id: test-lead, name: Test lead provider}
roles:
  - id: clinic
    title: Test clinic
    providers:
      - {id: test-clinic-a, name: Test clinic A}
steps:
  - id: review
    title: Review the referral
    role: clinic
    sla: {accept_within: PT1S, complete_within: PT3S}
    escalation:
      - {clock: accept, at: PT0S, action: alert-coordinator}
      - {clock: complete, at: PT0S, action: mark-breached}
    handover:
      - {name: outcome, type: coded, codes: [seen, declined]}
"""


def fresh_nhs_number() -> str:
    """A valid NHS number no other test uses (so duplicate-start checks never interfere)."""
    while True:
        first = f"{secrets.randbelow(900_000_000) + 100_000_000}"
        check = check_digit(first)
        if check is not None:
            number = first + str(check)
            return f"{number[:3]} {number[3:6]} {number[6:]}"


@dataclass
class Console:
    base_url: str
    settings: Settings
    tokens: TokenStore
    coordinator_token: str

    def provider_token(self, provider_id: str) -> str:
        return self.tokens.issue_provider(provider_id)

    @property
    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.coordinator_token}"}


@pytest.fixture(scope="session")
def console_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("console-catalogue")
    for definition in SHIPPED_CATALOGUE.glob("*.yaml"):
        shutil.copy(definition, folder / definition.name)
    (folder / f"{SHORT}.yaml").write_text(SHORT_SLA)
    (folder / f"{BREACH}.yaml").write_text(BREACH_SLA)
    return folder


@pytest_asyncio.fixture(scope="session")
async def console(
    settings: Settings, worker: Worker, console_catalogue: Path
) -> AsyncIterator[Console]:
    """The API with its console, on its own port and catalogue, sharing the session's worker."""
    served_settings = settings.model_copy(
        update={"api_port": free_port(), "catalogue_dir": console_catalogue}
    )
    served = serve_in_thread(served_settings, timeout_graceful_shutdown=2)
    base_url = next(served)
    tokens = TokenStore(served_settings.event_store)
    yield Console(base_url, served_settings, tokens, tokens.issue_coordinator("casey"))
    served.close()


@pytest_asyncio.fixture
async def http(console: Console) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=console.base_url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as p:
        launched = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield launched
        await launched.close()


async def sign_in(page: Any, console: Console, token: str | None = None) -> None:
    await page.goto(f"{console.base_url}/signin")
    await page.get_by_label("Coordinator token").fill(token or console.coordinator_token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{console.base_url}/")


@pytest_asyncio.fixture
async def page(browser: Any, console: Console) -> AsyncIterator[Any]:
    """A signed-in coordinator's tab at laptop width."""
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    tab = await context.new_page()
    await sign_in(tab, console)
    yield tab
    await context.close()


async def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page (WCAG 2.x A/AA and best practice)."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        """async () => {
            const r = await axe.run(document, {runOnly: {type: 'tag',
                values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }"""
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]
