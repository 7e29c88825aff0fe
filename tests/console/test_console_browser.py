"""The coordinator console in a real browser (chromium, headless) against a running stack:
sign in, start a pathway from the form, follow it live in the worklist, rescue it (reassign,
extend, hold, resume, cancel), handle an escalation from the inbox, keyboard only, accessibility.

Screenshots of each page land in build/screenshots/ (`make screenshots` refreshes the README's
copies in docs/screenshots/).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from pathways.catalogue import load_catalogue
from tests.api.flow import bearer, fhir_outputs, put_status, read_task
from tests.console.conftest import (
    BREACH,
    SHORT,
    Console,
    axe_violations,
    fresh_nhs_number,
    screenshot,
    sign_in,
)

pytestmark = pytest.mark.devserver

HIP = "hip-replacement-d2a"


async def start_via_api(
    http: httpx.AsyncClient, console: Console, definition: str, name: str
) -> str:
    patient = {"nhs_number": fresh_nhs_number(), "name": name}
    body = {"definition": definition, "patient": patient}
    response = await http.post("/api/pathways", json=body, headers=console.api_headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def until(check: Any, seconds: float = 20) -> Any:
    for _ in range(int(seconds / 0.1)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition never held")


async def open_task(
    http: httpx.AsyncClient, console: Console, pathway_id: str, step: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The handover's Task and its provider's headers (the provider read from the read model)."""
    store = console.settings
    from activities.store import EventStore

    rows = EventStore(store.event_store)
    row = await until(lambda: asyncio.to_thread(rows.get_task_row, f"{pathway_id}.{step}.1"))
    auth = bearer(console.provider_token(row.provider_id))
    return await read_task(http, f"{pathway_id}.{step}.1", auth), auth


def _recorded(console: Console, pathway_id: str) -> bool:
    from activities.store import EventStore

    return bool(EventStore(console.settings.event_store).events(pathway_id))


async def test_sign_in_is_required_and_the_session_cookie_is_httponly_and_strict(
    browser: Any, console: Console
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{console.base_url}/escalations")
    assert page.url.startswith(f"{console.base_url}/signin")
    await screenshot(page, "sign-in")
    await page.get_by_label("Coordinator token").fill("pwt_not-a-token")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("That token is unknown or revoked").wait_for()
    provider = console.provider_token("test-clinic-a")
    await page.get_by_label("Coordinator token").fill(provider)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("provider systems use the FHIR API").wait_for()
    await page.get_by_label("Coordinator token").fill(console.coordinator_token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{console.base_url}/escalations")  # back where the user was going
    (cookie,) = [c for c in await context.cookies() if c["name"] == "pathways_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # scripts cannot read the session
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(re.compile(r".*/signin.*"))
    await page.goto(f"{console.base_url}/")
    assert page.url.startswith(f"{console.base_url}/signin")
    await context.close()


async def test_start_from_the_form_then_see_it_and_its_handover_update_live(
    page: Any, console: Console, http: httpx.AsyncClient
) -> None:
    await page.get_by_role("link", name="Start a pathway").first.click()
    await page.get_by_label("Pathway").select_option(HIP)
    number = fresh_nhs_number()
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)  # wrong check digit
    await page.get_by_label("NHS number").fill(wrong)
    await page.get_by_label("Patient name").fill("Console Patient")
    await page.get_by_role("button", name="Start pathway").click()
    alert = page.get_by_role("alert")
    await alert.get_by_text("check digit is wrong").wait_for()
    html = await page.content()
    assert wrong not in html and wrong.replace(" ", "") not in html and wrong[4:] not in html
    assert await page.get_by_label("Patient name").input_value() == "Console Patient"
    await screenshot(page, "start-a-pathway-refused")
    await page.get_by_label("NHS number").fill(number)
    await page.get_by_role("button", name="Start pathway").click()
    await page.wait_for_url(re.compile(r".*/pathways/pw-[^/?]+\?done=start"))
    pathway_id = re.search(r"/pathways/(pw-[^/?#]+)", page.url).group(1)  # type: ignore[union-attr]
    await page.get_by_role("heading", name="Console Patient").wait_for()

    await page.goto(f"{console.base_url}/?q={pathway_id}")
    row = page.locator(f"#row-{pathway_id}")
    await row.get_by_role("link", name="Console Patient").wait_for()
    assert "Total hip replacement" in await row.inner_text()
    await page.evaluate("window.__sameDocument = true")
    await page.keyboard.press("j")  # the coordinator is on this row while it changes

    task, auth = await open_task(http, console, pathway_id, "hip-replacement")
    accepted = await put_status(http, task, "accepted", auth)
    assert accepted.status_code == 200, accepted.text
    step = load_catalogue(console.settings.catalogue_dir).get(HIP).step("hip-replacement")
    done = await put_status(http, accepted.json(), "completed", auth, output=fhir_outputs(step))
    assert done.status_code == 200, done.text

    await page.locator(f"#row-{pathway_id}.updated").wait_for(timeout=20_000)
    live = page.get_by_role("status").filter(has_text="updated")
    await live.wait_for()
    row = page.locator(f"#row-{pathway_id}")

    async def moved_on() -> bool:
        return "Total hip replacement" not in await row.inner_text()

    await until(moved_on)  # the next step is shown in place, row by row
    assert "Discharge decision" in await row.inner_text()
    assert "selected" in (await row.get_attribute("class") or "")  # still where the user was
    focused = await page.evaluate(
        "document.activeElement.closest('tr') && document.activeElement.closest('tr').id"
    )
    assert focused == f"row-{pathway_id}"
    assert await page.evaluate("window.__sameDocument === true")  # no reload happened
    await screenshot(page, "worklist-live-update")
    await row.get_by_role("link", name="Console Patient").click()
    timeline = page.locator("table.timeline")
    await timeline.wait_for()
    text = await timeline.inner_text()
    assert "Completed" in text and "Discharge decision" in text and "planned" in text
    await screenshot(page, "pathway-timeline")


async def test_reassign_extend_hold_resume_and_cancel_from_the_pathway_page(
    page: Any, console: Console, http: httpx.AsyncClient
) -> None:
    pathway_id = await start_via_api(http, console, HIP, "Rescue Patient")
    await open_task(http, console, pathway_id, "hip-replacement")
    await page.goto(f"{console.base_url}/pathways/{pathway_id}")
    ui = await page.get_by_role("link", name=re.compile("Open in Temporal Web UI")).get_attribute(
        "href"
    )
    host, _, port = console.settings.temporal_address.rpartition(":")
    namespace = console.settings.namespace
    assert ui == f"http://{host}:{int(port) + 1000}/namespaces/{namespace}/workflows/{pathway_id}"
    await asyncio.sleep(1.5)  # the page's own version never counts as a change
    assert await page.locator("#pathway-live").is_hidden()
    note = {"text": "called the ward"}  # another coordinator, elsewhere
    added = await http.post(
        f"/api/pathways/{pathway_id}/notes", json=note, headers=console.api_headers
    )
    assert added.status_code == 201, added.text
    await page.get_by_text("This pathway has changed").wait_for(timeout=15_000)
    await page.get_by_role("link", name="Reload").click()
    await page.get_by_text("called the ward").wait_for()

    reassign = page.locator("#form-reassign")
    current = await page.locator("#reassign-handover option").first.inner_text()
    target = await reassign.locator(
        "#reassign-provider option:not([disabled])"
    ).first.get_attribute("value")
    assert target and target not in current
    await reassign.get_by_label("To provider").select_option(target)
    await reassign.get_by_label("Reason").fill("theatre list full this week")
    await reassign.get_by_role("button", name="Reassign").click()
    await page.get_by_text("Done: reassign.").wait_for()
    assert target in await page.locator("table.timeline").inner_text()

    extend = page.locator("#form-extend")
    await extend.get_by_label("Extend by").select_option("custom")
    await extend.get_by_label("Other duration").fill("soon")
    await extend.get_by_label("Reason").fill("waiting for a bed")
    await extend.get_by_role("button", name="Extend").click()
    await page.locator("#extend-errors").wait_for()  # the API's own refusal, shown in the form
    assert "duration" in (await page.locator("#extend-errors").inner_text()).lower()
    extend = page.locator("#form-extend")
    await extend.get_by_label("Extend by").select_option("P1D")
    await extend.get_by_label("Reason").fill("waiting for a bed")
    await extend.get_by_role("button", name="Extend").click()
    await page.get_by_text("Done: extend.").wait_for()

    async def recorded() -> bool:
        await page.reload()
        history = await page.locator("table.history").text_content() or ""
        return "due-extended" in history and "reassigned" in history

    await until(recorded)  # the event history (read from the event store) shows both

    await page.locator("#form-hold").get_by_label("Reason").fill("admitted to hospital")
    await page.locator("#form-hold").get_by_role("button", name="Put on hold").click()
    await page.get_by_text("Done: hold.").wait_for()
    assert "On hold" in await page.locator(".state-badges").inner_text()
    await screenshot(page, "pathway-on-hold")
    await page.locator("#form-resume").get_by_label("Reason").fill("discharged home")
    await page.locator("#form-resume").get_by_role("button", name="Resume the clocks").click()
    await page.get_by_text("Done: resume.").wait_for()
    assert "Active" in await page.locator(".state-badges").inner_text()
    assert "Resumed: discharged home" in await page.locator(".notes").inner_text()

    cancel = page.locator("#form-cancel")
    await cancel.get_by_label("Reason").fill("patient moved away")
    await cancel.get_by_role("button", name="Cancel pathway").click()
    await page.locator("#cancel-errors").get_by_text("tick the box to confirm").wait_for()
    cancel = page.locator("#form-cancel")
    await cancel.get_by_label("Reason").fill("patient moved away")
    await cancel.get_by_label("Yes, end this pathway").check()
    await cancel.get_by_role("button", name="Cancel pathway").click()
    await page.get_by_text("Done: cancel.").wait_for()
    assert "Cancelled" in await page.locator(".state-badges").inner_text()
    assert await page.locator("#form-hold").count() == 0  # no actions on a finished pathway

    async def finished() -> bool:
        await page.goto(f"{console.base_url}/?queue=finished")
        row = page.locator(f"#row-{pathway_id}")
        return bool(await row.count()) and "Cancelled" in await row.inner_text()

    await until(finished)  # the Finished queue lists it, latest change first


async def test_an_escalation_is_acknowledged_and_resolved_from_the_inbox(
    page: Any, console: Console, http: httpx.AsyncClient
) -> None:
    first = await start_via_api(http, console, SHORT, "Late Referral One")
    second = await start_via_api(http, console, SHORT, "Late Referral Two")

    async def both_in_inbox() -> bool:
        await page.goto(f"{console.base_url}/escalations")
        return all([await page.locator(f'[id^="esc-{p}-"]').count() for p in (first, second)])

    await until(both_in_inbox, 30)
    await screenshot(page, "escalation-inbox")
    item = page.locator(f'[id^="esc-{first}-"]')
    assert "Alert coordinator" in await item.inner_text()
    await item.get_by_placeholder("Note (optional)").fill("calling the clinic")
    await item.get_by_role("button", name="Acknowledge").click()
    await page.get_by_text("Done: acknowledged.").wait_for()
    item = page.locator(f'[id^="esc-{first}-"]')
    assert "Acknowledged" in await item.inner_text()
    await item.get_by_placeholder("Resolution note").fill("clinic accepted by phone")
    await item.get_by_role("button", name="Resolve").click()
    await page.get_by_text("Done: resolved.").wait_for()
    assert await page.locator(f'[id^="esc-{first}-"]').count() == 0
    # act, then next: the following escalation is selected and focused
    selected = page.locator("#inbox li.selected")
    assert await selected.get_attribute("id") == (
        await page.locator(f'[id^="esc-{second}-"]').get_attribute("id")
    )
    # reassign from the inbox: the late handover goes to the other clinic
    await selected.get_by_text("Reassign or extend").click()
    await selected.get_by_label("Reason").first.fill("clinic A closed today")
    await selected.get_by_role("button", name="Reassign, then next").click()
    await page.get_by_text("Done: reassign.").wait_for()
    await page.goto(f"{console.base_url}/pathways/{second}")
    assert "test-clinic-b" in await page.locator("table.timeline").inner_text()

    async def late_again() -> bool:  # clinic B has 2 seconds to accept as well
        await page.goto(f"{console.base_url}/pathways/{second}")
        return bool(await page.get_by_role("button", name=re.compile("^Acknowledge")).count())

    await until(late_again, 30)
    await page.get_by_role("button", name=re.compile("^Acknowledge")).first.click()
    await page.get_by_text("Done: acknowledge.").wait_for()  # acted from the pathway page
    assert "Acknowledged" in await page.locator("section[aria-labelledby=esc-h]").inner_text()
    await page.goto(f"{console.base_url}/pathways/{first}")
    escalations = await page.locator("section[aria-labelledby=esc-h]").inner_text()
    assert "Resolved" in escalations and "coordinator:casey" in escalations


async def test_the_worklist_works_from_the_keyboard(
    page: Any, console: Console, http: httpx.AsyncClient
) -> None:
    for name in ("Keyboard One", "Keyboard Two"):
        await start_via_api(http, console, HIP, name)

    async def listed() -> bool:
        await page.goto(f"{console.base_url}/?definition={HIP}")
        return bool(await page.locator("#worklist tr.row").count() >= 2)

    await until(listed)
    await page.keyboard.press("j")
    first = page.locator("#worklist tr.row").nth(0)
    assert "selected" in (await first.get_attribute("class") or "")
    await page.keyboard.press("j")
    second = page.locator("#worklist tr.row").nth(1)
    assert "selected" in (await second.get_attribute("class") or "")
    await page.keyboard.press("k")
    assert "selected" in (await first.get_attribute("class") or "")
    focused = await page.evaluate("document.activeElement.closest('tr').id")
    assert focused == await first.get_attribute("id")
    await page.keyboard.press("?")
    await page.get_by_role("dialog", name="Keyboard shortcuts").wait_for()
    await screenshot(page, "keyboard-help")
    await page.keyboard.press("Escape")
    assert not await page.get_by_role("dialog").is_visible()
    expected = await first.get_attribute("data-href")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{console.base_url}{expected}")
    # Tab order starts with the skip link
    await page.goto(f"{console.base_url}/")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"


async def test_every_page_passes_an_axe_scan_and_is_photographed(
    browser: Any, page: Any, console: Console, http: httpx.AsyncClient
) -> None:
    pathway_id = await start_via_api(http, console, HIP, "Axe Patient")
    task, auth = await open_task(http, console, pathway_id, "hip-replacement")
    accepted = await put_status(http, task, "accepted", auth)
    assert accepted.status_code == 200
    # a worklist with something in every state, for the screenshots
    breached = await start_via_api(http, console, BREACH, "Breached Example")
    await start_via_api(http, console, SHORT, "Escalated Example")
    await start_via_api(http, console, "urgent-community-response", "Urgent Example")
    held = await start_via_api(http, console, HIP, "Held Example")
    await until(lambda: asyncio.to_thread(_recorded, console, held))
    hold = await http.post(
        f"/api/pathways/{held}/hold", json={"reason": "in hospital"}, headers=console.api_headers
    )
    assert hold.status_code == 200, hold.text

    async def breach_listed() -> bool:
        await page.goto(f"{console.base_url}/?queue=breached")
        return bool(await page.locator(f"#row-{breached}").count())

    await until(breach_listed, 30)
    breached_row = await page.locator(f"#row-{breached}").inner_text()
    assert "accept overdue" in breached_row and "Breached Example" in breached_row
    pages = {
        "worklist": "/",
        "pathway-detail": f"/pathways/{pathway_id}",
        "escalations": "/escalations",
        "start": "/start",
        "catalogue": "/catalogue",
        "definition": f"/catalogue/{HIP}",
    }
    found: dict[str, list[Any]] = {}
    for name, path in pages.items():
        await page.goto(f"{console.base_url}{path}")
        await screenshot(page, name)
        found[name] = await axe_violations(page)
    anonymous = await browser.new_context()
    tab = await anonymous.new_page()
    await tab.goto(f"{console.base_url}/signin")
    found["sign-in"] = await axe_violations(tab)
    await anonymous.close()
    tablet = await browser.new_context(viewport={"width": 820, "height": 1180})
    tab = await tablet.new_page()
    await sign_in(tab, console)
    await screenshot(tab, "worklist-tablet")
    width = await tab.evaluate("document.documentElement.scrollWidth")
    assert width <= 820, f"the worklist scrolls sideways at tablet width ({width}px)"
    found["worklist-tablet"] = await axe_violations(tab)
    await tablet.close()
    assert {name: v for name, v in found.items() if v} == {}


async def test_a_view_lives_in_the_url_filters_sort_and_columns(
    page: Any, console: Console, http: httpx.AsyncClient
) -> None:
    pathway_id = await start_via_api(http, console, HIP, "View Patient")
    await until(lambda: asyncio.to_thread(_recorded, console, pathway_id))
    await page.goto(f"{console.base_url}/?definition={HIP}&sort=age&dir=desc")
    await page.locator("details.columns summary").click()
    for column in ("Current step", "Provider", "Queue age", "Status"):
        await page.get_by_role("checkbox", name=f"{column} column").uncheck()
    await page.get_by_role("button", name="Apply").click()
    await page.wait_for_url(re.compile(r".*col=definition.*"))
    headers = await page.locator("#worklist thead th").all_inner_texts()
    assert [h.split(" ")[0] for h in headers] == ["Patient", "Definition", "Next", "SLA"]
    shared = page.url  # bookmark it, share it: the same view opens in another tab
    other = await page.context.new_page()
    await other.goto(shared)
    assert await other.locator("#worklist thead th").all_inner_texts() == headers
    assert await other.locator("#f-definition").input_value() == HIP
    await other.get_by_role("link", name="Next due").click()  # sort by a column header
    await other.wait_for_url(re.compile(r".*sort=due.*"))
    assert "cols=definition%2Cdue%2Csla" in other.url or "cols=definition,due,sla" in other.url
    sorted_by = other.locator('#worklist thead th[aria-sort="ascending"]')
    assert "Next due" in await sorted_by.inner_text()
    await other.close()


async def test_a_revoked_token_ends_the_live_worklist_with_a_clear_message(
    browser: Any, console: Console
) -> None:
    token = console.tokens.issue_coordinator("leaver")
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, console, token)
    await page.evaluate("window.__sameDocument = true")
    assert console.tokens.revoke(token)
    await page.get_by_text("You are signed out").wait_for(timeout=30_000)
    assert await page.evaluate("window.__sameDocument === true")
    await page.get_by_role("link", name="Sign in again").click()
    await page.wait_for_url(re.compile(r".*/signin\?next=.*"))
    await context.close()
