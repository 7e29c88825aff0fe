"""Hardened doors (issue 8): answers a client can act on, idempotent starts and commands, FHIR
concurrency, and limits at the door. Every test talks real HTTP to a running API, worker and
Temporal dev server."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from temporalio.testing import WorkflowEnvironment

from activities.store import EventStore
from api.tokens import TokenStore
from pathways.catalogue import Catalogue
from pathways.settings import Settings
from tests.api.conftest import RunningApi, free_port, serve_in_thread
from tests.api.flow import HIP, bearer, fhir_outputs, put_status, read_task, start_pathway
from worker.main import running_worker

pytestmark = pytest.mark.devserver

ORTHO = "elmshire-elective-ortho-centre"
FHIR_JSON = "application/fhir+json"


def issues(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"].startswith(FHIR_JSON), response.text
    return [i.diagnostics or "" for i in OperationOutcome.model_validate(response.json()).issue]


def problems(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return list(response.json()["problems"])


def nhs_number() -> str:
    """A random valid NHS number (modulus 11 check digit), so tests never share a patient."""
    while True:
        digits = [random.randint(0, 9) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


@pytest.fixture(scope="module")
def ortho(api: RunningApi) -> dict[str, str]:
    return bearer(api.provider_token(ORTHO))


async def _task(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> dict[str, Any]:
    pathway_id = await start_pathway(http, coordinator)
    return await read_task(http, f"{pathway_id}.hip-replacement.1", ortho)


# --- 1. outcomes a client can act on --------------------------------------------------------


async def test_a_command_the_stopped_worker_cannot_confirm_is_503_and_its_retry_applies_once(
    dev_env: WorkflowEnvironment, api_settings: Settings, tmp_path: Path
) -> None:
    settings = api_settings.model_copy(
        update={
            # its own read model: other tests never query its pathways
            "event_store_url": f"sqlite:///{tmp_path / 'pathways.db'}",
            "api_port": free_port(),
            "task_queue": f"doors-{secrets.token_hex(4)}",
            "update_timeout_seconds": 2.0,
        }
    )
    EventStore(settings.event_store).migrate()
    served = serve_in_thread(settings)
    base_url = next(served)
    tokens = TokenStore(settings.event_store)
    coordinator = bearer(tokens.issue_coordinator("on-call"))
    provider = bearer(tokens.issue_provider(ORTHO))
    worker = running_worker(dev_env.client, settings)
    await worker.__aenter__()
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            pathway_id = await start_pathway(http, coordinator)
            await read_task(http, f"{pathway_id}.hip-replacement.1", provider)
            await worker.__aexit__(None, None, None)  # the worker really stops

            task_id = f"{pathway_id}.hip-replacement.1"
            search = await http.get("/fhir/Task", params={"_count": "100"}, headers=provider)
            assert search.status_code == 200, "search is served from the read model alone"
            assert task_id in [e["resource"]["id"] for e in search.json()["entry"]]

            url = f"/api/pathways/{pathway_id}/notes"
            note = {"text": "family asked for a call back"}
            headers = {**coordinator, "Idempotency-Key": "note-after-outage"}
            unknown = await http.post(url, json=note, headers=headers)
            assert unknown.status_code == 503, unknown.text
            assert unknown.headers["retry-after"]
            assert "outcome unknown: retry the same request" in unknown.json()["detail"]
            assert "nothing changed" not in unknown.json()["detail"]

            worker = running_worker(dev_env.client, settings)
            await worker.__aenter__()  # the worker is back
            answers = []
            for _ in range(60):
                retried = await http.post(url, json=note, headers=headers)
                answers.append(retried.status_code)
                if retried.status_code == 201:
                    break
                assert retried.status_code == 503, retried.text
                await asyncio.sleep(1)
            assert answers[-1] == 201, answers
            again = await http.post(url, json=note, headers=headers)
            assert again.status_code == 201 and again.json() == retried.json()
            detail = (await http.get(f"/api/pathways/{pathway_id}", headers=coordinator)).json()
            assert [n["text"] for n in detail["notes"]] == [note["text"]], "applied exactly once"
    finally:
        await worker.__aexit__(None, None, None)
        served.close()


# --- 2. idempotent starts and commands ---------------------------------------------------------


async def test_a_keyed_start_retried_returns_the_same_pathway_and_a_changed_body_is_422(
    http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    patient = {"nhs_number": nhs_number(), "name": "Keyed Patient"}
    body = {"definition": HIP, "patient": patient}
    headers = {**coordinator, "Idempotency-Key": f"start-{secrets.token_hex(4)}"}
    first = await http.post("/api/pathways", json=body, headers=headers)
    retried = await http.post("/api/pathways", json=body, headers=headers)
    assert first.status_code == retried.status_code == 201, retried.text
    assert retried.json() == first.json()
    assert retried.headers["location"] == first.headers["location"]
    changed = {**body, "patient": {**patient, "name": "Someone Else"}}
    misuse = await http.post("/api/pathways", json=changed, headers=headers)
    assert misuse.status_code == 422
    assert any("Idempotency-Key" in p for p in problems(misuse))
    assert patient["nhs_number"] not in misuse.text and "Someone Else" not in misuse.text


async def test_a_second_start_for_a_patient_already_on_the_pathway_is_409_naming_it(
    http: httpx.AsyncClient, coordinator: dict[str, str], dev_env: WorkflowEnvironment
) -> None:
    patient = {"nhs_number": nhs_number()}
    body = {"definition": HIP, "patient": patient}
    first = await http.post("/api/pathways", json=body, headers=coordinator)
    assert first.status_code == 201
    pathway_id = first.json()["id"]
    await _visible(dev_env, pathway_id)
    second = await http.post("/api/pathways", json=body, headers=coordinator)
    assert second.status_code == 409, second.text
    assert any(pathway_id in p for p in problems(second))
    assert second.headers["link"] == f'</api/pathways/{pathway_id}>; rel="duplicate"'
    assert patient["nhs_number"] not in second.text
    other = await http.post(
        "/api/pathways", json={**body, "definition": "urgent-community-response"},
        headers=coordinator,
    )
    assert other.status_code == 201, "another definition for the same patient is fine"
    allowed = await http.post(
        "/api/pathways", json={**body, "allow_duplicate": True}, headers=coordinator
    )
    assert allowed.status_code == 201 and allowed.json()["id"] != pathway_id


async def _visible(env: WorkflowEnvironment, pathway_id: str) -> None:
    """Wait until Temporal visibility lists the pathway (it lags a start by moments)."""
    for _ in range(100):
        async for _found in env.client.list_workflows(f"WorkflowId = '{pathway_id}'", limit=1):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{pathway_id} never became visible")


async def test_a_coordinator_command_key_reused_with_another_body_is_422(
    http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    pathway_id = await start_pathway(http, coordinator)
    url = f"/api/pathways/{pathway_id}/notes"
    headers = {**coordinator, "Idempotency-Key": "note-1"}
    first = await http.post(url, json={"text": "first"}, headers=headers)
    repeat = await http.post(url, json={"text": "first"}, headers=headers)
    assert first.status_code == repeat.status_code == 201
    assert repeat.json() == first.json()
    misuse = await http.post(url, json={"text": "second"}, headers=headers)
    assert misuse.status_code == 422 and any("Idempotency-Key" in p for p in problems(misuse))
    detail = (await http.get(f"/api/pathways/{pathway_id}", headers=coordinator)).json()
    assert [n["text"] for n in detail["notes"]] == ["first"]


# --- 3. FHIR concurrency -----------------------------------------------------------------------


async def test_if_match_star_applies_and_malformed_or_absurd_versions_are_400(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    task = await _task(http, coordinator, ortho)
    url = f"/fhir/Task/{task['id']}"
    for bad in ("9" * 5000, 'W/"abc"', 'W/"-1"', "yesterday"):
        response = await http.put(
            url, json={**task, "status": "accepted"}, headers={**ortho, "If-Match": bad}
        )
        assert response.status_code == 400, (bad[:20], response.text)
        assert issues(response)
    star = await http.put(url, json={**task, "status": "accepted"}, headers={**ortho, "If-Match": "*"})
    assert star.status_code == 200 and star.json()["status"] == "accepted"
    stale = await http.put(
        url, json={**task, "status": "in-progress"}, headers={**ortho, "If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    assert OperationOutcome.model_validate(stale.json()).issue[0].code == "conflict"


@pytest.mark.parametrize("ending", ["rejected", "failed"])
async def test_a_provider_retrying_its_own_reject_or_fail_gets_the_same_200(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str], ending: str
) -> None:
    task = await _task(http, coordinator, ortho)
    if ending == "failed":
        task = (await put_status(http, task, "accepted", ortho)).json()
    reason = {"statusReason": {"text": "no theatre capacity"}}
    first = await put_status(http, task, ending, ortho, **reason)
    retried = await put_status(http, task, ending, ortho, **reason)
    assert first.status_code == 200, first.text
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == ending and retried.json() == first.json()


async def test_the_loser_of_a_complete_versus_fail_race_gets_409_not_404(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str], catalogue: Catalogue
) -> None:
    outputs = fhir_outputs(catalogue.get(HIP).step("hip-replacement"))
    failing = {"statusReason": {"text": "patient unwell"}}
    # fail lands first: the work moves to another provider, the completion is 409, not 404
    task = (await put_status(http, await _task(http, coordinator, ortho), "accepted", ortho)).json()
    assert (await put_status(http, task, "failed", ortho, **failing)).status_code == 200
    late = await put_status(http, task, "completed", ortho, output=outputs)
    assert late.status_code == 409, late.text
    assert any("no longer with you" in i for i in issues(late))
    # both at once: one wins, the other is told it lost
    task = (await put_status(http, await _task(http, coordinator, ortho), "accepted", ortho)).json()
    raced = await asyncio.gather(
        put_status(http, task, "completed", ortho, output=outputs),
        put_status(http, task, "failed", ortho, **failing),
    )
    assert sorted(r.status_code for r in raced) == [200, 409], [r.text for r in raced]


# --- 4. limits at the door ---------------------------------------------------------------------


@pytest.fixture
async def strict(api_settings: Settings) -> AsyncIterator[str]:
    """An API with a short body-read timeout (same engine and worker as the shared one)."""
    settings = api_settings.model_copy(
        update={"api_port": free_port(), "api_body_timeout_seconds": 1.0}
    )
    served = serve_in_thread(settings)
    yield next(served)
    served.close()


async def _raw(base_url: str, request: bytes, body_part: bytes = b"") -> tuple[bytes, float]:
    """Send a request head (and part of a body) over a raw socket; the answer and its delay."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    loop = asyncio.get_running_loop()
    began = loop.time()
    writer.write(request + body_part)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    waited = loop.time() - began
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    answer = head + await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    return answer, waited


async def test_an_anonymous_slow_upload_is_401_before_its_body_arrives(
    api: RunningApi, strict: str
) -> None:
    head = (
        b"POST /api/pathways HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    )
    answer, waited = await _raw(strict, head)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert waited < 0.9, "answered before the body-read timeout, without reading the body"


async def test_a_body_that_stalls_is_408(api: RunningApi, strict: str) -> None:
    token = api.coordinator_token()
    head = (
        b"POST /api/pathways HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 100\r\n\r\n"
    )
    answer, waited = await _raw(strict, head, b'{"definition"')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert 0.9 < waited < 5


async def test_a_body_over_the_limit_is_413_declared_or_streamed(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    task = await _task(http, coordinator, ortho)
    auth = b"Authorization: " + ortho["Authorization"].encode() + b"\r\n"
    declared = (
        f"PUT /fhir/Task/{task['id']} HTTP/1.1\r\nHost: x\r\n".encode() + auth
        + b"Content-Type: application/fhir+json\r\nContent-Length: 1100000\r\n\r\n"
    )
    answer, _ = await _raw(api.base_url, declared)  # answered before any body byte is sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"OperationOutcome" in answer

    auth = b"Authorization: " + coordinator["Authorization"].encode() + b"\r\n"
    limit = api.settings.api_max_body_bytes
    streamed = (
        b"POST /api/pathways HTTP/1.1\r\nHost: x\r\n" + auth
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = f"{limit + 1:x}\r\n".encode() + b" " * (limit + 1) + b"\r\n"
    answer, _ = await _raw(api.base_url, streamed, chunk)  # no Content-Length: counted
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"application/problem+json" in answer
    assert (await read_task(http, task["id"], ortho))["status"] == "requested"


async def test_only_json_media_types_are_accepted(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    task = await _task(http, coordinator, ortho)
    body = httpx.Request("PUT", "/", json={**task, "status": "accepted"}).content
    url = f"/fhir/Task/{task['id']}"
    plain = await http.put(url, content=body, headers={**ortho, "Content-Type": "text/plain"})
    assert plain.status_code == 415 and issues(plain)
    assert (await read_task(http, task["id"], ortho))["status"] == "requested", "not applied"
    start = httpx.Request("POST", "/", json={"definition": HIP}).content
    for media_type in ("text/plain", FHIR_JSON):
        refused = await http.post(
            "/api/pathways", content=start, headers={**coordinator, "Content-Type": media_type}
        )
        assert refused.status_code == 415 and problems(refused)
    for media_type in (FHIR_JSON, "application/json; charset=utf-8"):
        ok = await http.put(url, content=body, headers={**ortho, "Content-Type": media_type})
        assert ok.status_code == 200, ok.text


async def test_deeply_nested_json_is_400_not_500(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    fhir = await http.put(
        "/fhir/Task/pw-0123456789abcdef.x.1",
        content=nested,
        headers={**ortho, "Content-Type": FHIR_JSON},
    )
    assert fhir.status_code == 400 and issues(fhir)
    api = await http.post(
        "/api/pathways", content=nested, headers={**coordinator, "Content-Type": "application/json"}
    )
    assert api.status_code == 400 and problems(api)
    loop = asyncio.get_running_loop()
    began = loop.time()
    escapes = b'{"resourceType": "Task", "note": "' + b'\\"' * 400_000  # never closes
    slow = await http.put(
        "/fhir/Task/pw-0123456789abcdef.x.1",
        content=escapes,
        headers={**ortho, "Content-Type": FHIR_JSON},
    )
    assert slow.status_code == 400 and loop.time() - began < 5, "the depth check is linear"


async def test_one_answer_lists_type_errors_and_contract_problems_of_every_output(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str], catalogue: Catalogue
) -> None:
    task = (await put_status(http, await _task(http, coordinator, ortho), "accepted", ortho)).json()
    outputs = fhir_outputs(catalogue.get(HIP).step("hip-replacement"))
    position = {o["type"]["text"]: i for i, o in enumerate(outputs)}
    outputs[position["operation_date"]]["valueDate"] = "last tuesday"
    outputs[position["procedure"]]["valueCode"] = "knee"
    response = await put_status(http, task, "completed", ortho, output=outputs)
    assert response.status_code == 400, response.text
    found = issues(response)
    assert any(p.startswith(f"Task.output[{position['operation_date']}].valueDate") for p in found)
    assert any("'procedure'" in p for p in found), found
    assert not any("operation_date" in p and "missing" in p for p in found), found
    assert (await read_task(http, task["id"], ortho))["status"] == "accepted"


async def test_unknown_search_parameters_are_refused_unless_lenient(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    refused = await http.get("/fhir/Task", params={"patient": "x"}, headers=ortho)
    assert refused.status_code == 400
    assert any("'patient'" in p for p in issues(refused))
    lenient = {**ortho, "Prefer": "handling=lenient"}
    assert (await http.get("/fhir/Task", params={"patient": "x"}, headers=lenient)).is_success
    listed = await http.get("/api/pathways", params={"colour": "red"}, headers=coordinator)
    assert listed.status_code == 400 and any("'colour'" in p for p in problems(listed))
    lenient = {**coordinator, "Prefer": "handling=lenient"}
    assert (await http.get("/api/pathways", params={"colour": "red"}, headers=lenient)).is_success


# --- 5. reads ----------------------------------------------------------------------------------


async def test_pathway_lists_take_several_values_sort_and_show_due_wait_and_names(
    http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    number = nhs_number()
    patient = {"nhs_number": number, "name": "Listed Patient"}
    ids = []
    for definition in (HIP, "urgent-community-response"):
        started = await http.post(
            "/api/pathways", json={"definition": definition, "patient": patient},
            headers=coordinator,
        )
        assert started.status_code == 201, started.text
        ids.append(started.json()["id"])
    held = await http.post(
        f"/api/pathways/{ids[0]}/hold", json={"reason": "in hospital"}, headers=coordinator
    )
    assert held.status_code == 200

    search = {"nhs_number": number}
    for _ in range(200):  # the read model catches up within moments
        found = await http.post("/api/pathways/search", json=search, headers=coordinator)
        page = found.json()
        if page["total"] == 2 and {i["status"] for i in page["items"]} == {"on-hold", "active"}:
            break
        await asyncio.sleep(0.05)
    assert found.status_code == 200 and page["total"] == 2, page
    assert {i["pathway_id"] for i in page["items"]} == set(ids)
    assert {i["patient_name"] for i in page["items"]} == {"Listed Patient"}
    assert number not in str(found.url) and "nhs_number" not in str(found.url)
    for item in page["items"]:
        assert item["next_due"] is not None
        assert item["waited"]["seconds"] >= 0 and item["waited"]["display"].startswith("PT")

    definitions = f"{HIP},urgent-community-response"
    both = {"status": "active,on-hold", "definition": definitions, "limit": "500"}
    opened = {"status": "open", "definition": definitions, "limit": "500"}
    listed = (await http.get("/api/pathways", params=both, headers=coordinator)).json()
    as_open = (await http.get("/api/pathways", params=opened, headers=coordinator)).json()
    assert listed["total"] == as_open["total"] >= 2
    assert set(ids) <= {i["pathway_id"] for i in listed["items"]}
    assert {i["status"] for i in listed["items"]} <= {"active", "on-hold"}

    by_due = (await http.get(
        "/api/pathways", params={**opened, "sort": "due"}, headers=coordinator
    )).json()["items"]
    dues = [i["next_due"] for i in by_due if i["next_due"] is not None]
    assert dues == sorted(dues) and by_due[: len(dues)] == [i for i in by_due if i["next_due"]]
    by_age = (await http.get(
        "/api/pathways", params={**opened, "sort": "age"}, headers=coordinator
    )).json()["items"]
    assert [i["started_at"] for i in by_age] == sorted(i["started_at"] for i in by_age)
    rank = {"breached": 0, "at-risk": 1, "on-track": 2}
    by_sla = (await http.get(
        "/api/pathways", params={**opened, "sort": "sla"}, headers=coordinator
    )).json()["items"]
    assert [rank[i["sla_state"]] for i in by_sla] == sorted(rank[i["sla_state"]] for i in by_sla)

    named = await http.get(
        "/api/pathways",
        params={"status": "on-hold", "definition": HIP, "include": "patient", "limit": "500"},
        headers=coordinator,
    )
    mine = next(i for i in named.json()["items"] if i["pathway_id"] == ids[0])
    assert mine["patient_name"] == "Listed Patient"
    in_url = await http.get("/api/pathways", params={"nhs_number": number}, headers=coordinator)
    assert in_url.status_code == 400, "the NHS number is never a URL parameter"


async def test_open_handovers_report_live_wait_and_work_times(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    task = await _task(http, coordinator, ortho)
    await put_status(http, task, "accepted", ortho)
    await put_status(http, task, "in-progress", ortho)
    await asyncio.sleep(0.2)
    pathway_id = task["basedOn"][0]["reference"].removeprefix("CarePlan/")
    detail = (await http.get(f"/api/pathways/{pathway_id}", headers=coordinator)).json()
    (handover,) = detail["handovers"]
    assert handover["status"] == "in-progress" and handover["lead_time"] is None
    assert handover["waited"]["seconds"] > 0.2 and handover["worked"]["seconds"] > 0.1
    assert handover["waited"]["seconds"] >= handover["worked"]["seconds"]
    assert handover["waited"]["display"] == "PT0S" or handover["waited"]["display"][:2] == "PT"


async def test_last_updated_takes_ge_gt_le_lt_ranges(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    task = await _task(http, coordinator, ortho)
    moment = task["meta"]["lastUpdated"]
    for _ in range(200):  # the read model catches up within moments
        probe = await http.get(
            "/fhir/Task", params=[("_lastUpdated", f"ge{moment}"), ("_count", "100")],
            headers=ortho,
        )
        if task["id"] in [e["resource"]["id"] for e in probe.json().get("entry", [])]:
            break
        await asyncio.sleep(0.05)

    async def ids(*bounds: str) -> list[str]:
        params = {"_lastUpdated": list(bounds), "_count": "100"}
        response = await http.get("/fhir/Task", params=params, headers=ortho)
        assert response.status_code == 200, response.text
        return [e["resource"]["id"] for e in response.json().get("entry", [])]

    assert task["id"] in await ids(f"ge{moment}", f"le{moment}")
    assert task["id"] not in await ids(f"gt{moment}")
    assert task["id"] not in await ids(f"lt{moment}")


async def test_list_positions_in_coordinator_errors_read_like_fhir_ones(
    http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    body = {"nhs_number": nhs_number(), "status": ["active", "sleeping"]}
    response = await http.post("/api/pathways/search", json=body, headers=coordinator)
    assert response.status_code == 422
    assert any(p.startswith("status[1]:") for p in problems(response)), problems(response)


async def test_search_pages_never_skip_a_task_when_rows_change_between_pages(
    http: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    tasks = [await _task(http, coordinator, ortho) for _ in range(3)]
    since = min(t["meta"]["lastUpdated"] for t in tasks)
    query = {"status": "requested", "_lastUpdated": f"ge{since}", "_count": "1"}
    mine = {t["id"] for t in tasks}
    for _ in range(200):  # the read model catches up within moments
        page = (await http.get("/fhir/Task", params={**query, "_count": "100"}, headers=ortho)).json()
        if mine <= {e["resource"]["id"] for e in page.get("entry", [])}:
            break
        await asyncio.sleep(0.05)
    seen: list[str] = []
    url: str | None = "/fhir/Task"
    params: dict[str, str] | None = query
    for _ in range(20):
        assert url is not None
        response = await http.get(url, params=params, headers=ortho)
        assert response.status_code == 200, response.text
        bundle = response.json()
        for entry in bundle.get("entry", []):
            seen.append(entry["resource"]["id"])
            # the Task leaves the search (accepted) before the next page is read
            accepted = await put_status(http, entry["resource"], "accepted", ortho)
            assert accepted.status_code == 200
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        url, params = following[0].removeprefix(str(http.base_url).rstrip("/")), None
        await asyncio.sleep(0.3)  # the read model records the acceptance
    assert mine <= set(seen), "offset paging skipped a Task here"
    assert len(seen) == len(set(seen))
