"""A Task's `basedOn` resolves: GET /fhir/CarePlan/{pathway id} over real HTTP against a real
worker, validated with the fhir.resources R4B and fhirclient R4 models; visible to a provider
that holds or held a Task of the pathway (only its own Tasks listed), 404 for any other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fhir.resources.R4B.careplan import CarePlan
from fhirclient.models.careplan import CarePlan as R4CarePlan

from pathways.fhir import NHS_NUMBER_SYSTEM, PATHWAY_SYSTEM
from tests.api.conftest import RunningApi
from tests.api.flow import PATIENT, bearer, read_task, start_pathway
from tests.api.test_fhir_conformance import check_capability_statement, issues, no_empty_elements

pytestmark = pytest.mark.devserver

ORTHO = "elmshire-elective-ortho-centre"
FENWICK = "fenwick-park-hospital"
HUB = "elmshire-care-transfer-hub"


@pytest_asyncio.fixture
async def client(api: RunningApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
        yield http


def check_careplan(body: dict[str, Any]) -> None:
    CarePlan.model_validate(body)
    R4CarePlan(body, strict=True)
    no_empty_elements(body)


async def _resolve(client: httpx.AsyncClient, reference: str, who: dict[str, str]) -> httpx.Response:
    return await client.get(f"/fhir/{reference}", headers=who)


async def test_a_tasks_based_on_resolves_to_the_pathways_careplan(
    api: RunningApi, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    ortho = bearer(api.provider_token(ORTHO))
    pathway_id = await start_pathway(client, coordinator)
    task = await read_task(client, f"{pathway_id}.hip-replacement.1", ortho)
    (based_on,) = task["basedOn"]
    response = await _resolve(client, based_on["reference"], ortho)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    careplan = response.json()
    check_careplan(careplan)
    assert careplan["id"] == pathway_id and careplan["resourceType"] == "CarePlan"
    assert (careplan["status"], careplan["intent"]) == ("active", "order")
    assert careplan["title"] == "Elective hip replacement with discharge to assess"
    assert careplan["identifier"] == [{"system": PATHWAY_SYSTEM, "value": pathway_id}]
    assert careplan["subject"] == task["for"]
    assert careplan["subject"]["identifier"] == {
        "system": NHS_NUMBER_SYSTEM, "value": PATIENT["nhs_number"].replace(" ", "")}
    assert careplan["author"] == task["requester"]
    assert [a["reference"]["reference"] for a in careplan["activity"]] == [f"Task/{task['id']}"]

    everything = (await _resolve(client, based_on["reference"], coordinator)).json()
    check_careplan(everything)
    assert f"Task/{task['id']}" in [a["reference"]["reference"] for a in everything["activity"]]


async def test_only_a_provider_that_had_a_task_of_the_pathway_sees_its_careplan(
    api: RunningApi, client: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    ortho, fenwick, hub = (bearer(api.provider_token(p)) for p in (ORTHO, FENWICK, HUB))
    pathway_id = await start_pathway(client, coordinator)
    task = await read_task(client, f"{pathway_id}.hip-replacement.1", ortho)

    never = await client.get(f"/fhir/CarePlan/{pathway_id}", headers=hub)
    assert never.status_code == 404, never.text
    assert issues(never) == [f"no CarePlan {pathway_id}"]
    assert (await client.get(f"/fhir/CarePlan/{pathway_id}", headers=fenwick)).status_code == 404
    for unknown in ("pw-0000000000000000", "not-a-pathway", "pw-" + "a" * 70):
        missing = await client.get(f"/fhir/CarePlan/{unknown}", headers=coordinator)
        assert missing.status_code == 404 and issues(missing)

    moved = await client.post(
        f"/api/pathways/{pathway_id}/reassign",
        json={"handover_id": "hip-replacement.1", "provider_id": FENWICK, "reason": "list"},
        headers=coordinator,
    )
    assert moved.status_code == 200, moved.text
    now = (await client.get(f"/fhir/CarePlan/{pathway_id}", headers=fenwick)).json()
    check_careplan(now)
    assert [a["reference"]["reference"] for a in now["activity"]] == [f"Task/{task['id']}"]
    held = await client.get(f"/fhir/CarePlan/{pathway_id}", headers=ortho)
    assert held.status_code == 200, "a provider that held a Task still sees the plan"
    check_careplan(held.json())
    assert "activity" not in held.json(), "but not the Task that is now another provider's"
    assert (await client.get(f"/fhir/CarePlan/{pathway_id}", headers=hub)).status_code == 404


async def test_the_capability_statement_advertises_careplan_read(client: httpx.AsyncClient) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    check_capability_statement(statement)
    (resource,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "CarePlan"]
    assert resource["interaction"] == [{"code": "read"}]
