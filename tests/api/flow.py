"""Helpers for driving pathways over HTTP, as a coordinator and as provider systems."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from pathways import fhir
from pathways.demo import example_output
from pathways.model import Step

PATIENT = {"nhs_number": "943 476 5919", "name": "Test Patient"}
HIP = "hip-replacement-d2a"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def start_pathway(
    http: httpx.AsyncClient, coordinator: dict[str, str], definition: str = HIP
) -> str:
    """Start one more pathway for the test patient (tests share the patient: duplicates on)."""
    body = {"definition": definition, "patient": PATIENT, "allow_duplicate": True}
    response = await http.post("/api/pathways", json=body, headers=coordinator)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def read_task(
    http: httpx.AsyncClient, task_id: str, headers: dict[str, str]
) -> dict[str, Any]:
    """The Task once its handover exists (the workflow creates it right after start)."""
    for _ in range(300):
        response = await http.get(f"/fhir/Task/{task_id}", headers=headers)
        if response.status_code == 200:
            return dict(response.json())
        assert response.status_code == 404, response.text
        await asyncio.sleep(0.05)
    raise AssertionError(f"Task {task_id} never appeared")


def fhir_outputs(step: Step, overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A conforming delivery for a step as Task.output elements."""
    data = example_output(step, overrides)
    return [
        {"type": {"text": name}, **fhir.field_value(field, data[name])}
        for name in data
        if (field := step.field(name)) is not None
    ]


async def put_status(
    http: httpx.AsyncClient,
    task: dict[str, Any],
    status: str,
    headers: dict[str, str],
    *,
    if_match: bool = False,
    **changes: Any,
) -> httpx.Response:
    """PUT the Task back with a new status (and any other members changed); `if_match` sends
    the version read as If-Match (the API then skips reading the pathway first)."""
    body = {**task, "status": status, **changes}
    if if_match:
        headers = {**headers, "If-Match": f'W/"{task["meta"]["versionId"]}"'}
    return await http.put(f"/fhir/Task/{task['id']}", json=body, headers=headers)
