"""The console over plain HTTP: sign-in required, CSRF tokens on every form, no NHS number in any
error page, cookies that scripts and other sites cannot use."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time

import httpx
import pytest

from api.tokens import TokenStore
from pathways.settings import Settings
from tests.api.conftest import serve_in_thread
from tests.console.conftest import SHORT, Console, fresh_nhs_number
from tests.ops.processes import PATHWAYS, env_for, free_port

pytestmark = pytest.mark.devserver

NHS = "943 476 5919"
WRONG_DIGIT = "943 476 5918"


async def signed_in(console: Console) -> tuple[httpx.AsyncClient, str]:
    """A client with a console session, and its CSRF token (read from a page, as a browser)."""
    client = httpx.AsyncClient(base_url=console.base_url, timeout=30)
    form = await client.get("/signin")
    nonce = client.cookies["pathways_signin"]
    assert f'value="{nonce}"' in form.text
    done = await client.post("/signin", data={"token": console.coordinator_token, "csrf": nonce})
    assert done.status_code == 303 and done.headers["location"] == "/"
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    page = await client.get("/start")
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert token is not None
    return client, token.group(1)


async def test_pages_redirect_to_sign_in_and_sign_in_needs_its_form_token(console: Console) -> None:
    async with httpx.AsyncClient(base_url=console.base_url, timeout=30) as client:
        for path in (
            "/",
            "/escalations",
            "/start",
            "/catalogue",
            "/pathways/pw-x",
            "/console/events",
        ):
            response = await client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/signin?next="), path
        refused = await client.post("/signin", data={"token": console.coordinator_token})
        assert refused.status_code == 403 and "pathways_console" not in refused.headers.get(
            "set-cookie", ""
        )
        open_redirect = await client.get("/signin", params={"next": "//evil.example/x"})
        assert "evil.example" not in open_redirect.text


async def test_every_form_without_its_csrf_token_is_refused(
    console: Console, http: httpx.AsyncClient
) -> None:
    client, token = await signed_in(console)
    patient = {"nhs_number": fresh_nhs_number(), "name": "Csrf"}
    started = await http.post(
        "/api/pathways",
        json={"definition": "hip-replacement-d2a", "patient": patient},
        headers=console.api_headers,
    )
    assert started.status_code == 201, started.text
    pathway_id = started.json()["id"]
    forms = {
        "/start": {"definition": "hip-replacement-d2a", "nhs_number": NHS, "name": "X"},
        f"/pathways/{pathway_id}/hold": {"reason": "r"},
        f"/pathways/{pathway_id}/cancel": {"reason": "r", "confirm": "yes"},
        f"/pathways/{pathway_id}/note": {"text": "t"},
        f"/pathways/{pathway_id}/reassign": {
            "handover_id": "hip-replacement.1",
            "provider_id": "fenwick-park-hospital",
            "reason": "r",
        },
        f"/pathways/{pathway_id}/extend": {
            "handover_id": "hip-replacement.1",
            "by": "PT1H",
            "reason": "r",
        },
        f"/escalations/{pathway_id}/1/acknowledge": {},
        f"/escalations/{pathway_id}/1/resolve": {},
        "/escalations/acknowledge": {"chosen": f"{pathway_id}-1", "confirm": "yes"},
        "/signout": {},
    }
    other_session = "0" * 64
    for path, data in forms.items():
        for sent in ({}, {"csrf": other_session}):
            response = await client.post(path, data=data | sent)
            assert response.status_code == 403, (path, sent, response.status_code)
            assert "security token" in response.text
    detail = (await http.get(f"/api/pathways/{pathway_id}", headers=console.api_headers)).json()
    assert detail["status"] == "active" and detail["notes"] == []  # nothing was applied
    # with the token, the same form works
    held = await client.post(f"/pathways/{pathway_id}/hold", data={"reason": "r", "csrf": token})
    assert held.status_code == 303
    # a signed-out browser's form is refused too, never applied
    async with httpx.AsyncClient(base_url=console.base_url, timeout=30) as anonymous:
        response = await anonymous.post(
            f"/pathways/{pathway_id}/note", data={"text": "t", "csrf": token}
        )
        assert response.status_code == 401
    await client.aclose()


async def test_no_nhs_number_appears_in_any_error_page(console: Console) -> None:
    client, token = await signed_in(console)
    attempts = [
        {"definition": "hip-replacement-d2a", "nhs_number": WRONG_DIGIT, "name": "Err"},
        {"definition": "hip-replacement-d2a", "nhs_number": "943-476-5918", "name": "Err"},
        {"definition": "hip-replacement-d2a", "nhs_number": "12345", "name": "Err"},
        {"definition": "no-such-definition", "nhs_number": NHS, "name": "Err"},
        {"definition": "hip-replacement-d2a", "nhs_number": NHS, "name": "x" * 500},
        {
            "definition": "hip-replacement-d2a",
            "nhs_number": NHS,
            "name": "Err",
            "birth_date": "31/12/1950",
        },
    ]
    for data in attempts:
        response = await client.post("/start", data=data | {"csrf": token})
        assert response.status_code in (409, 422), (data["definition"], response.status_code)
        assert 'role="alert"' in response.text
        digits = re.sub(r"\D", "", data["nhs_number"])
        page = re.sub(r'value="[0-9a-f]{16,}(-\w)?"', "", response.text)  # CSRF and form keys
        flat = re.sub(r"[\s-]", "", page)
        assert digits not in flat, data["definition"]
    missing = await client.get("/pathways/pw-0000000000000000")
    assert missing.status_code == 404 and "no pathway" in missing.text
    await client.aclose()


async def test_a_second_start_for_the_same_patient_links_the_running_one(console: Console) -> None:
    client, token = await signed_in(console)
    number = fresh_nhs_number()
    form = {"definition": "hip-replacement-d2a", "nhs_number": number, "name": "Twice"}
    first = await client.post("/start", data=form | {"csrf": token, "key": "first"})
    assert first.status_code == 303
    first_id = first.headers["location"].split("/")[2].split("?")[0]
    again = await client.post("/start", data=form | {"csrf": token, "key": "second"})
    assert again.status_code == 409, again.text
    assert f'href="/pathways/{first_id}"' in again.text and "Start anyway" in again.text
    assert re.sub(r"\D", "", number) not in re.sub(r"[\s-]", "", again.text)
    anyway = form | {"csrf": token, "key": "third", "allow_duplicate": "yes"}
    second = await client.post("/start", data=anyway)
    assert second.status_code == 303 and first_id not in second.headers["location"]
    await client.aclose()


async def test_the_session_cookie_is_secure_when_served_over_https(console: Console) -> None:
    async with httpx.AsyncClient(base_url=console.base_url, timeout=30) as client:
        https = {"X-Forwarded-Proto": "https"}  # behind a TLS-terminating proxy
        form = await client.get("/signin", headers=https)
        assert "Secure" in form.headers["set-cookie"]
        nonce = form.cookies["pathways_signin"]
        data = {"token": console.coordinator_token, "csrf": nonce}
        cookie = {"Cookie": f"pathways_signin={nonce}"}  # as the browser sends it over https
        done = await client.post("/signin", data=data, headers=https | cookie)
        assert done.status_code == 303
        session = next(
            c for c in done.headers.get_list("set-cookie") if c.startswith("pathways_console=")
        )
        assert "Secure" in session and "HttpOnly" in session and "SameSite=strict" in session


async def test_the_api_process_stops_promptly_with_a_live_feed_open(settings: Settings) -> None:
    """Ctrl-C on `pathways api` (and so `pathways up`) must not wait for a browser's open event
    stream (failed before: with curl holding the feed, the API was still running after 40 s)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    port = free_port()
    env = env_for(settings, PATHWAYS_API_PORT=str(port))
    tokens = TokenStore(settings.event_store)
    tokens.migrate()
    token = tokens.issue_coordinator("stopper")
    quiet = subprocess.DEVNULL
    child = subprocess.Popen([PATHWAYS, "api"], env=env, stdout=quiet, stderr=quiet)
    feed = None
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for _ in range(300):
                try:
                    if (await client.get("/signin")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        feed = subprocess.Popen(
            ["curl", "-s", "-N", "-b", f"pathways_console={token}", f"{base}/console/events"],
            stdout=subprocess.PIPE,
        )
        assert feed.stdout is not None
        assert feed.stdout.readline().startswith(b"retry:")  # the browser's live feed is open
        await asyncio.sleep(1)
        child.send_signal(signal.SIGINT)
        began = time.monotonic()
        while child.poll() is None and time.monotonic() - began < 30:
            await asyncio.sleep(0.2)
        assert child.poll() is not None, "the API kept running for an open event stream"
        assert time.monotonic() - began < 15
    finally:
        for process in (child, feed):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=10)


async def test_bulk_acknowledge_needs_a_confirmation(
    console: Console, http: httpx.AsyncClient
) -> None:
    client, token = await signed_in(console)
    ids = []
    for name in ("Bulk One", "Bulk Two"):
        patient = {"nhs_number": fresh_nhs_number(), "name": name}
        started = await http.post(
            "/api/pathways",
            json={"definition": SHORT, "patient": patient},
            headers=console.api_headers,
        )
        assert started.status_code == 201, started.text
        ids.append(started.json()["id"])
    chosen: list[str] = []
    for _ in range(300):
        inbox = (await client.get("/escalations")).text
        chosen = re.findall(rf'name="chosen" value="((?:{ids[0]}|{ids[1]})-\d+)"', inbox)
        if len(chosen) == 2:
            break
        await asyncio.sleep(0.1)
    assert len(chosen) == 2
    data = {"csrf": token, "chosen": chosen}
    unconfirmed = await client.post("/escalations/acknowledge", data=data)
    assert unconfirmed.status_code == 303 and "confirm" in unconfirmed.headers["location"]
    confirmed = await client.post("/escalations/acknowledge", data=data | {"confirm": "yes"})
    assert confirmed.status_code == 303
    page = await client.get(confirmed.headers["location"])
    assert "2 acknowledged" in page.text
    for choice in chosen:
        item = page.text.split(f'id="esc-{choice}"')[1].split("</li>")[0]
        assert "Acknowledged" in item
    await client.aclose()


async def test_the_worklist_shows_names_while_the_engine_is_down(
    console: Console, http: httpx.AsyncClient
) -> None:
    """Names and accept-by times come from the read model's rendered Tasks, not a Query per
    row: with Temporal unreachable the worklist still says who each pathway is for."""
    patient = {"nhs_number": fresh_nhs_number(), "name": "Offline Example"}
    body = {"definition": "hip-replacement-d2a", "patient": patient}
    started = await http.post("/api/pathways", json=body, headers=console.api_headers)
    assert started.status_code == 201, started.text
    pathway_id = started.json()["id"]
    offline = console.settings.model_copy(
        update={
            "api_port": free_port(),
            "temporal_address": "127.0.0.1:1",
            "update_timeout_seconds": 1.0,
        }
    )
    served = serve_in_thread(offline, timeout_graceful_shutdown=2)
    base = next(served)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            client.cookies.set("pathways_console", console.coordinator_token)
            for _ in range(100):
                page = await client.get("/", params={"q": pathway_id})
                assert page.status_code == 200
                if "Offline Example" in page.text:
                    break
                await asyncio.sleep(0.1)
            assert "Offline Example" in page.text and "accept in" in page.text
    finally:
        served.close()
