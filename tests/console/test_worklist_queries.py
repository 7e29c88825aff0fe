"""The worklist's read queries on both event store databases (SQLite file and PostgreSQL): the
urgency order, queues, counts, the escalation fold, names and accept-by from rendered Tasks."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from activities.store import EventStore, handover_rows, patient_index
from api.console import worklist
from bench.console_worklist import fill
from pathways.events import (
    EventKind,
    HandoverRow,
    PathwayEvent,
    PathwayRow,
    RecordBatch,
    TaskVersion,
)
from pathways.patient_search import PatientIndex
from pathways.settings import Settings
from worker.main import catch_up_read_models

COUNT = 40


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'pathways.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    events = EventStore(url)
    events.migrate()
    fill(events, COUNT)
    yield events
    events.close()


def test_urgency_order_queues_and_counts(store: EventStore) -> None:
    escalated = worklist.escalated(store)
    assert sorted(escalated) == [f"pw-{i:016x}" for i in range(0, COUNT, 10)]
    assert escalated == {
        item.pathway_id: 1 for item in worklist.escalation_items(store)
    }  # the same fold as the inbox's
    rows, total = worklist.query(store, worklist.View(), escalated)
    assert total == COUNT and len(rows) == worklist.PAGE_SIZE
    states = [r.sla_state for r in rows]
    assert states[: states.count("breached")] == ["breached"] * states.count("breached")
    breached = [r for r in rows if r.sla_state == "breached"]
    facts = worklist.task_facts(store, [r.pathway_id for r in breached])

    def deadline(row: worklist.Row) -> datetime:  # the earliest of due and accept-by
        assert row.next_due is not None
        accept_by = facts[row.pathway_id][1]
        return row.next_due if accept_by is None else min(row.next_due, accept_by)

    assert [deadline(r) for r in breached] == sorted(deadline(r) for r in breached)
    counts = worklist.counts(store, escalated)
    assert (counts.open, counts.breached, counts.at_risk, counts.escalations) == (40, 4, 8, 4)
    for queue, expected in (("breached", 4), ("at-risk", 8), ("escalated", 4), ("finished", 0)):
        assert worklist.query(store, worklist.View(queue=queue), escalated)[1] == expected, queue
    _, found = worklist.query(store, worklist.View(q="REVIEW"), escalated)
    assert 0 < found < COUNT
    _, by_provider = worklist.query(store, worklist.View(provider="gp-north"), escalated)
    assert by_provider == COUNT // 4
    last = worklist.View(page=2)
    assert len(worklist.query(store, last, escalated)[0]) == COUNT - worklist.PAGE_SIZE


def test_names_accept_by_and_the_live_feed(store: EventStore) -> None:
    ids = [f"pw-{i:016x}" for i in range(3)]
    facts = worklist.task_facts(store, ids)
    assert [facts[i][0] for i in ids] == ["Patient 0", "Patient 1", "Patient 2"]
    assert all(isinstance(facts[i][1], datetime) for i in ids)
    since = datetime.now(UTC) - timedelta(days=30)
    assert len(worklist.changed_since(store, since)) == COUNT
    assert worklist.changed_since(store, datetime.now(UTC) + timedelta(minutes=1)) == []
    options = worklist.options(store)
    assert "hip-replacement-d2a" in options["definition"] and "gp-north" in options["provider"]


KEY = PatientIndex.from_secret(b"test installation secret")


def _one_handover(store: EventStore, pathway_id: str, *, name: str, nhs_number: str,
                  status: str, due_in: timedelta, accept_in: timedelta | None,
                  terms: bool = True) -> None:
    """A running pathway with one open handover, its Task rendered as the engine does (the
    accept-by extension only while it waits for acceptance); patient terms as the worker
    writes them."""
    now = datetime.now(UTC)
    task_id = f"{pathway_id}.triage.1"
    restriction: dict[str, Any] = {"period": {"end": (now + due_in).isoformat()}}
    if accept_in is not None:
        restriction["extension"] = [{"url": "urn:pathways:extension:accept-by",
                                     "valueDateTime": (now + accept_in).isoformat()}]
    task = {"resourceType": "Task", "id": task_id, "status": status,
            "for": {"display": name, "identifier": {
                "system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number}},
            "restriction": restriction}
    batch = RecordBatch(
        tasks=[TaskVersion(task_id=task_id, version=1, task=task)],
        events=[PathwayEvent(event_id=f"{pathway_id}:1", pathway_id=pathway_id,
                             definition_id="gaps", definition_version=1, seq=1,
                             kind=EventKind.PATHWAY_STARTED, at=now)],
        handovers=[HandoverRow(
            task_id=task_id, pathway_id=pathway_id, definition_id="gaps",
            handover_id="triage.1", step_id="triage", occurrence=1, provider_id="clinic",
            status=status, business_status="on-track", version=1, ready_at=now,
            complete_by=now + due_in, updated_at=now)],
        pathway=PathwayRow(
            pathway_id=pathway_id, definition_id="gaps", definition_version=1,
            lead_provider="lead", status="active", sla_state="on-track", open_steps=["triage"],
            open_providers=["clinic"], open_step_titles=["Triage"], started_at=now,
            updated_at=now),
    )
    store.record(batch, patient_terms=KEY.terms(name, nhs_number) if terms else ())


def test_urgency_puts_an_accept_by_before_a_later_due_time(store: EventStore) -> None:
    """Not yet accepted, due in 10 h but to be accepted within 1 h: more urgent than a handover
    already accepted and due in 5 h (on main it sorted by the due time alone, after it)."""
    _one_handover(store, "pw-accept-soon", name="A", nhs_number="9434765919",
                  status="requested", due_in=timedelta(hours=10), accept_in=timedelta(hours=1))
    _one_handover(store, "pw-due-sooner", name="B", nhs_number="9434765919",
                  status="accepted", due_in=timedelta(hours=5), accept_in=None)
    _one_handover(store, "pw-accept-late", name="C", nhs_number="9434765919",
                  status="requested", due_in=timedelta(hours=7),
                  accept_in=timedelta(hours=9))  # accept-by after the due time: due counts
    rows, _ = worklist.query(store, worklist.View(definition="gaps"), {})
    assert [r.pathway_id for r in rows] == ["pw-accept-soon", "pw-due-sooner", "pw-accept-late"]
    by_due, _ = worklist.query(store, worklist.View(definition="gaps", sort="due"), {})
    assert [r.pathway_id for r in by_due][0] == "pw-due-sooner"  # "Next due" stays the due


def _search(store: EventStore, text: str) -> list[str]:
    patient = worklist.PatientSearch(terms=tuple(KEY.query(text)))
    rows, _ = worklist.query(store, worklist.View(q=text), {}, patient=patient)
    return sorted(r.pathway_id for r in rows)


def test_search_finds_patients_by_name_or_nhs_number_through_the_blind_index(
    store: EventStore,
) -> None:
    _one_handover(store, "pw-00a1", name="Jane Élise Smith-Jones", nhs_number="943 476 5919",
                  status="requested", due_in=timedelta(hours=3), accept_in=timedelta(hours=1))
    _one_handover(store, "pw-00b2", name="John Smythe", nhs_number="4010232137",
                  status="accepted", due_in=timedelta(hours=3), accept_in=None)
    assert _search(store, "smith") == ["pw-00a1"]
    assert _search(store, "SMITH elise") == ["pw-00a1"]  # every word, accents and case folded
    assert _search(store, "jones") == ["pw-00a1"]
    assert _search(store, "943-476-5919") == ["pw-00a1"]
    assert _search(store, "4010232137") == ["pw-00b2"]
    assert _search(store, "smi") == []  # whole words only
    assert _search(store, "smith john") == []
    assert _search(store, "Triage") == ["pw-00a1", "pw-00b2"]  # step titles still match
    with store.engine.connect() as conn:
        stored = [row[0] for row in conn.execute(select(patient_index.c.term))]
    assert stored and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in stored)
    assert not {"smith", "jane", "9434765919"} & set(stored)
    other_key = PatientIndex.from_secret(b"another installation")
    assert not set(other_key.query("smith")) & set(stored)  # the key is what makes a match


def test_the_search_key_is_never_in_a_repr_or_the_database(store: EventStore) -> None:
    assert "test installation" not in repr(KEY) and KEY.key.hex() not in repr(KEY)
    _one_handover(store, "pw-00d4", name="Kay", nhs_number="9434765919", status="requested",
                  due_in=timedelta(hours=3), accept_in=timedelta(hours=1))
    with store.engine.connect() as conn:
        terms = " ".join(row[0] for row in conn.execute(select(patient_index.c.term)))
    assert KEY.key.hex()[:16] not in terms


def test_a_store_from_before_the_index_gets_accept_by_and_patients_indexed(
    store: EventStore,
) -> None:
    """Upgrading: v6 fills accept-by from the stored Tasks; the worker's catch-up indexes the
    patients of pathways recorded without terms."""
    _one_handover(store, "pw-00c3", name="Olive Oldfield", nhs_number="9434765919",
                  status="requested", due_in=timedelta(hours=10), accept_in=timedelta(hours=1),
                  terms=False)
    with store.write() as conn:
        conn.execute(handover_rows.update().values(accept_by=None))
        conn.exec_driver_sql("DELETE FROM schema_version WHERE version >= 8")
    store.migrate()
    with store.engine.connect() as conn:
        accept_by = conn.execute(select(handover_rows.c.accept_by).where(
            handover_rows.c.pathway_id == "pw-00c3")).scalar_one()
    assert accept_by is not None
    assert _search(store, "oldfield") == []
    settings = Settings(secret_key="test installation secret", data_dir=Path("/nonexistent"))
    catch_up_read_models(store, settings, threading.Event())
    assert _search(store, "oldfield") == ["pw-00c3"]


def test_a_pathway_closed_outside_the_engine_cancels_its_open_handovers(
    store: EventStore,
) -> None:
    """The reconciler's write on both databases (tests/console/test_worklist_gaps.py runs it
    after a real terminate): each open handover is cancelled with the reason, in its row, its
    Task (new version, no accept-by) and the event log; the pathway's event comes last."""
    _one_handover(store, "pw-00e5", name="Ter Minated", nhs_number="9434765919",
                  status="requested", due_in=timedelta(hours=3), accept_in=timedelta(hours=1))
    closed_at = datetime.now(UTC)
    assert store.record_closed_outside("pw-00e5", EventKind.PATHWAY_FAILED, closed_at,
                                       {"temporal_status": "failed"})
    [(row, task)] = [found for found in store.search_task_resources(
        "clinic", None, [], 10, 0)[0] if found[0].pathway_id == "pw-00e5"]
    assert (row.status, row.version) == ("cancelled", 2) and row.updated_at >= closed_at
    assert task is not None and task["status"] == "cancelled"
    assert task["statusReason"] == {"text": "pathway failed in Temporal"}
    assert task["meta"]["versionId"] == "2" and "extension" not in task["restriction"]
    assert store.task_at(row.task_id, 2) == task
    events = store.events("pw-00e5")
    assert [e.kind for e in events[-2:]] == [EventKind.CANCELLED, EventKind.PATHWAY_FAILED]
    assert events[-2].handover_id == "triage.1" and events[-2].detail["reason"] == (
        "pathway failed in Temporal")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    rows, _ = worklist.query(store, worklist.View(queue="finished", q="pw-00e5"), {})
    assert [(r.pathway_id, r.status) for r in rows] == [("pw-00e5", "failed")]
    assert not store.record_closed_outside("pw-00e5", EventKind.PATHWAY_FAILED, closed_at, {})
