"""The page for providers with no FHIR system: a signed link per handover, over real HTTP and in
chromium; the engine's own validation; the link dead once the handover is finished or moved on."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pathways.settings import SHIPPED_CATALOGUE
from tests.api.conftest import RunningApi, free_port, serve_in_thread
from tests.api.flow import HIP, bearer, read_task, start_pathway

pytestmark = pytest.mark.devserver

ORTHO = "elmshire-elective-ortho-centre"


@pytest.fixture(scope="module")
def portal_api(api: RunningApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API whose catalogue marks the ortho centre and the care transfer hub `portal: true`
    (same engine and database)."""
    catalogue = tmp_path_factory.mktemp("catalogue")
    for source in Path(SHIPPED_CATALOGUE).glob("*.yaml"):
        text = source.read_text()
        if source.name == f"{HIP}.yaml":
            for name in ("Elmshire Elective Orthopaedic Centre", "Elmshire Care Transfer Hub"):
                marker = f"        name: {name}\n"
                assert marker in text
                text = text.replace(marker, marker + "        portal: true\n")
        (catalogue / source.name).write_text(text)
    settings = api.settings.model_copy(update={"api_port": free_port(), "catalogue_dir": catalogue})
    served = serve_in_thread(settings)
    yield next(served)
    served.close()


@pytest.fixture
async def portal(portal_api: str) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=portal_api, timeout=30) as client:
        yield client  # type: ignore[misc]


async def _link(portal: httpx.AsyncClient, coordinator: dict[str, str], api: RunningApi) -> tuple[str, str]:
    """Start a pathway from the portal catalogue; the ortho centre's page link and Task id."""
    pathway_id = await start_pathway(portal, coordinator)
    task_id = f"{pathway_id}.hip-replacement.1"
    await read_task(portal, task_id, bearer(api.provider_token(ORTHO)))
    links = await portal.get(f"/api/pathways/{pathway_id}/portal-links", headers=coordinator)
    assert links.status_code == 200, links.text
    (only,) = links.json()["links"]
    assert only["task_id"] == task_id and only["provider"] == ORTHO
    return only["url"], task_id


def _path(url: str) -> str:
    return "/portal/" + url.rsplit("/portal/", 1)[1]


def _problems(page: str) -> list[str]:
    found = re.search(r'<div class="errors" role="alert">(.*?)</div>', page, re.S)
    return re.findall(r"<li>(.*?)</li>", found[1]) if found else []


async def test_only_portal_providers_get_links(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    pathway_id = await start_pathway(http, coordinator)
    await read_task(http, f"{pathway_id}.hip-replacement.1", bearer(api.provider_token(ORTHO)))
    links = await http.get(f"/api/pathways/{pathway_id}/portal-links", headers=coordinator)
    assert links.status_code == 200 and links.json() == {"links": []}
    provider = bearer(api.provider_token(ORTHO))
    assert (await http.get(f"/api/pathways/{pathway_id}/portal-links", headers=provider)).status_code == 403


async def test_the_page_refuses_a_bad_delivery_as_the_fhir_api_does_then_completes(
    api: RunningApi, portal: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    url, task_id = await _link(portal, coordinator, api)
    page = await portal.get(_path(url))
    assert page.status_code == 200 and "Total hip replacement" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'value="accept"' in page.text and 'name="field.side"' in page.text
    forged = _path(url)[:-3] + ("aaa" if not url.endswith("aaa") else "bbb")
    assert (await portal.get(forged)).status_code == 404

    # The same incomplete delivery, by page and by FHIR PUT: the same problems.
    partial = await portal.post(_path(url), data={"action": "complete", "field.side": "sideways"})
    assert partial.status_code in (400, 409, 422)
    on_page = _problems(partial.text)
    ortho = bearer(api.provider_token(ORTHO))
    task = await read_task(portal, task_id, ortho)
    side = {"type": {"text": "side"}, "valueCoding": {"code": "sideways"}}
    body = {**task, "status": "completed", "output": [side]}
    put = await portal.put(f"/fhir/Task/{task_id}", json=body, headers=ortho)
    by_fhir = [i["diagnostics"] for i in put.json()["issue"]]
    assert on_page and sorted(on_page) == sorted(p.replace("'", "&#x27;") for p in by_fhir)

    accepted = await portal.post(_path(url), data={"action": "accept", "version": "1"})
    assert accepted.status_code == 303
    assert "<strong id=\"status\">accepted</strong>" in (await portal.get(_path(url))).text
    done = await portal.post(
        _path(url),
        data={
            "action": "complete",
            "field.procedure": "hybrid-thr",
            "field.side": "left",
            "field.operation_date": "2026-03-02",
            "field.weight_bearing": "full-as-tolerated",
            "field.njr_record_submitted": "true",
            "field.operation_note": "https://records.example/notes/1",
        },
    )
    assert done.status_code == 200, _problems(done.text)
    assert "completed" in done.text
    assert (await read_task(portal, task_id, ortho))["status"] == "completed"
    assert (await portal.get(_path(url))).status_code == 410

    # The next step's portal provider sees what was handed over to it.
    pathway_id = task_id.split(".")[0]
    for _ in range(200):
        links = (await portal.get(f"/api/pathways/{pathway_id}/portal-links", headers=coordinator)).json()
        if links["links"]:
            break
        await asyncio.sleep(0.05)
    (hub,) = links["links"]
    assert hub["task_id"] == f"{pathway_id}.discharge-assessment.1"
    page = (await portal.get(_path(hub["url"]))).text
    assert "Handed over to you" in page and "hybrid-thr" in page and "records.example" in page


async def test_the_link_stops_working_once_the_handover_moves_to_another_provider(
    api: RunningApi, portal: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    url, _ = await _link(portal, coordinator, api)
    no_reason = await portal.post(_path(url), data={"action": "reject", "reason": " "})
    assert no_reason.status_code == 400 and _problems(no_reason.text) == ["give a reason for rejecting"]
    rejected = await portal.post(_path(url), data={"action": "reject", "reason": "no theatre capacity"})
    assert rejected.status_code == 200 and "rejected" in rejected.text
    gone = await portal.get(_path(url))
    assert gone.status_code == 410 and "no longer works" in gone.text
    again = await portal.post(_path(url), data={"action": "accept"})
    assert again.status_code == 410


async def test_a_provider_completes_its_handover_in_chromium(
    api: RunningApi, portal: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    playwright = pytest.importorskip("playwright.sync_api")
    url, task_id = await _link(portal, coordinator, api)

    def in_browser() -> tuple[list[str], str]:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("button", name="Accept").click()
            page.wait_for_selector("#status:text('accepted')")
            page.get_by_role("button", name="Start").click()
            page.wait_for_selector("#status:text('in-progress')")
            page.get_by_role("button", name="Complete").click()  # nothing filled in: every problem
            problems = page.locator(".errors li").all_inner_texts()
            page.select_option("#field\\.procedure", "cemented-thr")
            page.select_option("#field\\.side", "right")
            page.fill("#field\\.operation_date", "2026-03-02")
            page.select_option("#field\\.weight_bearing", "partial")
            page.select_option("#field\\.njr_record_submitted", "false")
            page.fill("#field\\.operation_note", "https://records.example/notes/2")
            page.get_by_role("button", name="Complete").click()
            status = page.locator("#status").inner_text()
            browser.close()
            return problems, status

    problems, status = await asyncio.to_thread(in_browser)
    assert any("missing required field 'side'" in p for p in problems), problems
    assert status == "completed"
    assert (await read_task(portal, task_id, bearer(api.provider_token(ORTHO))))["status"] == "completed"
