"""When the engine cannot answer, the API says 503 with Retry-After rather than hang or fail."""

from __future__ import annotations

import httpx
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from api.tokens import TokenStore
from pathways.settings import Settings
from tests.api.conftest import free_port, serve_in_thread
from tests.api.flow import PATIENT, bearer

pytestmark = pytest.mark.devserver


async def test_without_a_worker_reads_and_changes_answer_503(api_settings: Settings) -> None:
    settings = api_settings.model_copy(
        update={
            "api_port": free_port(),
            "task_queue": "no-worker-polls-this",
            "update_timeout_seconds": 1.0,
        }
    )
    served = serve_in_thread(settings)
    base_url = next(served)
    tokens = TokenStore(settings.event_store)
    coordinator = bearer(tokens.issue_coordinator("on-call"))
    provider = bearer(tokens.issue_provider("elmshire-elective-ortho-centre"))
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            started = await http.post(
                "/api/pathways",
                json={"definition": "hip-replacement-d2a", "patient": PATIENT, "allow_duplicate": True},
                headers=coordinator,
            )
            assert started.status_code == 201, "starting needs only the server, not a worker"
            pathway_id = started.json()["id"]
            task_id = f"{pathway_id}.hip-replacement.1"
            read = await http.get(f"/fhir/Task/{task_id}", headers=provider)
            assert read.status_code == 503 and read.headers["retry-after"]
            assert OperationOutcome.model_validate(read.json()).issue[0].code == "transient"
            task = {"resourceType": "Task", "id": task_id, "status": "accepted", "intent": "order"}
            put = await http.put(f"/fhir/Task/{task_id}", json=task, headers=provider)
            assert put.status_code == 503 and put.headers["retry-after"]
            detail = await http.get(f"/api/pathways/{pathway_id}", headers=coordinator)
            assert detail.status_code == 503
            assert detail.headers["content-type"] == "application/problem+json"
            assert (
                "nothing changed" in detail.json()["detail"]
                or "try again" in detail.json()["detail"]
            )
    finally:
        served.close()


async def test_without_temporal_the_api_still_serves_and_answers_503(
    api_settings: Settings,
) -> None:
    settings = api_settings.model_copy(
        update={
            "api_port": free_port(),
            "temporal_address": f"127.0.0.1:{free_port()}",
            "update_timeout_seconds": 1.0,
        }
    )
    served = serve_in_thread(settings)
    base_url = next(served)
    coordinator = bearer(TokenStore(settings.event_store).issue_coordinator("on-call"))
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            assert (await http.get("/fhir/metadata")).status_code == 200
            started = await http.post(
                "/api/pathways",
                json={"definition": "hip-replacement-d2a", "patient": PATIENT, "allow_duplicate": True},
                headers=coordinator,
            )
            assert started.status_code == 503 and started.headers["retry-after"]
            assert started.json()["status"] == 503
    finally:
        served.close()
