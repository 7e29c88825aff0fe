"""The coordinator sees, on the pathway page, the signed page link of each open handover whose
provider has no FHIR system (`portal: true`), with its expiry and a copy button (chromium)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from pathways.settings import SHIPPED_CATALOGUE
from tests.api.conftest import free_port, serve_in_thread
from tests.console.conftest import Console, axe_violations, fresh_nhs_number, sign_in

pytestmark = pytest.mark.devserver

HIP = "hip-replacement-d2a"
ORTHO = "elmshire-elective-ortho-centre"


@pytest.fixture(scope="module")
def portal_console(console: Console, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The console over a catalogue in which the orthopaedic centre is `portal: true`."""
    folder = tmp_path_factory.mktemp("portal-console")
    for source in Path(SHIPPED_CATALOGUE).glob("*.yaml"):
        shutil.copy(source, folder / source.name)
    hip = folder / f"{HIP}.yaml"
    marker = "        name: Elmshire Elective Orthopaedic Centre\n"
    text = hip.read_text()
    assert marker in text
    hip.write_text(text.replace(marker, marker + "        portal: true\n"))
    settings = console.settings.model_copy(update={"api_port": free_port(), "catalogue_dir": folder})
    served = serve_in_thread(settings, timeout_graceful_shutdown=2)
    yield Console(next(served), settings, console.tokens, console.coordinator_token)
    served.close()


@pytest_asyncio.fixture
async def tab(browser: Any, portal_console: Console) -> AsyncIterator[Any]:
    context = await browser.new_context(
        viewport={"width": 1366, "height": 900}, permissions=["clipboard-read", "clipboard-write"]
    )
    page = await context.new_page()
    await sign_in(page, portal_console)
    yield page
    await context.close()


async def test_the_pathway_page_shows_a_portal_providers_link_to_copy(
    tab: Any, portal_console: Console
) -> None:
    async with httpx.AsyncClient(base_url=portal_console.base_url, timeout=30) as http:
        patient = {"nhs_number": fresh_nhs_number(), "name": "Portal Patient"}
        started = await http.post(
            "/api/pathways", json={"definition": HIP, "patient": patient},
            headers=portal_console.api_headers,
        )
        assert started.status_code == 201, started.text
        pathway_id = started.json()["id"]
        links: list[dict[str, Any]] = []
        for _ in range(200):
            answer = await http.get(
                f"/api/pathways/{pathway_id}/portal-links", headers=portal_console.api_headers
            )
            links = answer.json()["links"]
            if links:
                break
            await asyncio.sleep(0.05)
        (expected,) = links
        await tab.goto(f"{portal_console.base_url}/pathways/{pathway_id}")
        section = tab.locator("#portal-links")
        await section.get_by_role("heading", name="Page links to pass on").wait_for()
        field = section.get_by_label(f"Page link for {ORTHO}")
        url = await field.input_value()
        assert url.rsplit("/portal/", 1)[0] == expected["url"].rsplit("/portal/", 1)[0]
        assert await section.locator("time").get_attribute("datetime")
        await section.get_by_role("button", name="Copy").click()
        await section.get_by_role("button", name="Copied").wait_for()
        assert await tab.evaluate("navigator.clipboard.readText()") == url
        assert await axe_violations(tab) == []
        opened = await http.get("/portal/" + url.rsplit("/portal/", 1)[1])
        assert opened.status_code == 200 and "Accept" in opened.text
