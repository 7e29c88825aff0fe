"""The event store on a real SQLite file and a real PostgreSQL server (same tests for both)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect

from activities.store import MIGRATIONS, EventStore
from pathways.events import (
    EventKind,
    HandoverRow,
    PathwayEvent,
    PathwayRow,
    RecordBatch,
    TaskVersion,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'pathways.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    event_store = EventStore(url)
    event_store.migrate()
    yield event_store
    event_store.close()


def event(
    pathway_id: str, seq: int, at: datetime, kind: EventKind = EventKind.NOTE
) -> PathwayEvent:
    return PathwayEvent(
        event_id=f"{pathway_id}:{seq}", pathway_id=pathway_id, definition_id="hip",
        definition_version=1, seq=seq, kind=kind, at=at, handover_id="gp-review.1",
        step_id="gp-review", provider_id="gp-1", actor="system",
        detail={"reason": "test", "level": 2},
    )


def handover(
    pathway_id: str, step: str = "gp-review", provider: str = "gp-1", status: str = "requested",
    version: int = 1, updated_at: datetime = T0,
) -> HandoverRow:
    return HandoverRow(
        task_id=f"{pathway_id}.{step}.1", pathway_id=pathway_id, definition_id="hip",
        handover_id=f"{step}.1", step_id=step, occurrence=1, provider_id=provider, status=status,
        business_status="on-track", version=version, ready_at=T0,
        complete_by=T0 + timedelta(days=1), updated_at=updated_at,
    )


def pathway(
    pathway_id: str, updated_at: datetime = T0, definition_id: str = "hip", status: str = "active",
    sla_state: str = "on-track", steps: tuple[str, ...] = ("gp-review",),
    providers: tuple[str, ...] = ("gp-1",), titles: tuple[str, ...] = ("GP review",),
    patient_key: str | None = None,
) -> PathwayRow:
    return PathwayRow(
        pathway_id=pathway_id, definition_id=definition_id, definition_version=1,
        lead_provider="lead-1", status=status, sla_state=sla_state, open_steps=list(steps),
        open_providers=list(providers), open_step_titles=list(titles), patient_key=patient_key,
        started_at=T0, updated_at=updated_at,
    )


def test_migrate_twice_is_a_no_op(store: EventStore) -> None:
    latest = MIGRATIONS[-1][0]
    store.record(RecordBatch(events=[event("pw-1", 1, T0)], pathway=pathway("pw-1")))
    assert store.migrate() == latest
    assert store.schema_version() == latest
    assert len(store.events("pw-1")) == 1
    tables = set(inspect(store.engine).get_table_names())
    assert {"events", "handovers", "pathways", "pathway_open", "schema_version"} <= tables


def test_concurrent_migrations_on_a_fresh_database_agree(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Worker and API may deploy at once: all migrate, none fails, the schema is applied once."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    for target in (url, request.getfixturevalue("postgres_database")):
        stores = [EventStore(target) for _ in range(3)]
        with ThreadPoolExecutor(max_workers=3) as pool:
            versions = list(pool.map(EventStore.migrate, stores))
        assert versions == [MIGRATIONS[-1][0]] * 3
        with stores[0].engine.connect() as conn:
            applied = conn.exec_driver_sql("SELECT count(*) FROM schema_version").scalar()
            assert applied == len(MIGRATIONS)
        for each in stores:
            each.close()


def test_a_version_1_database_gains_the_event_kind_index(store: EventStore) -> None:
    """A database deployed before v2 (no kind index) is brought up to date by migrate()."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_events_kind_pathway")
        conn.exec_driver_sql("DELETE FROM schema_version WHERE version > 1")
    assert store.schema_version() == 1
    assert store.migrate() == MIGRATIONS[-1][0]
    indexes = {i["name"] for i in inspect(store.engine).get_indexes("events")}
    assert "ix_events_kind_pathway" in indexes


def test_fresh_database_reports_version_zero(tmp_path: Path) -> None:
    empty = EventStore(f"sqlite:///{tmp_path / 'empty.db'}")
    assert empty.schema_version() == 0
    assert empty.migrate() == MIGRATIONS[-1][0]
    empty.close()


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported event store database 'mysql'"):
        EventStore("mysql://user@localhost/db")


def test_record_is_idempotent(store: EventStore) -> None:
    batch = RecordBatch(
        events=[event("pw-1", 1, T0), event("pw-1", 2, T0 + timedelta(minutes=1))],
        handovers=[handover("pw-1")],
        pathway=pathway("pw-1"),
    )
    store.record(batch)
    store.record(batch)
    assert [e.event_id for e in store.events("pw-1")] == ["pw-1:1", "pw-1:2"]
    assert store.search_tasks("gp-1", None, None, 10, 0)[1] == 1
    assert store.list_pathways()[1] == 1


def test_events_round_trip_exactly(store: EventStore) -> None:
    sent = event("pw-1", 1, T0, EventKind.ESCALATED).model_copy(update={"actor": "c:" + "x" * 400})
    store.record(RecordBatch(events=[sent], pathway=pathway("pw-1")))
    assert store.events("pw-1") == [sent]


def test_handover_versions_never_go_backwards(store: EventStore) -> None:
    store.record(RecordBatch(handovers=[handover("pw-1", status="accepted", version=3)],
                             pathway=pathway("pw-1")))
    store.record(RecordBatch(handovers=[handover("pw-1", status="requested", version=2)],
                             pathway=pathway("pw-1")))
    assert store.get_task_row("pw-1.gp-review.1").status == "accepted"
    store.record(RecordBatch(handovers=[handover("pw-1", status="completed", version=4)],
                             pathway=pathway("pw-1")))
    assert store.get_task_row("pw-1.gp-review.1").version == 4


def test_pathway_row_never_goes_backwards(store: EventStore) -> None:
    later = T0 + timedelta(hours=1)
    store.record(RecordBatch(pathway=pathway("pw-1", updated_at=later, steps=("therapy",))))
    store.record(RecordBatch(pathway=pathway("pw-1", updated_at=T0, steps=("gp-review",))))
    rows, _ = store.list_pathways()
    assert rows[0].open_steps == ["therapy"]
    assert store.list_pathways(open_step="gp-review")[1] == 0
    assert store.list_pathways(open_step="therapy")[1] == 1


def test_a_batch_with_a_naive_datetime_changes_nothing(store: EventStore) -> None:
    naive = datetime(2026, 3, 1, 9, 0)
    good = event("pw-1", 1, T0)
    bad = RecordBatch(events=[good, event("pw-1", 2, naive)], pathway=pathway("pw-1"))
    with pytest.raises(ValueError, match="timezone-aware"):
        store.record(bad)
    assert store.events("pw-1") == []
    assert store.list_pathways()[1] == 0


def test_datetimes_round_trip_as_utc(store: EventStore) -> None:
    plus_five = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2026, 3, 1, 14, 30, 0, 123456, tzinfo=plus_five)
    store.record(RecordBatch(events=[event("pw-1", 1, local)],
                             handovers=[handover("pw-1", updated_at=local)],
                             pathway=pathway("pw-1", updated_at=local)))
    stored = store.events("pw-1")[0].at
    assert stored == local and stored.utcoffset() == timedelta(0)
    assert stored == datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
    row = store.get_task_row("pw-1.gp-review.1")
    assert row.updated_at == local and row.updated_at.tzinfo is not None
    assert store.list_pathways()[0][0].updated_at == local


def test_search_tasks_filters_pages_and_orders(store: EventStore) -> None:
    for n in range(5):
        store.record(RecordBatch(
            handovers=[handover(f"pw-{n}", status="completed" if n == 2 else "requested",
                                updated_at=T0 + timedelta(minutes=10 - n))],
            pathway=pathway(f"pw-{n}"),
        ))
    other_provider = handover("pw-9", provider="gp-2")
    store.record(RecordBatch(handovers=[other_provider], pathway=pathway("pw-9")))

    rows, total = store.search_tasks("gp-1", None, None, 2, 0)
    assert total == 5
    assert [r.pathway_id for r in rows] == ["pw-4", "pw-3"]
    rows, _ = store.search_tasks("gp-1", None, None, 2, 4)
    assert [r.pathway_id for r in rows] == ["pw-0"]
    rows, total = store.search_tasks("gp-1", ["completed"], None, 10, 0)
    assert (total, [r.pathway_id for r in rows]) == (1, ["pw-2"])
    rows, total = store.search_tasks("gp-1", None, T0 + timedelta(minutes=8), 10, 0)
    assert (total, [r.pathway_id for r in rows]) == (2, ["pw-1", "pw-0"])
    assert store.search_tasks("gp-2", None, None, 10, 0)[1] == 1
    assert store.search_tasks("nobody", None, None, 10, 0) == ([], 0)


def test_search_tasks_ties_on_time_order_by_task_id(store: EventStore) -> None:
    rows = [handover("pw-1", step=s) for s in ("zeta", "alpha", "mid")]
    store.record(RecordBatch(handovers=rows, pathway=pathway("pw-1")))
    found, _ = store.search_tasks("gp-1", None, None, 10, 0)
    assert [r.step_id for r in found] == ["alpha", "mid", "zeta"]


def test_bad_paging_is_refused(store: EventStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.search_tasks("gp-1", None, None, 0, 0)
    with pytest.raises(ValueError, match="offset"):
        store.list_pathways(offset=-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.search_tasks("gp-1", None, datetime(2026, 1, 1), 10, 0)


def test_get_task_row_unknown_is_none(store: EventStore) -> None:
    assert store.get_task_row("pw-x.gp-review.1") is None


def test_list_pathways_filters_each_way(store: EventStore) -> None:
    rows = [
        pathway("pw-a", T0 + timedelta(minutes=1), sla_state="breached", patient_key="k1",
                steps=("gp-review", "physio"), providers=("gp-1", "physio-1"),
                titles=("GP review", "Home physiotherapy")),
        pathway("pw-b", T0 + timedelta(minutes=2), definition_id="copd", sla_state="at-risk",
                steps=("pulmonary-rehab",), providers=("rehab-1",),
                titles=("Pulmonary rehab_50%",)),
        pathway("pw-c", T0 + timedelta(minutes=3), status="completed", steps=(), providers=(),
                titles=()),
    ]
    for row in rows:
        store.record(RecordBatch(pathway=row))

    def ids(**filters: object) -> list[str]:
        found, total = store.list_pathways(**filters)
        assert total == len(found)
        return [r.pathway_id for r in found]

    assert ids() == ["pw-c", "pw-b", "pw-a"]
    assert ids(definition_id="copd") == ["pw-b"]
    assert ids(sla_state="at-risk") == ["pw-b"]
    assert ids(status="completed") == ["pw-c"]
    assert ids(open_provider="physio-1") == ["pw-a"]
    assert ids(open_step="gp-review") == ["pw-a"]
    assert ids(breached=True) == ["pw-a"]
    assert ids(breached=False) == ["pw-c", "pw-b"]
    assert ids(step_title_contains="PHYSIO") == ["pw-a"]
    assert ids(step_title_contains="_50%") == ["pw-b"]
    assert ids(step_title_contains="b_5") == ["pw-b"]
    assert ids(step_title_contains="%") == ["pw-b"]
    assert ids(patient_key="k1") == ["pw-a"]
    assert ids(open_provider="gp-1", sla_state="on-track") == []
    page, total = store.list_pathways(limit=1, offset=1)
    assert ([r.pathway_id for r in page], total) == (["pw-b"], 3)
    assert page[0].open_step_titles == ["Pulmonary rehab_50%"]


def test_events_in_seq_order_and_event_log_in_case_order(store: EventStore) -> None:
    store.record(RecordBatch(events=[event("pw-2", 1, T0 + timedelta(minutes=1))],
                             pathway=pathway("pw-2")))
    store.record(RecordBatch(events=[event("pw-1", 3, T0 + timedelta(minutes=5)),
                                     event("pw-1", 1, T0), event("pw-1", 2, T0)],
                             pathway=pathway("pw-1")))
    assert [e.seq for e in store.events("pw-1")] == [1, 2, 3]
    log = store.event_log()
    assert [e.event_id for e in log] == ["pw-1:1", "pw-1:2", "pw-1:3", "pw-2:1"]
    since = store.event_log(since=T0 + timedelta(minutes=1))
    assert [e.event_id for e in since] == ["pw-1:3", "pw-2:1"]
    assert [e.event_id for e in store.event_log(limit=2)] == ["pw-1:1", "pw-1:2"]


def test_concurrent_writers_keep_the_newest_row(store: EventStore) -> None:
    """The worker records from a thread pool: parallel, reordered batches must all land."""
    def write(n: int) -> None:
        at = T0 + timedelta(minutes=n)
        store.record(RecordBatch(
            events=[event("pw-1", n, at)],
            handovers=[handover("pw-1", version=n, updated_at=at)],
            pathway=pathway("pw-1", updated_at=at, steps=(f"step-{n}",)),
        ))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, [n for n in range(1, 41) if n != 25] + [25]))
    assert [e.seq for e in store.events("pw-1")] == list(range(1, 41))
    assert store.get_task_row("pw-1.gp-review.1").version == 40
    assert store.list_pathways(open_step="step-40")[1] == 1
    assert store.list_pathways()[0][0].open_steps == ["step-40"]


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    sqlite_store = EventStore(f"sqlite:///{tmp_path / 'wal.db'}")
    with sqlite_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    sqlite_store.close()


def escalation_event(pathway_id: str, seq: int, kind: EventKind, escalation_id: int) -> PathwayEvent:
    detail: dict[str, object] = {"escalation_id": escalation_id}
    if kind is EventKind.ESCALATED:
        detail |= {"level": "alert-coordinator", "reason": "no alternate provider left"}
    return event(pathway_id, seq, T0 + timedelta(minutes=seq), kind).model_copy(
        update={"detail": detail}
    )


def test_escalation_events_of_running_pathways_only_in_order(store: EventStore) -> None:
    running = [
        escalation_event("pw-run", 2, EventKind.ESCALATED, 1),
        event("pw-run", 3, T0 + timedelta(minutes=3), EventKind.ACCEPTED),
        escalation_event("pw-run", 4, EventKind.ESCALATION_ACKNOWLEDGED, 1),
    ]
    store.record(RecordBatch(events=running, pathway=pathway("pw-run")))
    done = [escalation_event("pw-done", 2, EventKind.ESCALATED, 1)]
    store.record(RecordBatch(events=done, pathway=pathway("pw-done", status="completed")))

    got = store.escalation_events(["active", "on-hold"])
    assert [(e.pathway_id, e.seq, e.kind) for e in got] == [
        ("pw-run", 2, EventKind.ESCALATED),
        ("pw-run", 4, EventKind.ESCALATION_ACKNOWLEDGED),
    ]
    assert got[0].detail["level"] == "alert-coordinator"


def test_a_version_2_database_gains_task_bodies_and_keeps_its_rows(store: EventStore) -> None:
    """A database deployed before v3 (no rendered Tasks) is brought up to date by migrate()."""
    store.record(RecordBatch(handovers=[handover("pw-1")], pathway=pathway("pw-1")))
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE task_versions")
        conn.exec_driver_sql("ALTER TABLE handovers DROP COLUMN task")
        conn.exec_driver_sql("DELETE FROM schema_version WHERE version > 2")
    assert store.schema_version() == 2
    assert store.migrate() == MIGRATIONS[-1][0]
    assert "task" in {c["name"] for c in inspect(store.engine).get_columns("handovers")}
    assert store.get_task_row("pw-1.gp-review.1") == handover("pw-1")
    assert store.latest_task("pw-1.gp-review.1") is None
    store.record(
        RecordBatch(
            handovers=[handover("pw-1", version=2)], pathway=pathway("pw-1"),
            tasks=[TaskVersion(task_id="pw-1.gp-review.1", version=2, task={"v": 2})],
        )
    )
    assert store.latest_task("pw-1.gp-review.1") == {"v": 2}


def test_each_rendered_task_version_is_kept_and_the_row_holds_the_latest(
    store: EventStore,
) -> None:
    tid = "pw-1.gp-review.1"

    def batch(version: int, *rendered: int) -> RecordBatch:
        return RecordBatch(
            handovers=[handover("pw-1", version=version)], pathway=pathway("pw-1"),
            tasks=[TaskVersion(task_id=tid, version=v, task={"v": v}) for v in rendered],
        )

    store.record(batch(1, 1))
    store.record(batch(3, 3))
    store.record(batch(1, 1))  # a retried older batch changes nothing
    assert store.latest_task(tid) == {"v": 3}
    assert [store.task_at(tid, v) for v in (1, 2, 3, 4)] == [{"v": 1}, {"v": 1}, {"v": 3}, {"v": 3}]
    assert store.task_at(tid, 0) is None
    assert store.search_tasks("gp-1", None, None, 10, 0)[0][0].version == 3
