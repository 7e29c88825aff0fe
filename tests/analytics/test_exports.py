"""Event-log exports: XES structure (IEEE 1849 element order, extensions, lifecycle values),
OCEL 2.0 objects and relations, CSV columns; no free text or actors exported."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from activities.analytics import iter_events
from activities.store import EventStore
from pathways.analytics.exports import csv_lines, ocel_json, xes_chunks
from tests.analytics.eventlog import DEFINITION, write_log

NS = "{http://www.xes-standard.org/}"
LIFECYCLE_MODEL = {"schedule", "assign", "withdraw", "reassign", "start", "suspend", "resume",
                   "pi_abort", "ate_abort", "complete", "autoskip", "manualskip", "unknown"}


def _store(tmp_path: Path) -> EventStore:
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    store.migrate()
    write_log(store)
    return store


def test_xes_follows_the_standard_structure(tmp_path: Path) -> None:
    store = _store(tmp_path)
    root = ET.fromstring("".join(xes_chunks(iter_events(store, DEFINITION))))
    assert root.tag == f"{NS}log" and root.get("xes.version") == "1849.2016"
    order = [child.tag.removeprefix(NS) for child in root]
    # IEEE 1849: extensions, globals, classifiers, log attributes, then traces
    kinds = ["extension", "global", "classifier", "string", "trace"]
    positions = [kinds.index(tag) for tag in order]
    assert positions == sorted(positions)
    prefixes = {e.get("prefix") for e in root.findall(f"{NS}extension")}
    assert prefixes == {"concept", "time", "lifecycle", "org"}
    traces = root.findall(f"{NS}trace")
    names = [t.find(f"{NS}string") for t in traces]
    assert [n.get("value") for n in names if n is not None] == ["pw-1", "pw-2", "pw-3", "pw-4"]
    events = traces[0].findall(f"{NS}event")
    first = {a.get("key"): a.get("value") for a in events[1]}
    assert first["concept:name"] == "urgent-response"
    assert first["lifecycle:transition"] == "schedule"
    assert first["org:resource"] == "A"
    assert first["time:timestamp"] == "2026-01-05T00:00:00.000Z"
    transitions = [
        {a.get("key"): a.get("value") for a in e}["lifecycle:transition"]
        for t in traces for e in t.findall(f"{NS}event")
    ]
    assert set(transitions) <= LIFECYCLE_MODEL
    assert {"start", "complete", "suspend", "resume", "reassign", "withdraw"} <= set(transitions)
    for event in root.iter(f"{NS}event"):
        keys = {a.get("key") for a in event}
        assert {"concept:name", "lifecycle:transition", "time:timestamp"} <= keys
        assert all(a.tag.removeprefix(NS) in {"string", "date"} for a in event)


def test_ocel_has_pathway_and_handover_objects(tmp_path: Path) -> None:
    store = _store(tmp_path)
    log = json.loads(ocel_json(iter_events(store, DEFINITION)))
    assert {t["name"] for t in log["objectTypes"]} == {"pathway", "handover"}
    objects = {o["id"]: o for o in log["objects"]}
    handover = objects["pw-1/b.1"]
    assert handover["type"] == "handover"
    assert handover["relationships"] == [{"objectId": "pw-1", "qualifier": "part-of"}]
    assert [a["value"] for a in handover["attributes"] if a["name"] == "provider"] == ["B", "C"]
    completed = next(e for e in log["events"] if e["id"] == "pw-1:19")
    assert completed["type"] == "completed"
    assert {r["objectId"] for r in completed["relationships"]} == {"pw-1", "pw-1/b.1"}
    assert {t["name"] for t in log["eventTypes"]} >= {"ready", "completed", "escalated"}


def test_csv_export_has_case_activity_lifecycle_time_resource(tmp_path: Path) -> None:
    store = _store(tmp_path)
    rows = list(csv.DictReader(io.StringIO("".join(csv_lines(iter_events(store, DEFINITION))))))
    assert len(rows) == sum(1 for _ in iter_events(store, DEFINITION))
    start = next(r for r in rows if r["case_id"] == "pw-1" and r["kind"] == "started")
    assert (start["activity"], start["lifecycle"], start["resource"]) == (
        "urgent-response", "start", "A")
    assert "reason" not in "".join(csv_lines(iter_events(store, DEFINITION)))


def test_pm4py_reads_the_xes_back(tmp_path: Path) -> None:
    """Optional: pm4py (AGPL, the `mining` extra) reads the export as a process-mining log."""
    import pytest

    pm4py = pytest.importorskip("pm4py")
    store = _store(tmp_path)
    path = tmp_path / "log.xes"
    path.write_text("".join(xes_chunks(iter_events(store, DEFINITION))))
    log = pm4py.read_xes(str(path))
    assert set(log["case:concept:name"]) == {"pw-1", "pw-2", "pw-3", "pw-4"}
    assert {"urgent-response", "gp-follow-up"} <= set(log["concept:name"])
