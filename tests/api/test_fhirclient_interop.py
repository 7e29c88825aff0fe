"""A generic FHIR client that never saw this project (the `fhirclient` package, R4 models) works.

fhirclient is synchronous (requests), so each conversation runs in a thread while the worker
keeps running on the test's event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import requests
from fhirclient import server as fhir_server
from fhirclient.models.operationoutcome import OperationOutcome
from fhirclient.models.questionnaire import Questionnaire
from fhirclient.models.task import Task, TaskOutput

from pathways.catalogue import Catalogue
from tests.api.conftest import RunningApi
from tests.api.flow import HIP, fhir_outputs, read_task, start_pathway

pytestmark = pytest.mark.devserver

ORTHO = "elmshire-elective-ortho-centre"


def _connect(base_url: str, token: str) -> fhir_server.FHIRServer:
    server = fhir_server.FHIRServer(None, base_uri=f"{base_url}/fhir")
    server.session.headers["Authorization"] = f"Bearer {token}"
    return server


def _outcome(error: requests.HTTPError) -> list[str]:
    assert error.response is not None
    outcome = OperationOutcome(error.response.json())
    return [issue.diagnostics for issue in outcome.issue]


def _conversation(
    base_url: str, token: str, pathway_id: str, outputs: list[dict[str, Any]]
) -> dict[str, Any]:
    """What a provider system would do: list its new Tasks, accept, complete (first badly)."""
    server = _connect(base_url, token)
    # Pages of two: fhirclient follows the Bundle's next links through every earlier test's Tasks.
    found: list[Task] = Task.where(
        struct={"owner": f"Organization/{ORTHO}", "status": "requested", "_count": "2"}
    ).perform_resources(server)
    mine = [t for t in found if t.basedOn[0].reference == f"CarePlan/{pathway_id}"]
    (task,) = mine
    contract_url = next(i.valueCanonical for i in task.input if i.type.text == "handover-contract")
    contract = Questionnaire.read_from(contract_url, server)

    task.status = "accepted"
    accepted = Task(task.update(server))

    accepted.status = "completed"
    accepted.output = [TaskOutput(o) for o in outputs if o["type"]["text"] != "side"]
    try:
        accepted.update(server)
        refused: list[str] = []
    except requests.HTTPError as error:
        assert error.response is not None and error.response.status_code == 422
        refused = _outcome(error)

    accepted.output = [TaskOutput(o) for o in outputs]
    completed = Task(accepted.update(server))
    return {
        "accepted": accepted.status,
        "contract_items": [item.linkId for item in contract.item],
        "refused": refused,
        "completed": completed.as_json(),
        "read_back": Task.read(task.id, server).status,
    }


async def test_fhirclient_lists_accepts_and_completes_its_task(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], catalogue: Catalogue
) -> None:
    token = api.provider_token(ORTHO)
    pathway_id = await start_pathway(http, coordinator)
    await read_task(http, f"{pathway_id}.hip-replacement.1", {"Authorization": f"Bearer {token}"})
    step = catalogue.get(HIP).step("hip-replacement")
    outputs = fhir_outputs(step)
    for _ in range(300):  # the search reads the read model, which follows within moments
        listed = (
            await http.get(
                "/fhir/Task",
                params={"status": "requested", "_count": "100"},
                headers={"Authorization": f"Bearer {token}"},
            )
        ).json()
        if any(
            e["resource"]["basedOn"][0]["reference"] == f"CarePlan/{pathway_id}"
            for e in listed.get("entry", [])
        ):
            break
        await asyncio.sleep(0.05)
    result = await asyncio.to_thread(_conversation, api.base_url, token, pathway_id, outputs)
    assert result["contract_items"] == [f.name for f in step.handover]
    assert result["refused"] == ["missing required field 'side'"]
    completed = result["completed"]
    assert completed["status"] == "completed" and result["read_back"] == "completed"
    assert {o["type"]["text"] for o in completed["output"]} == {f.name for f in step.handover}


async def test_fhirclient_sees_401_and_404_as_its_own_errors(api: RunningApi) -> None:
    def attempt() -> tuple[type[Exception], type[Exception]]:
        anonymous = _connect(api.base_url, "pwt_wrong")
        errors: list[type[Exception]] = []
        for server, task_id in (
            (anonymous, "x"),
            (
                _connect(api.base_url, api.provider_token(ORTHO)),
                "pw-0123456789abcdef.hip-replacement.1",
            ),
        ):
            try:
                Task.read(task_id, server)
            except Exception as error:  # fhirclient raises its own exception types
                errors.append(type(error))
        return errors[0], errors[1]

    unauthorised, missing = await asyncio.to_thread(attempt)
    assert unauthorised is fhir_server.FHIRUnauthorizedException
    assert missing is fhir_server.FHIRNotFoundException
