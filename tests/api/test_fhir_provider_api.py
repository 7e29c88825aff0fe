"""Provider systems over FHIR R4: read, search and move their handovers; every refusal explained."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.task import Task

from pathways.catalogue import Catalogue
from tests.api.conftest import RunningApi
from tests.api.flow import HIP, bearer, fhir_outputs, put_status, read_task, start_pathway

pytestmark = pytest.mark.devserver

ORTHO = "elmshire-elective-ortho-centre"
HUB = "elmshire-care-transfer-hub"
FHIR_JSON = "application/fhir+json"


def issues(response: httpx.Response) -> list[str]:
    """The diagnostics of an OperationOutcome answer (validated as FHIR R4)."""
    assert response.headers["content-type"].startswith(FHIR_JSON)
    outcome = OperationOutcome.model_validate(response.json())
    return [issue.diagnostics or "" for issue in outcome.issue]


@pytest.fixture(scope="module")
def ortho(api: RunningApi) -> dict[str, str]:
    return bearer(api.provider_token(ORTHO))


async def _first_task(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> dict[str, Any]:
    pathway_id = await start_pathway(http, coordinator)
    return await read_task(http, f"{pathway_id}.hip-replacement.1", ortho)


async def test_a_provider_completes_a_whole_shipped_pathway_through_fhir(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], catalogue: Catalogue
) -> None:
    definition = catalogue.get(HIP)
    pathway_id = await start_pathway(http, coordinator)
    providers = {p.id for role in definition.roles for p in role.providers}
    headers = {p: bearer(api.provider_token(p)) for p in providers}
    completed: list[str] = []
    for _ in range(400):
        detail = (await http.get(f"/api/pathways/{pathway_id}", headers=coordinator)).json()
        if detail["status"] == "completed":
            break
        for provider_id, auth in headers.items():
            search = await http.get(
                "/fhir/Task", params={"status": "requested,accepted"}, headers=auth
            )
            assert search.status_code == 200, search.text
            for entry in search.json().get("entry", []):
                task = entry["resource"]
                if task["basedOn"][0]["reference"] != f"CarePlan/{pathway_id}":
                    continue
                step = definition.step(task["code"]["coding"][0]["code"])
                if task["status"] == "requested":
                    accepted = await put_status(http, task, "accepted", auth)
                    assert accepted.status_code == 200, accepted.text
                    task = accepted.json()
                done = await put_status(http, task, "completed", auth, output=fhir_outputs(step))
                assert done.status_code == 200, done.text
                assert done.json()["status"] == "completed"
                completed.append(step.id)
        await asyncio.sleep(0.05)
    assert detail["status"] == "completed"
    assert completed[0] == "hip-replacement" and completed[-1] in {s.id for s in definition.steps}
    assert set(completed) <= {s.id for s in definition.steps}
    assert {s["id"] for s in detail["steps"] if s["status"] == "done"} == set(completed)
