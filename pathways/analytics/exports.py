"""Event-log exports for process mining: CSV, XES (IEEE 1849-2016) and OCEL 2.0 JSON.

Case = pathway, activity = step, resource = provider, lifecycle transition from the event kind
(ready -> schedule, dispatched -> assign, reassigned -> reassign, started -> start, held ->
suspend, resumed -> resume, completed -> complete, ...). Events that are not a step's life cycle
(escalations, breaches, refused deliveries) keep their kind as the lifecycle `unknown` with a
`pathways:kind` attribute. Free-text detail (reasons, notes) and actors are never exported: the
log carries no patient data. Events are rendered as they stream, so a large log never sits in
memory (OCEL's objects, one per pathway and handover, are collected and written last).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import quoteattr

from pathways.events import EventKind, PathwayEvent

LIFECYCLE = {
    EventKind.READY: "schedule",
    EventKind.DISPATCHED: "assign",
    EventKind.REASSIGNED: "reassign",
    EventKind.STARTED: "start",
    EventKind.HELD: "suspend",
    EventKind.RESUMED: "resume",
    EventKind.COMPLETED: "complete",
    EventKind.CANCELLED: "ate_abort",
    EventKind.FAILED: "ate_abort",
    EventKind.REJECTED: "withdraw",
    EventKind.SKIPPED: "autoskip",
    EventKind.PATHWAY_STARTED: "start",
    EventKind.PATHWAY_COMPLETED: "complete",
    EventKind.PATHWAY_CANCELLED: "pi_abort",
    EventKind.PATHWAY_HELD: "suspend",
    EventKind.PATHWAY_RESUMED: "resume",
}
"""XES standard lifecycle model transitions; anything else is `unknown`."""

CSV_COLUMNS = ("case_id", "event_id", "activity", "lifecycle", "kind", "timestamp", "resource",
               "handover_id", "definition_id", "definition_version")
PATHWAY_ACTIVITY = "pathway"


def activity(event: PathwayEvent) -> str:
    """The step for a handover's events, `pathway` for the pathway's own."""
    return event.step_id or PATHWAY_ACTIVITY


def lifecycle(event: PathwayEvent) -> str:
    return LIFECYCLE.get(event.kind, "unknown")


def timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as XES and OCEL readers expect."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def csv_lines(events: Iterable[PathwayEvent]) -> Iterator[str]:
    """CSV with a header row, one line per event."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    for event in events:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow((event.pathway_id, event.event_id, activity(event), lifecycle(event),
                         event.kind.value, timestamp(event.at), event.provider_id or "",
                         event.handover_id or "", event.definition_id, event.definition_version))
        yield buffer.getvalue()


XES_VERSION = "1849.2016"
"""The schema types `xes.version` as xs:decimal, so the IEEE standard's number is written with
a point (as other XES 1849 writers do); "1849-2016" fails validation."""

XES_HEADER = f"""<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="{XES_VERSION}" xes.features="" xmlns="http://www.xes-standard.org/">
<extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
<extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>
<extension name="Lifecycle" prefix="lifecycle" uri="http://www.xes-standard.org/lifecycle.xesext"/>
<extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>
<global scope="trace">
<string key="concept:name" value="UNKNOWN"/>
</global>
<global scope="event">
<string key="concept:name" value="UNKNOWN"/>
<string key="lifecycle:transition" value="unknown"/>
<date key="time:timestamp" value="1970-01-01T00:00:00.000Z"/>
</global>
<classifier name="Activity" keys="concept:name"/>
<classifier name="ActivityTransition" keys="concept:name lifecycle:transition"/>
<string key="concept:name" value="Pathway Orchestrator event log"/>
<string key="lifecycle:model" value="standard"/>
"""


def xes_chunks(events: Iterable[PathwayEvent]) -> Iterator[str]:
    """An XES document: one trace per pathway (events must come grouped by pathway, in time
    order, as `iter_events` gives them)."""
    yield XES_HEADER
    case: str | None = None
    for event in events:
        if event.pathway_id != case:
            if case is not None:
                yield "</trace>\n"
            case = event.pathway_id
            yield (f"<trace>\n<string key=\"concept:name\" value={quoteattr(case)}/>\n"
                   f"<string key=\"pathways:definition\" value={quoteattr(event.definition_id)}/>\n")
        yield _xes_event(event)
    if case is not None:
        yield "</trace>\n"
    yield "</log>\n"


def _xes_event(event: PathwayEvent) -> str:
    attributes = [
        ("string", "concept:name", activity(event)),
        ("string", "lifecycle:transition", lifecycle(event)),
        ("date", "time:timestamp", timestamp(event.at)),
        ("string", "pathways:kind", event.kind.value),
        ("string", "pathways:event", event.event_id),
    ]
    if event.provider_id:
        attributes.append(("string", "org:resource", event.provider_id))
    if event.handover_id:
        attributes.append(("string", "pathways:handover", event.handover_id))
    body = "".join(f"<{t} key={quoteattr(k)} value={quoteattr(v)}/>" for t, k, v in attributes)
    return f"<event>{body}</event>\n"


def ocel_chunks(events: Iterable[PathwayEvent]) -> Iterator[str]:
    """An OCEL 2.0 JSON log, streamed: pathways and handovers are objects (a handover `part-of`
    its pathway); each event relates to its pathway and, if any, its handover. Events are
    written as they come; the objects (ids, step, providers) are collected and written last."""
    objects: dict[str, dict[str, Any]] = {}
    head = {
        "objectTypes": [
            {"name": "pathway", "attributes": [{"name": "definition", "type": "string"}]},
            {"name": "handover", "attributes": [{"name": "step", "type": "string"},
                                                {"name": "provider", "type": "string"}]},
        ],
        "eventTypes": [
            {"name": kind.value, "attributes": [{"name": "resource", "type": "string"},
                                                {"name": "lifecycle", "type": "string"}]}
            for kind in EventKind
        ],
    }
    yield json.dumps(head, separators=(",", ":"))[:-1] + ',"events":['
    for index, event in enumerate(events):
        relationships = [{"objectId": event.pathway_id, "qualifier": "pathway"}]
        _objects(objects, event)
        if event.handover_id:
            relationships.append({"objectId": f"{event.pathway_id}/{event.handover_id}",
                                  "qualifier": "handover"})
        item = {
            "id": event.event_id, "type": event.kind.value, "time": timestamp(event.at),
            "attributes": [{"name": "resource", "value": event.provider_id or ""},
                           {"name": "lifecycle", "value": lifecycle(event)}],
            "relationships": relationships,
        }
        yield ("," if index else "") + json.dumps(item, separators=(",", ":"))
    yield '],"objects":['
    for index, thing in enumerate(objects.values()):
        thing["attributes"] = _changes(thing["attributes"])
        yield ("," if index else "") + json.dumps(thing, separators=(",", ":"))
    yield "]}"


def _objects(objects: dict[str, dict[str, Any]], event: PathwayEvent) -> None:
    if event.pathway_id not in objects:
        objects[event.pathway_id] = {
            "id": event.pathway_id, "type": "pathway",
            "attributes": [{"name": "definition", "time": timestamp(event.at),
                            "value": event.definition_id}],
            "relationships": [],
        }
    if not event.handover_id:
        return
    handover = f"{event.pathway_id}/{event.handover_id}"
    if handover not in objects:
        objects[handover] = {
            "id": handover, "type": "handover",
            "attributes": [{"name": "step", "time": timestamp(event.at),
                            "value": event.step_id or ""}],
            "relationships": [{"objectId": event.pathway_id, "qualifier": "part-of"}],
        }
    if event.provider_id:  # a provider attribute changes only when the provider does
        objects[handover]["attributes"].append(
            {"name": "provider", "time": timestamp(event.at), "value": event.provider_id})


def _changes(attributes: list[dict[str, str]]) -> list[dict[str, str]]:
    kept: list[dict[str, str]] = []
    latest: dict[str, str] = {}
    for attribute in attributes:
        if latest.get(attribute["name"]) != attribute["value"]:
            kept.append(attribute)
            latest[attribute["name"]] = attribute["value"]
    return kept


def ocel_json(events: Iterable[PathwayEvent]) -> str:
    return "".join(ocel_chunks(events))
