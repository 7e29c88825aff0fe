"""FHIR conformance clients rely on, over real HTTP against a real worker: the search parameters
(code, _id, _sort, _include, owner:identifier), Task history and vread, ODS and NHS number
identifiers, and real answers checked with fhir.resources R4B models, fhirclient's R4 (4.0.1)
models and the HL7 invariants encoded below.

The API under test serves a catalogue in which the orthopaedic centre and the lead provider have
ODS codes and the orthopaedic centre is `portal: true` with a webhook to a provider system that
verifies every Standard Webhooks signature.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.task import Task
from fhirclient.models.bundle import Bundle as R4Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement as R4CapabilityStatement
from fhirclient.models.operationoutcome import OperationOutcome as R4OperationOutcome
from fhirclient.models.questionnaire import Questionnaire as R4Questionnaire
from fhirclient.models.task import Task as R4Task
from sqlalchemy import func, select

from activities.store import EventStore, handover_rows
from pathways.fhir import NHS_NUMBER_SYSTEM, ODS_SYSTEM, PORTAL_LINK_EXTENSION, STEP_SYSTEM
from pathways.settings import SHIPPED_CATALOGUE
from tests.api.conftest import RunningApi, free_port, serve_in_thread
from tests.api.flow import HIP, PATIENT, bearer, put_status, read_task, start_pathway
from tests.fixtures.provider_system import ProviderSystem

pytestmark = pytest.mark.devserver

ORTHO = "elmshire-elective-ortho-centre"
FENWICK = "fenwick-park-hospital"
HUB = "elmshire-care-transfer-hub"
ORTHO_ODS = "RXQ01"
LEAD_ODS = "Y05123"
FHIR_JSON = "application/fhir+json"


@pytest.fixture(scope="module")
def ortho_system(api: RunningApi) -> Iterator[ProviderSystem]:
    system = ProviderSystem([api.settings.webhook_secrets(ORTHO)[0].whsec])
    yield system
    system.close()


@pytest.fixture(scope="module")
def ods_api(
    api: RunningApi, ortho_system: ProviderSystem, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    catalogue = tmp_path_factory.mktemp("ods-catalogue")
    for source in Path(SHIPPED_CATALOGUE).glob("*.yaml"):
        text = source.read_text()
        if source.name == f"{HIP}.yaml":
            marker = "        name: Elmshire Elective Orthopaedic Centre\n"
            lead = "  name: Elmshire Musculoskeletal Partnership (lead provider)\n"
            assert marker in text and lead in text
            text = text.replace(
                marker,
                marker + f"        ods_code: {ORTHO_ODS}\n        portal: true\n"
                f"        webhook: {ortho_system.url}/ortho\n",
            )
            text = text.replace(lead, lead + f"  ods_code: {LEAD_ODS}\n")
        (catalogue / source.name).write_text(text)
    settings = api.settings.model_copy(update={"api_port": free_port(), "catalogue_dir": catalogue})
    served = serve_in_thread(settings)
    yield next(served)
    served.close()


@pytest_asyncio.fixture
async def client(ods_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ods_api, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def ortho(api: RunningApi) -> dict[str, str]:
    return bearer(api.provider_token(ORTHO))


def issues(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body = response.json()
    OperationOutcome.model_validate(body)
    R4OperationOutcome(body, strict=True)
    return [issue.get("diagnostics", "") for issue in body["issue"]]


async def _task(client: httpx.AsyncClient, coordinator: dict[str, str], who: dict[str, str]) -> dict[str, Any]:
    pathway_id = await start_pathway(client, coordinator)
    return await read_task(client, f"{pathway_id}.hip-replacement.1", who)


async def _search(client: httpx.AsyncClient, who: dict[str, str], **params: str) -> dict[str, Any]:
    response = await client.get("/fhir/Task", params=params, headers=who)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _until_listed(
    client: httpx.AsyncClient, who: dict[str, str], task_id: str, version: str
) -> dict[str, Any]:
    """Search by _id until the read model has the Task at `version` (it lags by moments)."""
    for _ in range(300):
        found = await _search(client, who, _id=task_id)
        if [e["resource"]["meta"]["versionId"] for e in found.get("entry", [])] == [version]:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{task_id} v{version} never listed")


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


# --- HL7 rules encoded (the models check types and cardinality only) ---------------------------


def no_empty_elements(value: Any, where: str = "$") -> None:
    """ele-1 and the JSON format: no empty object, array or string anywhere, no nulls."""
    assert value not in ({}, [], "", None), f"empty element at {where}"
    if isinstance(value, dict):
        for key, item in value.items():
            no_empty_elements(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            no_empty_elements(item, f"{where}[{index}]")


def check_bundle(body: dict[str, Any]) -> None:
    """R4 Bundle invariants bdl-1..bdl-8 (9..12 are for documents and messages, not served)."""
    Bundle.model_validate(body)
    R4Bundle(body, strict=True)
    no_empty_elements(body)
    kind, entries = body["type"], body.get("entry", [])
    assert kind in ("searchset", "history")
    assert "total" not in body or kind in ("searchset", "history")  # bdl-1
    assert any(link["relation"] == "self" for link in body["link"])
    full_urls: dict[str, set[str]] = {}
    for entry in entries:
        assert ("search" in entry) == (kind == "searchset")  # bdl-2
        assert ("request" in entry) == (kind == "history")  # bdl-3
        assert ("response" in entry) == (kind == "history")  # bdl-4
        assert {"resource", "request", "response"} & entry.keys()  # bdl-5
        assert "/_history/" not in entry["fullUrl"]  # bdl-8
        assert entry["fullUrl"].endswith(f"/Task/{entry['resource']['id']}")
        versions = full_urls.setdefault(entry["fullUrl"], set())
        version = entry["resource"]["meta"]["versionId"]
        assert kind == "history" or version not in versions  # bdl-7
        versions.add(version)
        check_task(entry["resource"])
    if kind == "history":  # R4 3.1.0.4.6: newest version first
        stamps = [e["response"]["lastModified"] for e in entries]
        assert stamps == sorted(stamps, reverse=True)
        for entry in entries:
            assert entry["request"]["method"] in ("POST", "PUT")
            assert entry["response"]["etag"] == f'W/"{entry["resource"]["meta"]["versionId"]}"'


def check_task(body: dict[str, Any]) -> None:
    """Task in both model families; inv-1 (lastModified not before authoredOn)."""
    Task.model_validate(body)
    R4Task(body, strict=True)
    no_empty_elements(body)
    assert body["lastModified"] >= body["authoredOn"]


def check_capability_statement(body: dict[str, Any]) -> None:
    """cpb-2, cpb-9, cpb-12, cpb-14 (kind instance: implementation present)."""
    CapabilityStatement.model_validate(body)
    R4CapabilityStatement(body, strict=True)
    no_empty_elements(body)
    assert body.get("software") or body.get("implementation")  # cpb-2
    assert body["kind"] == "instance" and body["implementation"]  # cpb-14
    for rest in body["rest"]:
        types = [r["type"] for r in rest["resource"]]
        assert len(types) == len(set(types))  # cpb-9
        for resource in rest["resource"]:
            names = [p["name"] for p in resource.get("searchParam", [])]
            assert len(names) == len(set(names))  # cpb-12


def check_questionnaire(body: dict[str, Any]) -> None:
    """que-0 (a computable name), que-2 (linkIds unique), que-4, que-6."""
    Questionnaire.model_validate(body)
    R4Questionnaire(body, strict=True)
    no_empty_elements(body)
    assert re.fullmatch(r"[A-Z]([A-Za-z0-9_]){0,254}", body["name"])  # que-0
    links = [item["linkId"] for item in body.get("item", [])]
    assert len(links) == len(set(links))  # que-2
    for item in body.get("item", []):
        assert not ("answerOption" in item and "answerValueSet" in item)  # que-4
        assert item["type"] != "display" or "required" not in item  # que-6


# --- search --------------------------------------------------------------------------------------


async def test_code_id_and_sort_search_a_providers_tasks(
    api: RunningApi, client: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    first = await _task(client, coordinator, ortho)
    second = await _task(client, coordinator, ortho)
    await _until_listed(client, ortho, second["id"], second["meta"]["versionId"])
    both = f"{first['id']},{second['id']}"
    by_ids = await _search(client, ortho, _id=both)
    assert sorted(e["resource"]["id"] for e in by_ids["entry"]) == sorted(both.split(","))
    assert by_ids["total"] == 2
    hub = bearer(api.provider_token(HUB))
    assert (await _search(client, hub, _id=both))["total"] == 0, "another provider's ids match nothing"
    for code in ("hip-replacement", f"{STEP_SYSTEM}|hip-replacement"):
        found = await _search(client, ortho, _id=both, code=code)
        assert found["total"] == 2
    assert (await _search(client, ortho, _id=both, code="discharge-planning"))["total"] == 0
    assert (await _search(client, ortho, _id=both, code="http://snomed.info/sct|hip-replacement"))[
        "total"
    ] == 0
    oldest = await _search(client, ortho, _id=both, _sort="_lastUpdated")
    newest = await _search(client, ortho, _id=both, _sort="-_lastUpdated")
    assert [e["resource"]["id"] for e in newest["entry"]] == [
        e["resource"]["id"] for e in reversed(oldest["entry"])
    ]
    stamps = [e["resource"]["meta"]["lastUpdated"] for e in newest["entry"]]
    assert stamps == sorted(stamps, reverse=True)
    # Paging newest first by next links: every Task once, in order, the parameters kept.
    page = await _search(client, ortho, _id=both, _sort="-_lastUpdated", _count="1")
    seen = [page["entry"][0]["resource"]["id"]]
    following = next(link["url"] for link in page["link"] if link["relation"] == "next")
    assert "_sort=-_lastUpdated" in following and "_id=" in following
    second_page = (await client.get(_path(following), headers=ortho)).json()
    seen += [e["resource"]["id"] for e in second_page["entry"]]
    assert seen == [e["resource"]["id"] for e in newest["entry"]]
    assert not [link for link in second_page["link"] if link["relation"] == "next"]
    self_link = next(link["url"] for link in second_page["link"] if link["relation"] == "self")
    assert "_cursor=" in self_link and "_sort=-_lastUpdated" in self_link


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"_sort": "status"}, "_sort"),
        ({"_sort": "_lastUpdated,status"}, "_sort"),
        ({"code": "hip-replacement,,x"}, "code"),
        ({"code": ",".join(["x"] * 21)}, "code"),
        ({"code": "bad code!"}, "code"),
        ({"_id": ",".join(f"pw-{i}.a.1" for i in range(101))}, "_id"),
        ({"_id": "pw-1.a.1,<script>"}, "_id"),
        ({"_include": "Task:focus"}, "_include"),
        ({"_include": "Task:patient"}, "_include"),
        ({"owner:identifier": "http://example.org/ids|RXQ01"}, "owner:identifier"),
        ({"_revinclude": "Provenance:target"}, "_revinclude"),
    ],
)
async def test_bad_search_parameters_are_400_naming_the_parameter(
    client: httpx.AsyncClient, ortho: dict[str, str], params: dict[str, str], named: str
) -> None:
    response = await client.get("/fhir/Task", params=params, headers=ortho)
    assert response.status_code == 400, response.text
    assert any(named in issue for issue in issues(response)), issues(response)


async def test_include_focus_is_ignored_when_lenient_and_said_so_in_the_capability_statement(
    client: httpx.AsyncClient, ortho: dict[str, str]
) -> None:
    lenient = {**ortho, "Prefer": "handling=lenient"}
    response = await client.get(
        "/fhir/Task", params={"_include": "Task:focus", "_count": "1"}, headers=lenient
    )
    assert response.status_code == 200
    bundle = response.json()
    check_bundle(bundle)
    assert all(e["search"]["mode"] == "match" for e in bundle.get("entry", []))
    assert all("focus" not in e["resource"] for e in bundle.get("entry", []))
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "_include" not in self_link, "the self link shows only what was applied"
    statement = (await client.get("/fhir/metadata")).json()
    task = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Task")
    assert "searchInclude" not in task and "Task.focus is not populated" in task["documentation"]


async def test_the_capability_statement_documents_every_search_parameter_and_the_models(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.get("/fhir/metadata")).json()
    check_capability_statement(body)
    task = next(r for r in body["rest"][0]["resource"] if r["type"] == "Task")
    kinds = {p["name"]: p["type"] for p in task["searchParam"]}
    assert kinds == {
        "owner": "reference", "status": "token", "code": "token", "_id": "token",
        "_lastUpdated": "date", "_count": "number", "_sort": "string",
    }
    definitions = {p["name"]: p.get("definition") for p in task["searchParam"]}
    assert definitions["code"] == "http://hl7.org/fhir/SearchParameter/Task-code"
    assert {"vread", "history-instance"} <= {i["code"] for i in task["interaction"]}
    assert task["readHistory"] is True
    assert "fhir.resources R4B" in body["implementation"]["description"]


# --- identifiers -----------------------------------------------------------------------------


async def test_owner_and_requester_carry_ods_codes_and_for_the_nhs_number(
    api: RunningApi, client: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    task = await _task(client, coordinator, ortho)
    check_task(task)
    assert task["owner"] == {
        "reference": f"Organization/{ORTHO}",
        "identifier": {"system": ODS_SYSTEM, "value": ORTHO_ODS},
    }
    assert task["requester"]["identifier"] == {"system": ODS_SYSTEM, "value": LEAD_ODS}
    assert task["for"]["identifier"] == {
        "system": NHS_NUMBER_SYSTEM, "value": PATIENT["nhs_number"].replace(" ", "")
    }
    await _until_listed(client, ortho, task["id"], task["meta"]["versionId"])
    mine = await _search(client, ortho, **{"owner:identifier": f"{ODS_SYSTEM}|{ORTHO_ODS}",
                                           "_id": task["id"]})
    assert mine["total"] == 1
    as_coordinator = await _search(
        client, coordinator, **{"owner:identifier": f"{ODS_SYSTEM}|{ORTHO_ODS}", "_id": task["id"]}
    )
    assert as_coordinator["total"] == 1
    hub = bearer(api.provider_token(HUB))
    refused = await client.get(
        "/fhir/Task", params={"owner:identifier": f"{ODS_SYSTEM}|{ORTHO_ODS}"}, headers=hub
    )
    assert refused.status_code == 403 and issues(refused)
    unknown = await _search(client, coordinator, **{"owner:identifier": f"{ODS_SYSTEM}|ZZZ99"})
    assert unknown["total"] == 0 and "entry" not in unknown, "no empty arrays (ele-1)"
    assert PATIENT["nhs_number"].replace(" ", "") not in task["id"]


# --- history and vread --------------------------------------------------------------------------


async def test_history_lists_every_version_newest_first_and_vread_returns_each(
    api: RunningApi, client: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    task = await _task(client, coordinator, ortho)
    accepted = await put_status(client, task, "accepted", ortho)
    assert accepted.status_code == 200, accepted.text
    started = await put_status(client, accepted.json(), "in-progress", ortho)
    assert started.status_code == 200, started.text
    latest = started.json()["meta"]["versionId"]
    for _ in range(300):
        response = await client.get(f"/fhir/Task/{task['id']}/_history", headers=ortho)
        assert response.status_code == 200, response.text
        history = response.json()
        if history.get("entry") and history["entry"][0]["resource"]["meta"]["versionId"] == latest:
            break
        await asyncio.sleep(0.05)
    check_bundle(history)
    assert history["type"] == "history" and history["total"] == len(history["entry"]) >= 3
    statuses = [e["resource"]["status"] for e in history["entry"]]
    assert statuses[0] == "in-progress" and statuses[-1] == "requested" and "accepted" in statuses
    first, last = history["entry"][-1], history["entry"][0]
    assert first["request"] == {"method": "POST", "url": "Task"}
    assert first["response"]["status"] == "201 Created"
    assert last["request"] == {"method": "PUT", "url": f"Task/{task['id']}"}
    assert last["response"]["status"] == "200 OK"
    for entry in history["entry"]:
        version = entry["resource"]["meta"]["versionId"]
        read = await client.get(f"/fhir/Task/{task['id']}/_history/{version}", headers=ortho)
        assert read.status_code == 200 and read.json() == entry["resource"]
        assert read.headers["etag"] == f'W/"{version}"'
        modified = parsedate_to_datetime(read.headers["last-modified"])
        assert modified.isoformat().replace("+00:00", "Z")[:19] == entry["response"][
            "lastModified"
        ][:19]
        check_task(read.json())
    # Paged by next links, newest first, each version once.
    page = (await client.get(f"/fhir/Task/{task['id']}/_history", params={"_count": "1"},
                             headers=ortho)).json()
    paged = []
    while True:
        check_bundle(page)
        paged += [e["resource"]["meta"]["versionId"] for e in page.get("entry", [])]
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        page = (await client.get(_path(following[0]), headers=ortho)).json()
    assert paged == [e["resource"]["meta"]["versionId"] for e in history["entry"]]
    since = await client.get(
        f"/fhir/Task/{task['id']}/_history",
        params={"_since": last["response"]["lastModified"]}, headers=ortho,
    )
    assert [e["resource"]["meta"]["versionId"] for e in since.json()["entry"]] == [latest]
    # Unknown versions, another provider, bad parameters.
    for missing in ("999", "0", "abc"):
        gone = await client.get(f"/fhir/Task/{task['id']}/_history/{missing}", headers=ortho)
        assert gone.status_code == 404 and issues(gone)
    hub = bearer(api.provider_token(HUB))
    for path in (f"/fhir/Task/{task['id']}/_history", f"/fhir/Task/{task['id']}/_history/1"):
        hidden = await client.get(path, headers=hub)
        assert hidden.status_code == 404 and issues(hidden) == [f"no Task {task['id']}"]
    bad = await client.get(f"/fhir/Task/{task['id']}/_history", params={"_since": "soon"},
                           headers=ortho)
    assert bad.status_code == 400 and any("_since" in i for i in issues(bad))
    unknown = await client.get(f"/fhir/Task/{task['id']}/_history", params={"_at": "x"},
                               headers=ortho)
    assert unknown.status_code == 400 and any("_at" in i for i in issues(unknown))


async def test_a_new_owners_history_holds_only_its_own_versions(
    api: RunningApi, client: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    task = await _task(client, coordinator, ortho)
    pathway_id = task["basedOn"][0]["reference"].removeprefix("CarePlan/")
    moved = await client.post(
        f"/api/pathways/{pathway_id}/reassign",
        json={"handover_id": "hip-replacement.1", "provider_id": FENWICK, "reason": "list"},
        headers=coordinator,
    )
    assert moved.status_code == 200, moved.text
    fenwick = bearer(api.provider_token(FENWICK))
    for _ in range(300):
        response = await client.get(f"/fhir/Task/{task['id']}/_history", headers=fenwick)
        if response.status_code == 200 and response.json().get("entry"):
            break
        await asyncio.sleep(0.05)
    history = response.json()
    check_bundle(history)
    owners = {e["resource"]["owner"]["reference"] for e in history["entry"]}
    assert owners == {f"Organization/{FENWICK}"}, "the earlier provider's versions stay hidden"
    assert history["entry"][-1]["request"]["method"] == "PUT"
    old = await client.get(f"/fhir/Task/{task['id']}/_history", headers=ortho)
    assert old.status_code == 404, "a Task no longer with the provider is not found"
    everything = (await client.get(f"/fhir/Task/{task['id']}/_history", headers=coordinator)).json()
    assert {e["resource"]["owner"]["reference"] for e in everything["entry"]} == {
        f"Organization/{FENWICK}", f"Organization/{ORTHO}"
    }


# --- a sample of real answers, validated -------------------------------------------------------


async def test_real_answers_validate_as_fhir_r4(
    client: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str]
) -> None:
    task = await _task(client, coordinator, ortho)
    read = await client.get(f"/fhir/Task/{task['id']}", headers=ortho)
    check_task(read.json())
    assert parsedate_to_datetime(read.headers["last-modified"])
    await _until_listed(client, ortho, task["id"], task["meta"]["versionId"])
    check_bundle(await _search(client, ortho, _count="5", status="requested"))
    check_bundle((await client.get(f"/fhir/Task/{task['id']}/_history", headers=ortho)).json())
    contract = task["input"][0]["valueCanonical"]
    questionnaire = await client.get(_path(contract), headers=ortho)
    check_questionnaire(questionnaire.json())
    check_capability_statement((await client.get("/fhir/metadata")).json())
    missing = await client.get("/fhir/Task/pw-0000.nothing.1", headers=ortho)
    assert missing.status_code == 404 and issues(missing)
    no_empty_elements(missing.json())


# --- the read model: code search uses an index ---------------------------------------------------


def test_code_search_reads_an_index_not_the_table(tmp_path: Path) -> None:
    """A code search's page (one code) and its total (any codes) read the provider-step index:
    no scan of the provider's other handovers, no sort."""
    store = EventStore(f"sqlite:///{tmp_path / 'plan.db'}")
    store.migrate()
    h = handover_rows.c

    def plan(query: Any) -> str:
        sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
        with store.engine.connect() as conn:
            return " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))

    one = select(h.task_id).where(h.provider_id == "p", h.step_id.in_(["a"]))
    page = plan(one.order_by(h.updated_at, h.task_id).limit(21))
    several = select(h.task_id).where(h.provider_id == "p", h.step_id.in_(["a", "b"]))
    total = plan(select(func.count()).select_from(several.subquery()))
    store.close()
    for found in (page, total):
        assert "INDEX ix_handovers_provider_step_updated (provider_id=? AND step_id=?)" in found
        assert "TEMP B-TREE" not in found, found


# --- portal providers: the link in the webhook -----------------------------------------------


async def test_a_portal_providers_webhook_carries_its_signed_page_link(
    client: httpx.AsyncClient, coordinator: dict[str, str], ortho: dict[str, str],
    ortho_system: ProviderSystem,
) -> None:
    task = await _task(client, coordinator, ortho)
    for _ in range(300):
        sent = [r for r in ortho_system.received if json.loads(r.body).get("id") == task["id"]]
        if sent:
            break
        await asyncio.sleep(0.05)
    assert sent and all(r.verified for r in sent), "Standard Webhooks signature still verifies"
    body = json.loads(sent[0].body)
    (link,) = [e["valueUrl"] for e in body["extension"] if e["url"] == PORTAL_LINK_EXTENSION]
    page = await client.get(_path(link))
    assert page.status_code == 200 and "Accept" in page.text
    read = await client.get(f"/fhir/Task/{task['id']}", headers=ortho)
    assert "extension" not in read.json(), "the link is never served by the FHIR API"
    links = (await client.get(
        f"/api/pathways/{task['basedOn'][0]['reference'][9:]}/portal-links", headers=coordinator
    )).json()["links"]
    assert [item["task_id"] for item in links] == [task["id"]]
