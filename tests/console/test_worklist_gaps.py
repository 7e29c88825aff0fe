"""The coordinator's worklist gaps, on the real stack (dev server, worker, API over HTTP): a patient
found by name or NHS number, the duplicate start's running pathway as a problem member, and a
terminated pathway's handovers read as cancelled in FHIR search and the worklist."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from activities.store import EventStore, handover_rows
from pathways.events import EventKind
from pathways.logs import quiet_access_log
from tests.console.conftest import Console, fresh_nhs_number
from tests.console.test_console_http import signed_in
from worker.reconcile import reconcile_once

pytestmark = pytest.mark.devserver

HIP = "hip-replacement-d2a"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    for _ in range(int(timeout * 4)):
        if await check():
            return
        await asyncio.sleep(0.25)
    raise AssertionError("not within the timeout")


async def start(http: httpx.AsyncClient, console: Console, name: str, number: str) -> str:
    started = await http.post(
        "/api/pathways",
        json={"definition": HIP, "patient": {"nhs_number": number, "name": name},
              "allow_duplicate": True},
        headers=console.api_headers,
    )
    assert started.status_code == 201, started.text
    return str(started.json()["id"])


async def test_a_duplicate_start_names_the_running_pathway_as_a_problem_member(
    console: Console, http: httpx.AsyncClient
) -> None:
    body = {"definition": HIP, "patient": {"nhs_number": fresh_nhs_number(), "name": "Dupe"}}
    first = await http.post("/api/pathways", json=body, headers=console.api_headers)
    assert first.status_code == 201, first.text
    again = await http.post("/api/pathways", json=body, headers=console.api_headers)
    assert again.status_code == 409, again.text
    assert again.headers["content-type"].startswith("application/problem+json")
    problem = again.json()
    assert problem["pathway_id"] == first.json()["id"] and problem["definition_id"] == HIP
    assert problem["status"] == 409 and problem["problems"]
    other = await http.get("/api/pathways/pw-0000000000000000", headers=console.api_headers)
    assert "pathway_id" not in other.json()  # a member only where it means something


async def test_the_worklist_finds_a_patient_by_name_and_by_nhs_number(
    console: Console, http: httpx.AsyncClient
) -> None:
    number = fresh_nhs_number()
    pathway_id = await start(http, console, "Wilhelmina Quarrington-Zed", number)
    client, _ = await signed_in(console)

    async def listed(text: str) -> bool:
        page = await client.get("/", params={"q": text})
        assert page.status_code == 200
        return f"/pathways/{pathway_id}" in page.text

    await eventually(lambda: listed("quarrington"))  # the worker indexed the patient
    assert await listed("WILHELMINA zed")
    assert await listed(number.replace(" ", "-"))
    assert await listed(re.sub(r"\D", "", number))
    assert not await listed("wilhelmina nobody")
    assert not await listed("quarr")
    await client.aclose()


async def test_a_terminated_pathways_handovers_read_cancelled_in_fhir_search_and_the_worklist(
    console: Console, http: httpx.AsyncClient, dev_env: WorkflowEnvironment
) -> None:
    pathway_id = await start(http, console, "Terry Minate", fresh_nhs_number())
    store = EventStore(console.settings.event_store)

    def open_handovers() -> list[tuple[str, str, str]]:
        h = handover_rows.c
        with store.engine.connect() as conn:
            return [(r[0], r[1], r[2]) for r in conn.execute(
                select(h.task_id, h.provider_id, h.status).where(h.pathway_id == pathway_id))]

    async def dispatched() -> bool:
        return any(status == "requested" for _, _, status in open_handovers())

    await eventually(dispatched)
    [(task_id, provider_id, _)] = open_handovers()
    await dev_env.client.get_workflow_handle(pathway_id).terminate("stuck in test")

    async def reconciled() -> bool:
        await reconcile_once(dev_env.client, store)
        return open_handovers()[0][2] == "cancelled"

    await eventually(reconciled, timeout=20)
    found = await http.get(
        "/fhir/Task", params={"owner": f"Organization/{provider_id}", "_count": "100"},
        headers=console.api_headers,
    )
    assert found.status_code == 200, found.text
    [task] = [e["resource"] for e in found.json().get("entry", [])
              if e["resource"]["id"] == task_id]
    assert task["status"] == "cancelled"
    assert task["statusReason"]["text"] == "pathway terminated in Temporal"
    assert "extension" not in task.get("restriction", {})  # no accept-by on a dead handover
    assert int(task["meta"]["versionId"]) >= 2
    kinds = [e.kind for e in store.events(pathway_id)]
    assert kinds[-2:] == [EventKind.CANCELLED, EventKind.PATHWAY_TERMINATED]
    client, _ = await signed_in(console)
    finished = await client.get("/", params={"queue": "finished", "q": pathway_id})
    assert f"/pathways/{pathway_id}" in finished.text and "erminated" in finished.text
    running = await client.get("/", params={"q": pathway_id})
    assert f"/pathways/{pathway_id}" not in running.text
    await client.aclose()
    store.close()


async def test_a_patient_search_never_reaches_the_access_log(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_access_log()  # as configure_logging does in every process
    client, _ = await signed_in(console)
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        page = await client.get("/", params={"q": "Quarrington 943 476 5919"})
    assert page.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any('"GET / HTTP' in line for line in lines), lines
    assert not any("uarrington" in line or "943" in line for line in lines)
    await client.aclose()
