"""The event-log exports validated against the published schemas (vendored in schemas/, see its
README): XES against the IEEE 1849-2016 XSD with `xmlschema`, OCEL 2.0 JSON against the OCEL 2.0
JSON schema with `jsonschema`; both for a pathway run through the engine (time-skipping server)
and for the hand-built log that exercises every kind of event."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import xmlschema
from temporalio.testing import WorkflowEnvironment

from activities.analytics import iter_events
from activities.store import EventStore
from pathways.analytics.exports import ocel_json, xes_chunks
from pathways.demo import DEMO_PATIENTS
from pathways.settings import Settings
from pathways.state import PathwayStatus, TaskStatus
from tests.analytics.eventlog import DEFINITION as SYNTHETIC
from tests.analytics.eventlog import write_log
from tests.workflows.support import TWO_DAY, provider, start, state_of

SCHEMAS = Path(__file__).parent / "schemas"
XES = "http://www.xes-standard.org/"
NS = "{" + XES + "}"
ENGINE_DEFINITION = TWO_DAY.model_copy(update={"id": "export-two-day"})
# The standard extensions as their .xesext files declare them (name, prefix, uri).
STANDARD_EXTENSIONS = {
    "concept": ("Concept", "http://www.xes-standard.org/concept.xesext"),
    "lifecycle": ("Lifecycle", "http://www.xes-standard.org/lifecycle.xesext"),
    "time": ("Time", "http://www.xes-standard.org/time.xesext"),
    "org": ("Organizational", "http://www.xes-standard.org/org.xesext"),
}
# lifecycle.xesext, model "standard": the transitions of the standard transactional life cycle.
STANDARD_TRANSITIONS = {"schedule", "assign", "withdraw", "reassign", "start", "suspend",
                        "resume", "pi_abort", "ate_abort", "complete", "autoskip", "manualskip",
                        "unknown"}
OCEL_ATTRIBUTE_TYPES = {"string", "time", "integer", "float", "boolean"}


@pytest.fixture(scope="module")
def xes_schema() -> xmlschema.XMLSchema:
    # The 2016 XSD has no targetNamespace while XES documents use the XES namespace; the
    # schema is loaded into that namespace (chameleon), as the April 2020 revision declares.
    return xmlschema.XMLSchema(SCHEMAS / "xes-ieee-1849-2016.xsd", namespace=XES)


@pytest.fixture(scope="module")
def ocel_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / "ocel20-schema-json.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    # The format checker makes `"format": "date-time"` bind (RFC 3339, rfc3339-validator).
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def _synthetic(tmp_path: Path) -> EventStore:
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    store.migrate()
    write_log(store)
    return store


def _assert_valid_xes(schema: xmlschema.XMLSchema, document: str) -> ET.Element:
    errors = [f"{e.path}: {e.reason}" for e in schema.iter_errors(document)]
    assert errors == []
    root = ET.fromstring(document)
    declared = {e.get("prefix"): (e.get("name"), e.get("uri"))
                for e in root.findall(f"{NS}extension")}
    assert declared == STANDARD_EXTENSIONS
    log_attributes = {a.get("key"): a.get("value") for a in root if a.tag == f"{NS}string"}
    assert log_attributes["lifecycle:model"] == "standard"
    for event in root.iter(f"{NS}event"):
        attributes = {a.get("key"): (a.tag.removeprefix(NS), a.get("value")) for a in event}
        assert attributes["lifecycle:transition"][1] in STANDARD_TRANSITIONS
        assert attributes["time:timestamp"][0] == "date"
        assert attributes["concept:name"][0] == "string"
        used = {key.split(":", 1)[0] for key in attributes if key and ":" in key}
        assert used - {"pathways"} <= set(declared)  # standard keys only from declared ones
    return root


def _assert_valid_ocel(validator: jsonschema.Draft7Validator, document: str) -> dict[str, Any]:
    log: dict[str, Any] = json.loads(document)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]
    assert errors == []
    # What the OCEL 2.0 specification adds to the schema: declared types and attribute types,
    # and relationships that name objects of the log.
    event_types = {t["name"]: {a["name"] for a in t["attributes"]} for t in log["eventTypes"]}
    object_types = {t["name"]: {a["name"] for a in t["attributes"]} for t in log["objectTypes"]}
    for entry in log["eventTypes"] + log["objectTypes"]:
        assert {a["type"] for a in entry["attributes"]} <= OCEL_ATTRIBUTE_TYPES
    objects = {o["id"]: o for o in log["objects"]}
    for event in log["events"]:
        assert {a["name"] for a in event["attributes"]} <= event_types[event["type"]]
        assert {r["objectId"] for r in event["relationships"]} <= set(objects)
    for thing in objects.values():
        assert {a["name"] for a in thing["attributes"]} <= object_types[thing["type"]]
        assert {r["objectId"] for r in thing["relationships"]} <= set(objects)
    return log


def test_every_kind_of_event_exports_schema_valid_xes_and_ocel(
    tmp_path: Path, xes_schema: xmlschema.XMLSchema, ocel_validator: jsonschema.Draft7Validator
) -> None:
    store = _synthetic(tmp_path)
    root = _assert_valid_xes(xes_schema, "".join(xes_chunks(iter_events(store, SYNTHETIC))))
    transitions = {a.get("value") for a in root.iter(f"{NS}string")
                   if a.get("key") == "lifecycle:transition"}
    assert {"schedule", "start", "suspend", "resume", "complete", "reassign",
            "withdraw", "unknown"} <= transitions
    log = _assert_valid_ocel(ocel_validator, ocel_json(iter_events(store, SYNTHETIC)))
    assert {o["type"] for o in log["objects"]} == {"pathway", "handover"}
    store.close()


def test_the_schemas_refuse_what_they_should(
    xes_schema: xmlschema.XMLSchema, ocel_validator: jsonschema.Draft7Validator
) -> None:
    """The validators bind: the exporter's former header and an untimed OCEL object attribute
    are refused."""
    bad = ('<log xes.version="1849-2016" xmlns="http://www.xes-standard.org/">'
           '<classifier name="Activity and transition" keys="concept:name"/></log>')
    assert len(list(xes_schema.iter_errors(bad))) == 2
    untimed = {"eventTypes": [], "objectTypes": [], "events": [],
               "objects": [{"id": "p", "type": "pathway",
                            "attributes": [{"name": "definition", "value": "d"}]}]}
    assert not ocel_validator.is_valid(untimed)
    assert not ocel_validator.is_valid({"eventTypes": [], "objectTypes": [], "objects": [],
                                        "events": [{"id": "e", "type": "t", "time": "today"}]})


@pytest.fixture
def env(skipping_env: WorkflowEnvironment, skipping_worker: object) -> WorkflowEnvironment:
    return skipping_env


async def test_a_pathway_run_by_the_engine_exports_schema_valid_xes_and_ocel(
    env: WorkflowEnvironment, skipping_settings: Settings,
    xes_schema: xmlschema.XMLSchema, ocel_validator: jsonschema.Draft7Validator,
) -> None:
    handle = await start(env.client, skipping_settings, ENGINE_DEFINITION, DEMO_PATIENTS[1])
    visit = (await state_of(handle)).handovers["first-visit.1"]
    await env.sleep(timedelta(hours=1))
    visit = await provider(handle, visit, TaskStatus.ACCEPTED)
    visit = await provider(handle, visit, TaskStatus.IN_PROGRESS)
    await env.sleep(timedelta(hours=2))
    await provider(handle, visit, TaskStatus.COMPLETED, output={"wound_ok": True})
    review = (await state_of(handle)).handovers["gp-review.1"]
    review = await provider(handle, review, TaskStatus.ACCEPTED)
    review = await provider(handle, review, TaskStatus.IN_PROGRESS)
    await provider(handle, review, TaskStatus.COMPLETED)
    assert (await handle.result()).status is PathwayStatus.COMPLETED

    store = EventStore(skipping_settings.event_store)
    pathway = handle.id
    events = [e for e in iter_events(store, ENGINE_DEFINITION.id) if e.pathway_id == pathway]
    root = _assert_valid_xes(xes_schema, "".join(xes_chunks(events)))
    (trace,) = root.findall(f"{NS}trace")
    moves = [({a.get("key"): a.get("value") for a in e}) for e in trace.findall(f"{NS}event")]
    visit_moves = [(m["lifecycle:transition"], m.get("org:resource")) for m in moves
                   if m["concept:name"] == "first-visit"]
    assert ("start", visit.provider_id) in visit_moves
    assert ("complete", visit.provider_id) in visit_moves
    assert [m["lifecycle:transition"] for m in moves if m["concept:name"] == "pathway"] == [
        "start", "complete"]
    stamps = [str(m["time:timestamp"]) for m in moves]
    assert stamps == sorted(stamps)
    log = _assert_valid_ocel(ocel_validator, ocel_json(events))
    assert {o["id"] for o in log["objects"] if o["type"] == "handover"} == {
        f"{pathway}/first-visit.1", f"{pathway}/gp-review.1"}
    store.close()
