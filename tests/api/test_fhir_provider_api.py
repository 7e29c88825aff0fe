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


@pytest.fixture(params=[False, True], ids=["read-first", "if-match"])
def if_match(request: pytest.FixtureRequest) -> bool:
    """A PUT with If-Match is one Update; without, the API reads the pathway first: both paths
    must answer alike."""
    return bool(request.param)


@pytest.fixture(scope="module")
def ortho(api: RunningApi) -> dict[str, str]:
    return bearer(api.provider_token(ORTHO))


async def _first_task(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> dict[str, Any]:
    pathway_id = await start_pathway(http, coordinator)
    return await read_task(http, f"{pathway_id}.hip-replacement.1", ortho)


async def test_a_provider_completes_a_whole_shipped_pathway_through_fhir(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], catalogue: Catalogue,
    if_match: bool,
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
        for auth in headers.values():
            search = await http.get(  # newest first: other tests leave older Tasks open
                "/fhir/Task",
                params={"status": "requested,accepted", "_sort": "-_lastUpdated", "_count": 100},
                headers=auth,
            )
            assert search.status_code == 200, search.text
            for entry in search.json().get("entry", []):
                task = entry["resource"]
                if task["basedOn"][0]["reference"] != f"CarePlan/{pathway_id}":
                    continue
                step = definition.step(task["code"]["coding"][0]["code"])
                if task["status"] == "requested":
                    accepted = await put_status(http, task, "accepted", auth, if_match=if_match)
                    assert accepted.status_code == 200, accepted.text
                    task = accepted.json()
                done = await put_status(
                    http, task, "completed", auth, output=fhir_outputs(step), if_match=if_match
                )
                assert done.status_code == 200, done.text
                assert done.json()["status"] == "completed"
                completed.append(step.id)
        await asyncio.sleep(0.05)
    assert detail["status"] == "completed"
    assert completed[0] == "hip-replacement" and completed[-1] in {s.id for s in definition.steps}
    assert set(completed) <= {s.id for s in definition.steps}
    assert {s["id"] for s in detail["steps"] if s["status"] == "done"} == set(completed)
    lean = detail["lean"]
    assert lean["completed_deliveries"] == len(completed) and lean["first_time_right"] == 1.0
    assert lean["refused_deliveries"] == 0 and lean["open_escalations"] == 0


async def test_a_task_reads_as_valid_fhir_with_its_version_as_etag(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    task = await _first_task(http, coordinator, ortho)
    response = await http.get(f"/fhir/Task/{task['id']}", headers=ortho)
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert response.headers["etag"] == f'W/"{task["meta"]["versionId"]}"'
    parsed = Task.model_validate(response.json())
    assert parsed.status == "requested"
    assert parsed.owner.reference == f"Organization/{ORTHO}"
    contract = response.json()["input"][0]["valueCanonical"]
    questionnaire = await http.get(
        contract.removeprefix(str(http.base_url).rstrip("/")), headers=ortho
    )
    assert questionnaire.status_code == 200
    assert Questionnaire.model_validate(questionnaire.json()).url == contract


async def test_the_capability_statement_is_public_and_valid(http: httpx.AsyncClient) -> None:
    response = await http.get("/fhir/metadata")
    assert response.status_code == 200
    statement = CapabilityStatement.model_validate(response.json())
    assert statement.fhirVersion == "4.0.1" and statement.kind == "instance"
    (rest,) = statement.rest
    task = next(r for r in rest.resource if r.type == "Task")
    assert {i.code for i in task.interaction} == {
        "read", "vread", "update", "history-instance", "search-type"
    }
    assert {p.name for p in task.searchParam} == {
        "owner", "status", "code", "_id", "_lastUpdated", "_count", "_sort"
    }
    assert "Bearer" in rest.security.description


async def test_search_pages_a_providers_tasks_as_a_valid_bundle(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    provider = bearer(api.provider_token("kingsbridge-treatment-centre"))
    owner = bearer(api.provider_token(ORTHO))
    first = await _first_task(http, coordinator, owner)
    await _first_task(http, coordinator, owner)
    since = first["meta"]["lastUpdated"]
    query = {"status": "requested", "_count": "1", "_lastUpdated": f"gt{_earlier(since)}"}
    for _ in range(300):  # the read model catches up within moments
        page = await http.get("/fhir/Task", params=query, headers=owner)
        if page.json()["total"] >= 2:
            break
        await asyncio.sleep(0.05)
    bundle = Bundle.model_validate(page.json())
    assert bundle.type == "searchset" and bundle.total >= 2 and len(bundle.entry) == 1
    assert bundle.entry[0].fullUrl.endswith(f"/fhir/Task/{bundle.entry[0].resource.id}")
    following = next(link.url for link in bundle.link if link.relation == "next")
    second = await http.get(following.removeprefix(str(http.base_url).rstrip("/")), headers=owner)
    assert second.status_code == 200
    assert second.json()["entry"][0]["resource"]["id"] != bundle.entry[0].resource.id
    assert all(
        e["resource"]["owner"]["reference"] == f"Organization/{ORTHO}"
        for e in second.json()["entry"]
    )
    other = await http.get("/fhir/Task", params={"_count": "100"}, headers=provider)
    others = [e["resource"] for e in other.json().get("entry", [])]
    assert first["id"] not in [t["id"] for t in others], "another provider never sees it"
    assert all(t["owner"]["reference"] == "Organization/kingsbridge-treatment-centre" for t in others)
    forbidden = await http.get(
        "/fhir/Task", params={"owner": f"Organization/{ORTHO}"}, headers=provider
    )
    assert forbidden.status_code == 403 and issues(forbidden)


def _earlier(instant: str) -> str:
    """A minute before a FHIR instant, so the search includes it."""
    from datetime import datetime, timedelta

    moment = datetime.fromisoformat(instant.replace("Z", "+00:00")) - timedelta(minutes=1)
    return moment.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"status": "requested,bogus"}, "unknown Task status 'bogus'"),
        ({"_lastUpdated": "2026-01-01T00:00:00Z"}, "_lastUpdated needs a prefix gt, ge, lt or le"),
        ({"_lastUpdated": "gt0001-01-01T00:00:00+05:00"}, "ISO 8601 instant"),
        (
            {"_lastUpdated": "gtyesterday"},
            "_lastUpdated must be gt followed by an ISO 8601 instant",
        ),
        ({"_count": "0"}, "_count"),
    ],
)
async def test_bad_search_parameters_are_400_with_the_reason(
    http: httpx.AsyncClient, ortho: dict[str, str], params: dict[str, str], problem: str
) -> None:
    response = await http.get("/fhir/Task", params=params, headers=ortho)
    assert response.status_code == 400
    assert any(problem in issue for issue in issues(response))


async def test_missing_or_bad_tokens_are_401_with_a_bearer_challenge(
    http: httpx.AsyncClient,
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer pwt_not-a-token"},
        {"Authorization": "Basic eDp5"},
    ):
        response = await http.get("/fhir/Task", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert issues(response)


async def test_another_providers_task_is_not_found_and_cannot_be_changed(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str],
    if_match: bool,
) -> None:
    task = await _first_task(http, coordinator, ortho)
    intruder = bearer(api.provider_token(HUB))
    read = await http.get(f"/fhir/Task/{task['id']}", headers=intruder)
    assert read.status_code == 404 and issues(read) == [f"no Task {task['id']}"]
    change = await put_status(http, task, "accepted", intruder, if_match=if_match)
    assert change.status_code == 404
    assert (await read_task(http, task["id"], ortho))["status"] == "requested"


async def test_a_reassigned_task_leaves_the_old_providers_search_at_once(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    old = bearer(api.provider_token("fenwick-park-hospital"))
    pathway_id = await start_pathway(http, coordinator)
    task_id = f"{pathway_id}.hip-replacement.1"
    await read_task(http, task_id, coordinator)
    to_fenwick = {"handover_id": "hip-replacement.1", "provider_id": "fenwick-park-hospital"}
    moved = await http.post(
        f"/api/pathways/{pathway_id}/reassign",
        json={**to_fenwick, "reason": "shorter list"},
        headers=coordinator,
    )
    assert moved.status_code == 200
    for _ in range(300):  # wait until the read model lists it for fenwick
        found = (await http.get("/fhir/Task", params={"_count": "100"}, headers=old)).json()
        if task_id in [e["resource"]["id"] for e in found.get("entry", [])]:
            break
        await asyncio.sleep(0.05)
    back = {"handover_id": "hip-replacement.1", "provider_id": ORTHO, "reason": "list cleared"}
    returned = await http.post(
        f"/api/pathways/{pathway_id}/reassign", json=back, headers=coordinator
    )
    assert returned.status_code == 200
    search = await http.get("/fhir/Task", params={"_count": "100"}, headers=old)
    assert task_id not in [e["resource"]["id"] for e in search.json().get("entry", [])]


async def test_a_coordinator_reads_tasks_but_cannot_act_as_a_provider(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    task = await _first_task(http, coordinator, ortho)
    assert (await http.get(f"/fhir/Task/{task['id']}", headers=coordinator)).status_code == 200
    response = await put_status(http, task, "accepted", coordinator)
    assert response.status_code == 403
    assert issues(response) == ["only a provider token can change a handover"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "the body is not valid JSON"),
        (b'{"resourceType": "Patient", "id": "x"}', "the body must be a FHIR Task resource"),
        (b"[]", "the body must be a FHIR Task resource"),
    ],
)
async def test_a_malformed_body_is_400_and_changes_nothing(
    http: httpx.AsyncClient,
    coordinator: dict[str, str],
    ortho: dict[str, str],
    body: bytes,
    problem: str,
) -> None:
    task = await _first_task(http, coordinator, ortho)
    headers = {**ortho, "Content-Type": "application/fhir+json"}
    response = await http.put(f"/fhir/Task/{task['id']}", content=body, headers=headers)
    assert response.status_code == 400 and issues(response) == [problem]
    assert (await read_task(http, task["id"], ortho))["meta"] == task["meta"]


async def test_an_invalid_task_or_mismatched_id_is_400(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str],
    if_match: bool,
) -> None:
    task = await _first_task(http, coordinator, ortho)
    wrong_id = await put_status(
        http, task, "accepted", ortho, id="pw-0000000000000000.x.1", if_match=if_match
    )
    assert wrong_id.status_code == 400
    assert issues(wrong_id) == [f"the Task id in the body must be {task['id']!r}, as in the URL"]
    not_r4 = await put_status(
        http, task, "accepted", ortho, intent=42, authoredOn="yesterday", if_match=if_match
    )
    assert not_r4.status_code == 400
    assert {p.split(":")[0] for p in issues(not_r4)} == {"Task.intent", "Task.authoredOn"}
    coded_only = {"type": {"coding": [{"code": "side"}]}, "valueString": "x"}
    unnamed = await put_status(
        http, task, "completed", ortho, output=[coded_only], if_match=if_match
    )
    assert unnamed.status_code == 400
    assert issues(unnamed) == ["Task.output[0] has no type.text naming its field"]
    assert (await read_task(http, task["id"], ortho))["status"] == "requested"


async def test_unknown_tasks_are_404(
    http: httpx.AsyncClient, ortho: dict[str, str], if_match: bool
) -> None:
    for task_id in ("nonsense", "pw-0123456789abcdef.hip-replacement.1"):
        response = await http.get(f"/fhir/Task/{task_id}", headers=ortho)
        assert response.status_code == 404 and issues(response) == [f"no Task {task_id}"]
    task = {
        "resourceType": "Task",
        "id": "pw-0123456789abcdef.x.1",
        "status": "accepted",
        "intent": "order",
    }
    headers = {**ortho, "If-Match": 'W/"1"'} if if_match else ortho
    put = await http.put(f"/fhir/Task/{task['id']}", json=task, headers=headers)
    assert put.status_code == 404 and issues(put) == [f"no Task {task['id']}"]


async def test_forbidden_transitions_are_409_and_change_nothing(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str],
    if_match: bool,
) -> None:
    task = await _first_task(http, coordinator, ortho)
    for status in ("in-progress", "ready", "cancelled"):
        response = await put_status(http, task, status, ortho, if_match=if_match)
        assert response.status_code == 409, (status, response.text)
        assert issues(response)
    assert (await read_task(http, task["id"], ortho))["meta"] == task["meta"]


async def test_stale_if_match_is_412_and_a_fresh_one_applies(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    task = await _first_task(http, coordinator, ortho)
    version = task["meta"]["versionId"]
    fresh = await http.put(
        f"/fhir/Task/{task['id']}",
        json={**task, "status": "accepted"},
        headers={**ortho, "If-Match": f'W/"{version}"'},
    )
    assert fresh.status_code == 200
    assert fresh.headers["etag"] == f'W/"{int(version) + 1}"'
    stale = await http.put(
        f"/fhir/Task/{task['id']}",
        json={**task, "status": "in-progress"},
        headers={**ortho, "If-Match": f'W/"{version}"'},
    )
    assert stale.status_code == 412
    assert issues(stale) == [
        f"the Task is at version {int(version) + 1}, not {version}: read it and retry"
    ]
    garbled = await http.put(
        f"/fhir/Task/{task['id']}",
        json={**task, "status": "in-progress"},
        headers={**ortho, "If-Match": "yesterday"},
    )
    assert garbled.status_code == 400
    assert (await read_task(http, task["id"], ortho))["status"] == "accepted"


async def test_an_identical_repeat_is_200_and_changes_nothing(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str],
    if_match: bool,
) -> None:
    task = await _first_task(http, coordinator, ortho)
    first = await put_status(http, task, "accepted", ortho, if_match=if_match)
    again = await put_status(http, task, "accepted", ortho, if_match=if_match)
    assert first.status_code == again.status_code == 200
    assert again.json()["meta"] == first.json()["meta"]
    assert (await read_task(http, task["id"], ortho))["meta"] == first.json()["meta"]


async def test_non_conforming_data_is_422_naming_each_field(
    http: httpx.AsyncClient,
    coordinator: dict[str, str],
    ortho: dict[str, str],
    catalogue: Catalogue,
    if_match: bool,
) -> None:
    task = await _first_task(http, coordinator, ortho)
    accepted = (await put_status(http, task, "accepted", ortho, if_match=if_match)).json()
    step = catalogue.get(HIP).step("hip-replacement")
    outputs = [o for o in fhir_outputs(step) if o["type"]["text"] not in ("side", "procedure")]
    outputs.append({"type": {"text": "procedure"}, "valueCode": "knee"})
    response = await put_status(
        http, accepted, "completed", ortho, output=outputs, if_match=if_match
    )
    assert response.status_code == 422
    problems = issues(response)
    assert any("'side'" in p for p in problems) and any("'procedure'" in p for p in problems)
    assert response.json()["issue"][0]["code"] == "invariant"
    assert (await read_task(http, task["id"], ortho))["status"] == "accepted"


async def test_rejection_needs_and_records_a_reason(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str],
    if_match: bool,
) -> None:
    task = await _first_task(http, coordinator, ortho)
    bare = await put_status(http, task, "rejected", ortho, if_match=if_match)
    assert bare.status_code == 400 and issues(bare) == ["a rejected handover needs a reason"]
    rejected = await put_status(
        http, task, "rejected", ortho, statusReason={"text": "no theatre capacity"},
        if_match=if_match,
    )
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["statusReason"] == {"text": "no theatre capacity"}
    assert rejected.json()["owner"] == {"reference": f"Organization/{ORTHO}"}
    gone = await http.get(f"/fhir/Task/{task['id']}", headers=ortho)
    assert gone.status_code == 404, "the next provider of the role has the handover now"
    detail = await http.get(
        f"/api/pathways/{task['basedOn'][0]['reference'][9:]}", headers=coordinator
    )
    (handover,) = detail.json()["handovers"]
    assert handover["provider_id"] == "kingsbridge-treatment-centre"


async def test_unknown_questionnaires_are_404(
    http: httpx.AsyncClient, ortho: dict[str, str]
) -> None:
    for name in ("hip-replacement-d2a.9.hip-replacement", "hip-replacement-d2a.1.nope", "x"):
        response = await http.get(f"/fhir/Questionnaire/{name}", headers=ortho)
        assert response.status_code == 404 and issues(response)


async def test_unsupported_interactions_answer_with_an_operation_outcome(
    http: httpx.AsyncClient, ortho: dict[str, str]
) -> None:
    deleted = await http.delete("/fhir/Task/pw-0123456789abcdef.hip-replacement.1", headers=ortho)
    assert deleted.status_code == 405 and issues(deleted)
    other_type = await http.get("/fhir/Patient", headers=ortho)
    assert other_type.status_code == 404 and issues(other_type)
