"""Coordinators over /api: the catalogue, starting and finding pathways, commands, escalations."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from pathways.catalogue import Catalogue
from tests.api.conftest import RunningApi
from tests.api.flow import HIP, PATIENT, bearer, put_status, read_task, start_pathway

pytestmark = pytest.mark.devserver

PROBLEM_JSON = "application/problem+json"
ORTHO_CENTRES = (
    "elmshire-elective-ortho-centre",
    "kingsbridge-treatment-centre",
    "fenwick-park-hospital",
)


def problems(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == response.status_code and body["title"]
    return list(body["problems"])


async def _until(http: httpx.AsyncClient, url: str, headers: dict[str, str], check: Any) -> Any:
    """Poll a read-model route until `check(body)` holds (it lags a change by moments)."""
    for _ in range(300):
        body = (await http.get(url, headers=headers)).json()
        if check(body):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never satisfied the check: {body}")


async def test_the_catalogue_lists_definitions_with_roles_steps_and_graph(
    http: httpx.AsyncClient, coordinator: dict[str, str], catalogue: Catalogue
) -> None:
    listed = (await http.get("/api/catalogue", headers=coordinator)).json()["definitions"]
    assert [d["id"] for d in listed] == [d.id for d in catalogue]
    hip = (await http.get(f"/api/catalogue/{HIP}", headers=coordinator)).json()
    assert hip == next(d for d in listed if d["id"] == HIP)
    role = next(r for r in hip["roles"] if r["id"] == "orthopaedic-centre")
    assert tuple(role["providers"]) == ORTHO_CENTRES
    step = next(s for s in hip["steps"] if s["id"] == "discharge-assessment")
    assert step["after"] == ["hip-replacement"] and step["role"] == "care-transfer-hub"
    assert step["handover"][0]["name"] == "d2a_pathway"
    assert hip["mermaid"].startswith("flowchart")
    missing = await http.get("/api/catalogue/no-such-pathway", headers=coordinator)
    assert missing.status_code == 404 and problems(missing)


async def test_provider_tokens_cannot_use_coordinator_routes(
    api: RunningApi, http: httpx.AsyncClient
) -> None:
    provider = bearer(api.provider_token(ORTHO_CENTRES[0]))
    for method, url in (
        ("GET", "/api/catalogue"),
        ("GET", "/api/pathways"),
        ("GET", "/api/escalations"),
    ):
        response = await http.request(method, url, headers=provider)
        assert response.status_code == 403 and problems(response)
    start = await http.post(
        "/api/pathways", json={"definition": HIP, "patient": PATIENT}, headers=provider
    )
    assert start.status_code == 403
    anonymous = await http.get("/api/pathways")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "status", "problem"),
    [
        ({"definition": HIP, "patient": {"nhs_number": "9434765918"}}, 422, "check digit"),
        ({"definition": HIP, "patient": {"nhs_number": "94347"}}, 422, "10 digits"),
        (
            {"definition": "no-such-pathway", "patient": PATIENT},
            422,
            "no pathway 'no-such-pathway'",
        ),
        ({"definition": HIP, "patient": PATIENT, "priority": "high"}, 422, "priority"),
        ({"definition": HIP}, 422, "patient"),
    ],
)
async def test_a_bad_start_is_refused_without_echoing_patient_data(
    http: httpx.AsyncClient,
    coordinator: dict[str, str],
    body: dict[str, Any],
    status: int,
    problem: str,
) -> None:
    response = await http.post("/api/pathways", json=body, headers=coordinator)
    assert response.status_code == status
    listed = problems(response)
    assert any(problem in p for p in listed), listed
    assert "94347" not in response.text


async def test_malformed_json_is_400(http: httpx.AsyncClient, coordinator: dict[str, str]) -> None:
    response = await http.post(
        "/api/pathways", content=b"{", headers={**coordinator, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and problems(response)


async def test_a_started_pathway_is_listed_filtered_and_shown_in_full(
    http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    response = await http.post(
        "/api/pathways",
        json={"definition": f"{HIP}@1", "patient": PATIENT, "allow_duplicate": True},
        headers=coordinator,
    )
    assert response.status_code == 201
    created = response.json()
    assert created["status"] == "active" and created["version"] == 1
    assert response.headers["location"] == f"/api/pathways/{created['id']}"
    pathway_id = created["id"]

    def listed(page: dict[str, Any]) -> bool:
        return pathway_id in [p["pathway_id"] for p in page["items"]]

    filters = {
        "definition": HIP,
        "status": "active",
        "provider": ORTHO_CENTRES[0],
        "step": "hip-replacement",
        "q": "HIP REPLACEMENT",
        "breached": "false",
        "sla_state": "on-track",
    }
    page = await _until(
        http,
        "/api/pathways?" + "&".join(f"{k}={v}" for k, v in filters.items()),
        coordinator,
        listed,
    )
    assert page["total"] >= 1
    for other in ({"status": "completed"}, {"provider": "elmshire-reablement"}, {"q": "dialysis"}):
        ((key, value),) = other.items()
        page = (
            await http.get(f"/api/pathways?{key}={value}&limit=500", headers=coordinator)
        ).json()
        assert not listed(page), other
    first = (await http.get("/api/pathways?limit=1", headers=coordinator)).json()
    assert len(first["items"]) == 1 and first["limit"] == 1 and first["total"] >= 1

    detail = (await http.get(f"/api/pathways/{pathway_id}", headers=coordinator)).json()
    assert detail["patient"]["nhs_number"] == "9434765919"
    assert detail["status"] == "active" and detail["definition"] == HIP
    assert {s["id"]: s["status"] for s in detail["steps"]}["hip-replacement"] == "active"
    (handover,) = detail["handovers"]
    assert handover["provider_id"] == ORTHO_CENTRES[0] and handover["status"] == "requested"
    assert detail["lean"]["completed_deliveries"] == 0
    assert detail["lean"]["first_time_right"] is None
    await _until(
        http,
        f"/api/pathways/{pathway_id}",
        coordinator,
        lambda d: [e["kind"] for e in d["timeline"]][:1] == ["pathway-started"],
    )
    unknown = await http.get("/api/pathways/pw-0123456789abcdef", headers=coordinator)
    assert unknown.status_code == 404 and problems(unknown)


@pytest.mark.parametrize(
    "query", ["status=finished", "limit=0", "limit=501", "offset=-1", "sla_state=red"]
)
async def test_bad_list_filters_are_refused(
    http: httpx.AsyncClient, coordinator: dict[str, str], query: str
) -> None:
    response = await http.get(f"/api/pathways?{query}", headers=coordinator)
    assert response.status_code == 422 and problems(response)


async def test_coordinator_commands_change_the_pathway_and_record_the_actor(
    api: RunningApi, http: httpx.AsyncClient
) -> None:
    coordinator = bearer(api.coordinator_token("alex"))
    pathway_id = await start_pathway(http, coordinator)
    task = await read_task(http, f"{pathway_id}.hip-replacement.1", coordinator)
    base = f"/api/pathways/{pathway_id}"

    moved = await http.post(
        f"{base}/reassign",
        json={
            "handover_id": "hip-replacement.1",
            "provider_id": ORTHO_CENTRES[2],
            "reason": "list",
        },
        headers=coordinator,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["provider_id"] == ORTHO_CENTRES[2]
    due = moved.json()["complete_by"]
    extended = await http.post(
        f"{base}/extend",
        json={"handover_id": "hip-replacement.1", "by": "P1D", "reason": "bank holiday"},
        headers=coordinator,
    )
    assert extended.status_code == 200 and extended.json()["complete_by"] > due
    both = await http.post(
        f"{base}/extend",
        json={
            "handover_id": "hip-replacement.1",
            "by": "P1D",
            "until": "2030-01-01T00:00:00Z",
            "reason": "x",
        },
        headers=coordinator,
    )
    assert both.status_code == 422 and problems(both)

    held = await http.post(
        f"{base}/hold", json={"reason": "admitted elsewhere"}, headers=coordinator
    )
    assert held.status_code == 200 and held.json()["status"] == "on-hold"
    again = await http.post(
        f"{base}/hold", json={"reason": "admitted elsewhere"}, headers=coordinator
    )
    assert again.status_code == 409 and problems(again)
    resumed = await http.post(f"{base}/resume", headers=coordinator)
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"

    note = await http.post(f"{base}/notes", json={"text": "called the ward"}, headers=coordinator)
    assert note.status_code == 201 and note.json()["author"] == "coordinator:alex"

    cancelled = await http.post(
        f"{base}/cancel", json={"reason": "patient moved"}, headers=coordinator
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    late = await http.post(f"{base}/hold", json={"reason": "x"}, headers=coordinator)
    assert late.status_code == 409

    detail = await _until(
        http, base, coordinator, lambda d: "pathway-cancelled" in [e["kind"] for e in d["timeline"]]
    )
    actors = {e["kind"]: e["actor"] for e in detail["timeline"]}
    for kind in (
        "reassigned",
        "due-extended",
        "pathway-held",
        "pathway-resumed",
        "note",
        "pathway-cancelled",
    ):
        assert actors[kind] == "coordinator:alex", kind
    assert detail["notes"][0]["text"] == "called the ward"
    assert (await read_task(http, task["id"], coordinator))["status"] == "cancelled"


async def test_commands_on_unknown_things_are_404(
    http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    pathway_id = await start_pathway(http, coordinator)
    await read_task(http, f"{pathway_id}.hip-replacement.1", coordinator)
    base = f"/api/pathways/{pathway_id}"
    wrong_handover = await http.post(
        f"{base}/reassign",
        json={"handover_id": "nope.1", "provider_id": "x", "reason": "y"},
        headers=coordinator,
    )
    assert wrong_handover.status_code == 404 and problems(wrong_handover)
    wrong_escalation = await http.post(
        f"{base}/escalations/99/acknowledge", json={}, headers=coordinator
    )
    assert wrong_escalation.status_code == 404
    wrong_pathway = await http.post(
        "/api/pathways/pw-0123456789abcdef/hold", json={"reason": "x"}, headers=coordinator
    )
    assert wrong_pathway.status_code == 404


async def test_an_idempotency_key_applies_a_retried_command_once(
    http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    pathway_id = await start_pathway(http, coordinator)
    url = f"/api/pathways/{pathway_id}/notes"
    keyed = {**coordinator, "Idempotency-Key": "retry-1"}
    first = await http.post(url, json={"text": "once"}, headers=keyed)
    second = await http.post(url, json={"text": "once"}, headers=keyed)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    await http.post(url, json={"text": "once"}, headers=coordinator)
    detail = (await http.get(f"/api/pathways/{pathway_id}", headers=coordinator)).json()
    assert [n["text"] for n in detail["notes"]] == ["once", "once"]


async def test_an_escalation_reaches_the_inbox_until_resolved(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    pathway_id = await start_pathway(http, coordinator)
    task_id = f"{pathway_id}.hip-replacement.1"
    for centre in ORTHO_CENTRES:  # every provider of the role turns it down: the broker gives up
        auth = bearer(api.provider_token(centre))
        task = await read_task(http, task_id, auth)
        rejected = await put_status(http, task, "rejected", auth, statusReason={"text": "full"})
        assert rejected.status_code == 200, rejected.text

    def mine(inbox: dict[str, Any]) -> list[dict[str, Any]]:
        return [i for i in inbox["items"] if i["pathway_id"] == pathway_id]

    inbox = await _until(http, "/api/escalations", coordinator, mine)
    (item,) = mine(inbox)
    escalation = item["escalation"]
    assert escalation["status"] == "open" and escalation["level"] == "alert-coordinator"
    base = f"/api/pathways/{pathway_id}/escalations/{escalation['id']}"
    acknowledged = await http.post(
        f"{base}/acknowledge", json={"note": "on it"}, headers=coordinator
    )
    assert acknowledged.status_code == 200 and acknowledged.json()["status"] == "acknowledged"
    twice = await http.post(f"{base}/acknowledge", json={}, headers=coordinator)
    assert twice.status_code == 409
    def acknowledged_in(inbox: dict[str, Any]) -> bool:
        return [i["escalation"]["status"] for i in mine(inbox)] == ["acknowledged"]

    (item,) = mine(await _until(http, "/api/escalations", coordinator, acknowledged_in))
    assert item["escalation"]["acknowledged_by"].startswith("coordinator:")
    resolved = await http.post(f"{base}/resolve", json={}, headers=coordinator)
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    await _until(http, "/api/escalations", coordinator, lambda inbox: mine(inbox) == [])
