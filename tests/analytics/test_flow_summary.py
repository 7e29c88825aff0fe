"""The flow summary stays right as events arrive: incremental folds, concurrent folds (SQLite and
PostgreSQL), and a report that sees the new events."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from activities.analytics import flow_report
from activities.flow_summary import refresh
from activities.flow_tables import flow_rows, summary_rows
from activities.store import EventStore
from pathways.events import EventKind, HandoverRow, PathwayEvent, PathwayRow, RecordBatch
from tests.analytics.eventlog import DEFINITION, NOW, SINCE, UNTIL, H, at, write_log

HANDOVERS_WITH_EVENTS = 7  # P1 a, b; P2 a, b; P3 a; P4 a; P5 a


def rows(store: EventStore, table: object) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def complete_p2_follow_up(store: EventStore) -> None:
    """P2's open follow-up completes at 210 h (C), 13.5 h after it became ready."""
    event = PathwayEvent(
        event_id="pw-2:12", pathway_id="pw-2", definition_id=DEFINITION, definition_version=1,
        seq=12, kind=EventKind.COMPLETED, at=at(210), handover_id="b.1", step_id="gp-follow-up",
        provider_id="C")
    handover = HandoverRow(
        task_id="pw-2.b.1", pathway_id="pw-2", definition_id=DEFINITION, handover_id="b.1",
        step_id="gp-follow-up", occurrence=1, provider_id="C", status="completed",
        business_status="breached", version=2, ready_at=at(196.5), complete_by=at(204.5),
        updated_at=at(210))
    pathway = PathwayRow(
        pathway_id="pw-2", definition_id=DEFINITION, definition_version=1, lead_provider="lead",
        status="active", sla_state="breached", open_steps=[], open_providers=[],
        open_step_titles=[], started_at=at(192), updated_at=at(210))
    store.record(RecordBatch(events=[event], handovers=[handover], pathway=pathway))


def test_new_events_are_folded_before_the_next_report(store: EventStore) -> None:
    before = flow_report(store, DEFINITION, since=SINCE, until=UNTIL, now=NOW)
    assert before.overall.completed == 3
    assert refresh(store) == 0  # nothing new: no write
    complete_p2_follow_up(store)
    after = flow_report(store, DEFINITION, since=SINCE, until=UNTIL, now=NOW)
    assert after.overall.completed == 4 and after.overall.open == 1
    follow_up = next(m for m in after.steps if m.key == "gp-follow-up")
    assert follow_up.lead.max == pytest.approx(13.5 * H, abs=0.01)
    assert rows(store, summary_rows) == HANDOVERS_WITH_EVENTS


def test_concurrent_folds_write_each_handover_once(store: EventStore) -> None:
    errors: list[BaseException] = []

    def fold() -> None:
        try:
            refresh(store)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=fold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert rows(store, summary_rows) == HANDOVERS_WITH_EVENTS
    assert rows(store, flow_rows) == HANDOVERS_WITH_EVENTS + 2  # P1 b and P2 b had B, then C


def test_a_chunked_fold_gives_the_same_report_as_one_fold(store: EventStore) -> None:
    """The worker's catch-up folds a large store a few pathways per transaction: the report
    it leaves is the report of a fold in one go."""
    from activities.analytics import CACHE
    from activities.flow_summary import catch_up

    assert catch_up(store, threading.Event(), chunk=2) == 5  # pw-1 .. pw-5, three chunks
    CACHE.clear()
    chunked = flow_report(store, DEFINITION, since=SINCE, until=UNTIL, now=NOW)
    with store.write() as conn:
        for table in (flow_rows, summary_rows):
            conn.execute(table.delete())
        conn.exec_driver_sql("DELETE FROM flow_pathways")
    CACHE.clear()
    whole = flow_report(store, DEFINITION, since=SINCE, until=UNTIL, now=NOW)
    assert chunked.model_dump(exclude={"generated_at"}) == whole.model_dump(
        exclude={"generated_at"})
    assert rows(store, summary_rows) == HANDOVERS_WITH_EVENTS


def test_a_repeated_report_is_served_until_an_event_arrives(store: EventStore) -> None:
    from activities.analytics import CACHE

    CACHE.clear()
    first = flow_report(store, DEFINITION, since=SINCE, until=UNTIL, now=NOW)
    again = flow_report(store, DEFINITION, since=SINCE, until=UNTIL, now=NOW)
    assert again.model_dump(exclude={"generated_at"}) == first.model_dump(
        exclude={"generated_at"})
    complete_p2_follow_up(store)  # the log moves on: the cached report is not served
    after = flow_report(store, DEFINITION, since=SINCE, until=UNTIL, now=NOW)
    assert (first.overall.completed, after.overall.completed) == (3, 4)


def test_an_existing_v4_summary_is_remade_in_report_order(tmp_path: Path) -> None:
    """Upgrading a store whose summary was made by schema v4 (a rowid table with other keys):
    v5 makes the tables again and the next report folds the log into them."""
    from sqlalchemy import inspect

    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    store.migrate()
    write_log(store)
    flow_report(store, DEFINITION, since=SINCE, until=UNTIL, now=NOW)
    with store.write() as conn:  # back to v4's shape: the same columns, no primary key
        conn.exec_driver_sql("DROP TABLE flow_summary")
        conn.exec_driver_sql("CREATE TABLE flow_summary (pathway_id VARCHAR)")
        conn.exec_driver_sql("DELETE FROM schema_version WHERE version >= 7")
    assert store.migrate() >= 5
    with store.engine.connect() as conn:
        assert inspect(conn).get_pk_constraint("flow_summary")["constrained_columns"][:3] == [
            "definition_id", "step_id", "provider_id"]
    report = flow_report(store, DEFINITION, since=SINCE, until=UNTIL, now=NOW)
    assert report.overall.completed == 3
    assert rows(store, summary_rows) == HANDOVERS_WITH_EVENTS
    store.close()
