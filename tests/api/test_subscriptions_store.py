"""The subscription store on SQLite and PostgreSQL: Task versions recorded by the engine become
numbered events once each, in order, only the subscriber's own and only those its filter
matches; a batch recorded late (even long after its changes happened) is still found, and
delivered once; pruning keeps what a subscription may still look at; leases keep two workers off
one subscription; `pathways setup` creates the tables."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, inspect, select

from activities.store import MIGRATIONS, EventStore, schema_versions, store_writes
from activities.subscriptions import SubscriptionStore, TooMany
from cli.setup import migrate_database
from pathways.events import EventKind, HandoverRow, PathwayEvent, PathwayRow, RecordBatch, TaskVersion
from pathways.subscriptions import Filter, Spec, Status
from tests.conftest import make_settings
from worker.subscriptions import Delivery, Timing

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
ME, OTHER = "gp-north", "gp-south"
LEASE = timedelta(seconds=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SubscriptionStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    EventStore(url).migrate()
    made = SubscriptionStore(url)
    made.migrate()
    made.migrate()  # idempotent
    yield made
    made.close()


def record(store: SubscriptionStore, pathway: str, provider: str, version: int, status: str,
           at: datetime, events: list[PathwayEvent] | None = None) -> str:
    """What the workflow's record activity writes for one handover change."""
    task_id = f"{pathway}.discharge.1"
    task = {
        "resourceType": "Task", "id": task_id, "status": status, "intent": "order",
        "meta": {"versionId": str(version), "lastUpdated": at.isoformat().replace("+00:00", "Z")},
        "owner": {"reference": f"Organization/{provider}"},
        "code": {"coding": [{"system": "urn:pathways:step", "code": "discharge"}]},
    }
    row = HandoverRow(
        task_id=task_id, pathway_id=pathway, definition_id="d", handover_id="discharge.1",
        step_id="discharge", occurrence=1, provider_id=provider, status=status,
        business_status="on-track", version=version, ready_at=T0, complete_by=T0 + timedelta(days=1),
        updated_at=at,
    )
    path = PathwayRow(
        pathway_id=pathway, definition_id="d", definition_version=1, lead_provider="lead",
        status="active", sla_state="on-track", open_steps=["discharge"], open_providers=[provider],
        open_step_titles=["Discharge"], started_at=T0, updated_at=at,
    )
    store.store.record(RecordBatch(events=events or [], handovers=[row], pathway=path,
                                   tasks=[TaskVersion(task_id=task_id, version=version, task=task)]))
    return task_id


def spec(provider: str = ME) -> Spec:
    return Spec(provider_id=provider, endpoint="https://ehr.example.org/hook",
                filter=Filter(provider, frozenset({"requested", "accepted"})))


def test_matching_task_versions_become_numbered_events_once(store: SubscriptionStore) -> None:
    before = record(store, "pw-0", ME, 1, "requested", T0 - timedelta(minutes=5))
    sub = store.create(spec(), T0)
    assert sub.status is Status.REQUESTED and sub.events_count == 0
    mine = record(store, "pw-1", ME, 1, "requested", T0 + timedelta(seconds=1))
    record(store, "pw-1", ME, 2, "accepted", T0 + timedelta(seconds=2))
    record(store, "pw-1", ME, 3, "completed", T0 + timedelta(seconds=3))  # filtered out
    record(store, "pw-2", OTHER, 1, "requested", T0 + timedelta(seconds=1))  # not mine
    record(store, before.split(".")[0], ME, 2, "accepted", T0 + timedelta(seconds=4))

    assert store.discover(sub.id) == 3
    assert store.discover(sub.id) == 0  # a second pass numbers nothing again
    events = store.events(sub.id, 1, 100)
    assert [(e.number, e.task_id, e.version) for e in events] == [
        (1, mine, 1), (2, mine, 2), (3, before, 2),
    ]

    late = record(store, "pw-3", ME, 1, "requested", T0 + timedelta(seconds=1))  # recorded late
    assert store.discover(sub.id) == 1
    assert store.events(sub.id, 4, 4)[0].task_id == late
    assert store.current(sub.id).events_count == 4  # type: ignore[union-attr]


def test_a_task_reassigned_away_is_one_withdrawal_event(store: SubscriptionStore) -> None:
    sub = store.create(Spec(provider_id=ME, endpoint="https://ehr.example.org/hook", filter=Filter(ME)), T0)
    mine = record(store, "pw-9", ME, 1, "requested", T0 + timedelta(seconds=1))
    moved = PathwayEvent(
        event_id="pw-9:3", pathway_id="pw-9", definition_id="d", definition_version=1, seq=3,
        kind=EventKind.REASSIGNED, at=T0 + timedelta(seconds=2), handover_id="discharge.1",
        step_id="discharge", provider_id=OTHER, detail={"from": ME, "to": OTHER, "reason": "timeout"},
    )
    record(store, "pw-9", OTHER, 2, "requested", T0 + timedelta(seconds=2), [moved])
    record(store, "pw-9", OTHER, 3, "accepted", T0 + timedelta(seconds=3))
    assert store.discover(sub.id) == 2
    events = store.events(sub.id, 1, 10)
    assert [(e.task_id, e.version, e.withdrawn) for e in events] == [(mine, 1, False), (mine, 2, True)]
    assert store.discover(sub.id) == 0


def test_a_subscription_is_its_providers_alone(store: SubscriptionStore) -> None:
    sub = store.create(spec(), T0)
    assert store.get(OTHER, sub.id) is None
    assert store.replace(OTHER, sub.id, spec(OTHER), T0) is None
    assert not store.delete(OTHER, sub.id)
    assert [r.id for r in store.list_for(ME)] == [sub.id]
    for _ in range(19):
        store.create(spec(), T0)
    with pytest.raises(TooMany):
        store.create(spec(), T0)


def test_a_lease_keeps_a_second_worker_off(store: SubscriptionStore) -> None:
    sub = store.create(spec(), T0)
    assert store.claim(sub.id, "w1", T0, LEASE) is not None
    assert store.claim(sub.id, "w2", T0, LEASE) is None
    assert store.due(T0, "w2") == [] and store.due(T0, "w1") == [sub.id]
    assert store.due(T0 + LEASE * 2, "w2") == [sub.id]  # a crashed worker's lease runs out
    store.release_all("w1")
    assert store.claim(sub.id, "w2", T0, LEASE) is not None


def test_delivery_bookkeeping_survives_a_new_store(store: SubscriptionStore) -> None:
    sub = store.create(spec(), T0)
    store.set_status(sub.id, Status.ACTIVE, T0)
    store.delivered(sub.id, 2, T0)
    store.delivered(sub.id, 1, T0)  # never goes back
    store.failed(sub.id, 3, T0 + timedelta(seconds=8), "endpoint answered 503")
    again = SubscriptionStore(str(store.engine.url.render_as_string(hide_password=False)))
    now = again.current(sub.id)
    assert now is not None and now.status is Status.ACTIVE
    assert (now.delivered_through, now.attempts, now.error) == (2, 3, "endpoint answered 503")
    assert now.next_attempt_at == T0 + timedelta(seconds=8)
    again.close()


def test_a_batch_written_long_after_it_happened_is_still_one_event(store: SubscriptionStore) -> None:
    """After an event store outage the worker writes the batches it held, with the times the
    changes happened: ten minutes before the delivery loop's cursor. Still numbered, once."""
    now = datetime.now(UTC)
    sub = store.create(Spec(provider_id=ME, endpoint="https://ehr.example.org/hook",
                            filter=Filter(ME)), now - timedelta(minutes=15))
    on_time = record(store, "pw-a", ME, 1, "requested", now - timedelta(minutes=14))
    assert store.discover(sub.id) == 1  # the loop runs on: its cursor is near the present
    late = record(store, "pw-b", ME, 1, "requested", now - timedelta(minutes=10))
    record(store, "pw-b", ME, 2, "accepted", now - timedelta(minutes=9))
    assert store.discover(sub.id) == 2
    assert store.discover(sub.id) == 0
    events = store.events(sub.id, 1, 10)
    assert [(e.number, e.task_id, e.version) for e in events] == [
        (1, on_time, 1), (2, late, 1), (3, late, 2),
    ]


def writes(store: SubscriptionStore) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(store_writes.c.pathway_id).order_by(store_writes.c.id)).scalars())


def test_pruning_keeps_what_a_subscription_may_still_look_at(store: SubscriptionStore) -> None:
    now = datetime.now(UTC)
    off = store.create(Spec(provider_id=ME, endpoint="https://ehr.example.org/hook",
                            filter=Filter(ME), off=True), now)
    record(store, "pw-old", ME, 1, "requested", now)
    time.sleep(0.01)  # SQLite's clock counts milliseconds: keep the three moments apart
    sub = store.create(spec(), now)
    time.sleep(0.01)
    record(store, "pw-new", ME, 1, "requested", now)
    assert store.prune() == 0  # all within the look-back of the oldest cursor
    assert store.prune(lookback=timedelta(0)) == 1  # the off subscription holds nothing back
    assert writes(store) == ["pw-new"]
    assert store.discover(sub.id, lookback=timedelta(0)) == 1
    assert store.events(sub.id, 1, 1)[0].task_id == "pw-new.discharge.1"

    turned_on = store.replace(ME, off.id, spec(), now)  # from now on: nothing sent while off
    assert turned_on is not None and turned_on.status is Status.REQUESTED
    assert store.discover(off.id, lookback=timedelta(0)) == 0
    record(store, "pw-next", ME, 1, "requested", now)
    assert store.discover(off.id, lookback=timedelta(0)) == 1

    store.delete(ME, sub.id)
    store.delete(ME, off.id)
    assert store.prune(lookback=timedelta(0)) == 2  # no subscriptions: a new one starts now
    assert writes(store) == []


def test_changes_recorded_before_the_upgrade_are_still_found(store: SubscriptionStore) -> None:
    """A database the release before wrote (no `store_writes`): `migrate` adds it, counting the
    last hour's changes as recorded then, so the first pass after the upgrade still finds them."""
    now = datetime.now(UTC)
    sub = store.create(Spec(provider_id=ME, endpoint="https://ehr.example.org/hook",
                            filter=Filter(ME)), now - timedelta(minutes=15))
    moved = PathwayEvent(
        event_id="pw-u:2", pathway_id="pw-u", definition_id="d", definition_version=1, seq=2,
        kind=EventKind.REASSIGNED, at=now - timedelta(minutes=3), handover_id="discharge.1",
        step_id="discharge", provider_id=OTHER, detail={"from": ME, "to": OTHER},
    )
    record(store, "pw-u", ME, 1, "requested", now - timedelta(minutes=4))
    task_id = record(store, "pw-u", OTHER, 2, "requested", now - timedelta(minutes=3), [moved])
    with store.store.write() as conn:
        store_writes.drop(conn)
        conn.execute(delete(schema_versions).where(schema_versions.c.version >= 6))
    assert store.store.migrate() == MIGRATIONS[-1][0]
    assert store.discover(sub.id) == 2
    events = store.events(sub.id, 1, 10)
    assert [(e.task_id, e.version, e.withdrawn) for e in events] == [(task_id, 1, False), (task_id, 2, True)]


def test_setup_creates_every_table_delivery_needs(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path / 'fresh.db'}", request.getfixturevalue("postgres_database")):
        settings = make_settings(tmp_path, "127.0.0.1:7233", event_store_url=url, subscription_endpoints="any")
        migrate_database(settings)
        migrate_database(settings)  # idempotent
        found = EventStore(url)
        tables = set(inspect(found.engine).get_table_names())
        assert {"store_writes", "fhir_subscriptions", "fhir_subscription_events"} <= tables
        assert found.schema_version() == MIGRATIONS[-1][0]
        found.close()


class Receiver:
    """A real HTTP endpoint in a thread: answers 200 and keeps each notification's event numbers."""

    def __init__(self) -> None:
        numbers: list[int] = []
        self.numbers = numbers

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bundle = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                for p in bundle["entry"][0]["resource"]["parameter"]:
                    if p["name"] == "notification-event":
                        numbers.extend(int(q["valueString"]) for q in p["part"]
                                       if q["name"] == "event-number")
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


async def test_a_late_batch_is_delivered_exactly_once(store: SubscriptionStore, tmp_path: Path) -> None:
    """The delivery loop, running throughout: a batch written ten minutes after it happened
    reaches the endpoint once, after what was delivered before it."""
    receiver = Receiver()
    now = datetime.now(UTC)
    sub = store.create(Spec(provider_id=ME, endpoint=receiver.url, filter=Filter(ME)),
                       now - timedelta(minutes=15))
    store.set_status(sub.id, Status.ACTIVE, now)
    url = store.engine.url.render_as_string(hide_password=False)
    settings = make_settings(tmp_path, "127.0.0.1:7233", event_store_url=url, subscription_endpoints="any")
    timing = Timing(poll_seconds=0.05)

    async def until(count: int) -> None:
        for _ in range(200):
            if len(receiver.numbers) >= count:
                return
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient() as http:
        loop = Delivery(settings, SubscriptionStore(url), http, timing)
        running = asyncio.ensure_future(loop.run())
        try:
            await asyncio.to_thread(record, store, "pw-a", ME, 1, "requested", now - timedelta(minutes=14))
            await until(1)
            await asyncio.to_thread(record, store, "pw-b", ME, 1, "requested", now - timedelta(minutes=10))
            await until(2)
            await asyncio.sleep(0.5)  # a few more passes: nothing is sent again
        finally:
            loop.stop.set()
            await asyncio.wait_for(running, 10)
            loop.store.close()
            receiver.server.shutdown()
    assert receiver.numbers == [1, 2]
    done = store.current(sub.id)
    assert done is not None and (done.events_count, done.delivered_through) == (2, 2)
