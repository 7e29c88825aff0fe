"""No effect is ever lost: webhooks and event-store writes never block the SLA loop, survive
continue-as-new and a Temporal cancellation, and an event-store outage only delays the log."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.pathway_activities import StoreStatus
from activities.store import EventStore
from pathways.commands import AddNote
from pathways.demo import DEMO_PATIENTS
from pathways.events import EventKind
from pathways.model import PathwayDefinition
from pathways.settings import Settings
from pathways.state import TaskStatus
from tests.conftest import CONVERTER, make_settings
from tests.fixtures import postgres as pg
from tests.fixtures.provider_system import ProviderSystem, Received
from tests.workflows.support import TWO_DAY, provider, start, state_of, wait_until
from worker.health import serve_health
from worker.main import metrics_runtime, running_worker
from workflows.client import connect, new_pathway_id
from workflows.pathway import PathwayInput, PathwayWorkflow


def fast_ladder(webhook_base: str | None = None) -> PathwayDefinition:
    """TWO_DAY with seconds-long SLAs: a reminder 3 s after dispatch, an alert at 6 s."""
    data = TWO_DAY.model_dump(mode="json")
    data["id"] = "fast-ladder"
    data["escalation"] = [
        {"at": "-PT3S", "action": "remind-provider"},
        {"at": "PT0S", "action": "alert-coordinator"},
    ]
    for step in data["steps"]:
        step["sla"] = {"accept_within": "PT4S", "complete_within": "PT6S"}
    if webhook_base:
        for role in data["roles"]:
            for entry in role["providers"]:
                entry["webhook"] = f"{webhook_base}/{entry['id']}"
    return PathwayDefinition.model_validate(data)


class Receiver:
    """A provider webhook endpoint on a fixed port that can be down, then come up."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.received: list[Received] = []
        self._server: ThreadingHTTPServer | None = None

    def up(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(Received(self.path, dict(self.headers.items()), body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def keys(self) -> list[str]:
        return [r.headers["Idempotency-Key"] for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.down()


async def continued_input(client: Client, workflow_id: str, run_id: str) -> PathwayInput:
    """The input a run handed to its successor (its ContinuedAsNew event)."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    last = history.events[-1]
    attrs = last.workflow_execution_continued_as_new_event_attributes
    [decoded] = await CONVERTER.decode(attrs.input.payloads, [PathwayInput])
    assert isinstance(decoded, PathwayInput)
    return decoded


async def test_continue_as_new_carries_undelivered_webhooks_and_rungs_fire_meanwhile(
    dev_env: WorkflowEnvironment, worker: object, settings: Settings, receiver: Receiver
) -> None:
    """Provider system down: the run continues as new without waiting, carrying the
    undelivered notifications; rungs keep firing; once up, every notification arrives
    exactly once under its idempotency key."""
    started = await dev_env.client.start_workflow(
        PathwayWorkflow.run,
        PathwayInput(
            definition=fast_ladder(receiver.url), patient=DEMO_PATIENTS[3],
            search_attributes=False, max_history_events=40,
        ),
        id=new_pathway_id(),
        task_queue=settings.task_queue,
    )
    first_run = started.result_run_id
    assert first_run is not None
    handle = dev_env.client.get_workflow_handle_for(PathwayWorkflow.run, started.id)
    for n in range(12):
        await handle.execute_update(
            PathwayWorkflow.add_note, AddNote(text=f"call {n}", actor="coordinator:amy")
        )

    async def continued() -> bool:
        return (await handle.describe()).run_id != first_run

    await wait_until(continued, timeout=20)
    carried = await continued_input(dev_env.client, started.id, first_run)
    assert [(n.provider_id, n.kind.value, n.version) for n in carried.undelivered][:1] == [
        ("nursing-north", "dispatched", 1)
    ]
    assert receiver.received == []

    async def rungs_fired() -> bool:
        state = await state_of(handle)
        return len(state.handovers["first-visit.1"].fired_rungs) >= 2

    await wait_until(rungs_fired, timeout=30)
    assert receiver.received == []
    receiver.up()
    expected = {
        f"{handle.id}.first-visit.1.v1.dispatched",
    }

    def delivered() -> bool:
        keys = set(receiver.keys())
        return expected <= keys and any(k.endswith(".reminder") for k in keys)

    await wait_until(delivered, timeout=90, interval=0.5)
    await handle.terminate("test over")
    keys = receiver.keys()
    assert len(keys) == len(set(keys)), f"a notification was delivered twice: {keys}"
    reminder = next(r for r in receiver.received if r.headers["X-Pathways-Event"] == "reminder")
    task = json.loads(reminder.body)
    assert task["owner"]["reference"] == "Organization/nursing-north"
    assert int(task["meta"]["versionId"]) <= int(
        reminder.headers["Idempotency-Key"].rsplit(".v", 1)[1].split(".")[0]
    )


async def test_cancelling_in_temporal_tells_the_providers_and_completes_the_log(
    dev_env: WorkflowEnvironment, worker: object, settings: Settings
) -> None:
    system = ProviderSystem()
    try:
        handle = await start(dev_env.client, settings, fast_ladder(system.url), DEMO_PATIENTS[0])
        store = EventStore(settings.event_store)

        def dispatched() -> bool:
            return any(r.headers.get("X-Pathways-Event") == "dispatched" for r in system.received)

        await wait_until(dispatched)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        cancels = [r for r in system.received if r.headers.get("X-Pathways-Event") == "cancelled"]
        assert [r.path for r in cancels] == ["/nursing-north"]
        assert json.loads(cancels[0].body)["status"] == "cancelled"
        kinds = [e.kind for e in store.events(handle.id)]
        assert kinds[-1] is EventKind.PATHWAY_CANCELLED and EventKind.CANCELLED in kinds
        cancelled = store.list_pathways(status="cancelled", limit=1000)[0]
        assert any(p.pathway_id == handle.id for p in cancelled)
    finally:
        system.close()


async def test_a_terminated_pathway_is_recorded_and_no_longer_listed_active(
    dev_env: WorkflowEnvironment, worker: object, settings: Settings
) -> None:
    from worker.reconcile import reconcile_once

    handle = await start(dev_env.client, settings, TWO_DAY, DEMO_PATIENTS[1])
    store = EventStore(settings.event_store)

    def listed_active() -> bool:
        rows = store.list_pathways(status="active", limit=1000)[0]
        return any(p.pathway_id == handle.id for p in rows)

    await wait_until(listed_active)
    await handle.terminate("stuck")
    assert (await handle.describe()).status is WorkflowExecutionStatus.TERMINATED

    async def reconciled() -> bool:
        await reconcile_once(dev_env.client, store)
        return not listed_active()

    await wait_until(reconciled, timeout=20, interval=1)
    [row] = [p for p in store.list_pathways(status="terminated", limit=1000)[0]
             if p.pathway_id == handle.id]
    assert row.ended_at is not None and row.open_steps == []
    last = store.events(handle.id)[-1]
    assert last.kind is EventKind.PATHWAY_TERMINATED
    assert last.detail["temporal_status"] == "terminated"
    assert await reconcile_once(dev_env.client, store) == 0  # idempotent


def _events_of(store: EventStore, pathway_id: str) -> list[Any]:
    try:
        return store.events(pathway_id)
    except Exception:  # the database is down
        return []


class SqliteLock:
    """Another process's write lock on the event store's SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def start(self) -> None:
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.execute("BEGIN EXCLUSIVE")

    def stop(self) -> None:
        assert self._conn is not None
        self._conn.execute("ROLLBACK")
        self._conn.close()


class PostgresServer:
    """A throwaway PostgreSQL cluster that the test really stops and starts again."""

    def __init__(self, root: Path) -> None:
        self.bin, self.root, self.port = pg._bin_dir(), root, pg._free_port()
        if os.geteuid() == 0:
            shutil.chown(root, pg.SERVER_USER)
        self.data = root / "data"
        pg._run([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                 "postgres", "-E", "UTF8", "--no-sync"])
        self.stop = self._ctl("stop")
        self.start = self._ctl("start")
        self.start()
        admin = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE pathways_outage")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/pathways_outage"

    def _ctl(self, action: str) -> Any:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        args = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w"]
        if action == "start":
            args += ["-l", str(self.root / "server.log"), "-o", options, "start"]
        else:
            args += ["-m", "fast", "stop"]
        return lambda: pg._run(args)


@pytest.mark.parametrize("database", ["sqlite-locked", "postgres-stopped"])
async def test_an_event_store_outage_neither_fails_nor_stalls_a_pathway(
    dev_env: WorkflowEnvironment, tmp_path: Path, database: str
) -> None:
    """The store goes away: Updates still answer, rungs still fire, the outage shows in the
    worker's health; when it returns every kept batch is written, in order."""
    target = dev_env.client.service_client.config.target_host
    server: PostgresServer | None = None
    port, metrics = pg._free_port(), pg._free_port()
    if database == "postgres-stopped":
        server = PostgresServer(Path(tempfile.mkdtemp(prefix="pathways-outage-")))
        settings = make_settings(tmp_path, target, task_queue=f"outage-{database}",
                                 event_store_url=server.url, health_port=port,
                                 metrics_port=metrics)
        outage: Any = server
    else:
        settings = make_settings(tmp_path, target, task_queue=f"outage-{database}",
                                 health_port=port, metrics_port=metrics)
        lock = SqliteLock(tmp_path / "pathways.db")
        outage = type("O", (), {"stop": lock.start, "start": lock.stop})()
    store = EventStore(settings.event_store)
    store.migrate()
    status = StoreStatus()
    try:
        client = await connect(settings, runtime=metrics_runtime(settings))  # as the worker does
        async with running_worker(client, settings, status), httpx.AsyncClient() as http:
            health = await serve_health(settings, client, status)

            async def healthz() -> dict[str, Any]:
                answer = await http.get(f"http://127.0.0.1:{port}/healthz")
                assert answer.status_code == 200
                return dict(answer.json())

            handle = await start(dev_env.client, settings, fast_ladder(), DEMO_PATIENTS[2])
            await wait_until(lambda: _events_of(store, handle.id))
            outage.stop()
            try:
                visit = (await state_of(handle)).handovers["first-visit.1"]
                began = time.monotonic()
                await provider(handle, visit, TaskStatus.ACCEPTED)
                assert time.monotonic() - began < 15

                async def rung_fired() -> bool:
                    return bool((await state_of(handle)).escalations)

                await wait_until(rung_fired, timeout=30)
                await wait_until(lambda: status.detail()["event_store"] == "unavailable")
                body = await healthz()
                exported = (await http.get(f"http://127.0.0.1:{metrics}/metrics")).text
                assert "pathways_event_store_failures_total" in exported
                assert body["status"] == "degraded" and body["event_store"] == "unavailable"
            finally:
                outage.start()

            def all_written() -> bool:
                kinds = [e.kind for e in _events_of(store, handle.id)]
                return EventKind.ACCEPTED in kinds and EventKind.ESCALATED in kinds

            await wait_until(all_written, timeout=60, interval=0.5)
            seqs = [e.seq for e in store.events(handle.id)]
            assert seqs == list(range(1, len(seqs) + 1))
            await wait_until(lambda: status.detail()["event_store"] == "ok", timeout=30)
            assert (await healthz())["status"] == "ok"
            await health.shutdown()
            await handle.terminate("test over")
    finally:
        store.close()
        if server is not None:
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)


async def test_a_webhook_never_accepted_is_recorded_as_failed_and_escalated(
    dev_env: WorkflowEnvironment, worker: object, settings: Settings
) -> None:
    """A provider answering 404 for longer than the bound: the workflow records a
    notification-failed event and the coordinator gets an escalation."""
    system = ProviderSystem()
    try:
        definition = fast_ladder().model_dump(mode="json")
        for role in definition["roles"]:
            for entry in role["providers"]:
                entry["webhook"] = f"{system.url}/status/404"
        definition["steps"][0]["sla"] = {"accept_within": "PT1H", "complete_within": "PT2H"}
        bounded = settings.model_copy(update={"webhook_give_up_after": timedelta(seconds=5)})
        started = await start(
            dev_env.client, bounded, PathwayDefinition.model_validate(definition),
            DEMO_PATIENTS[0],
        )
        store = EventStore(settings.event_store)

        def failed() -> list[Any]:
            return [e for e in _events_of(store, started.id)
                    if e.kind is EventKind.NOTIFICATION_FAILED]

        [event] = await wait_until(failed, timeout=30, interval=0.5)
        assert event.provider_id == "nursing-north" and "404" in event.detail["reason"]
        state = await state_of(started)
        assert [e.handover_id for e in state.escalations] == ["first-visit.1"]
        await started.terminate("test over")
    finally:
        system.close()


async def test_each_webhook_carries_the_task_as_it_was_when_it_was_asked_for(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The worker is away while a reminder and a reassignment fall due: both fire in one
    step, yet the reminder shows the old provider's at-risk Task at the reminder's version,
    and each provider gets its notifications in order."""
    system = ProviderSystem()
    data = TWO_DAY.model_dump(mode="json")
    data["id"] = "away-ladder"
    data["escalation"] = [
        {"at": "-PT3S", "action": "remind-provider"},
        {"at": "PT0S", "action": "reassign", "clock": "accept"},
    ]
    for step, role in zip(data["steps"], data["roles"], strict=True):
        step["sla"] = {"accept_within": "PT4S", "complete_within": "PT1H"}
        for entry in role["providers"]:
            entry["webhook"] = f"{system.url}/{entry['id']}"
    data["escalation"][0]["at"] = "-PT3597S"  # 3 s after dispatch on the 1 h clock
    definition = PathwayDefinition.model_validate(data)
    target = dev_env.client.service_client.config.target_host
    settings = make_settings(tmp_path, target, task_queue="away-worker")
    EventStore(settings.event_store).migrate()
    try:
        async with running_worker(dev_env.client, settings):
            handle = await start(dev_env.client, settings, definition, DEMO_PATIENTS[1])
            await wait_until(lambda: system.received)
        await asyncio.sleep(6)  # both rungs fall due while no worker runs
        async with running_worker(dev_env.client, settings):

            def told(provider_id: str, kind: str) -> list[Received]:
                return [r for r in system.received if r.path == f"/{provider_id}"
                        and r.headers["X-Pathways-Event"] == kind]

            await wait_until(lambda: told("nursing-south", "dispatched"), timeout=30)
            await wait_until(lambda: told("nursing-north", "cancelled"), timeout=30)
            [reminder] = told("nursing-north", "reminder")
            task = json.loads(reminder.body)
            version = reminder.headers["Idempotency-Key"].rsplit(".v", 1)[1].split(".")[0]
            assert task["meta"]["versionId"] == version
            assert task["owner"]["reference"] == "Organization/nursing-north"
            assert task["businessStatus"]["coding"][0]["code"] == "at-risk"
            north = [r.headers["X-Pathways-Event"] for r in system.received
                     if r.path == "/nursing-north"]
            assert north == ["dispatched", "reminder", "cancelled"]
            await handle.terminate("test over")
    finally:
        system.close()


async def test_batches_kept_through_an_outage_are_carried_across_continue_as_new(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The store is locked while the run continues as new: the unwritten batches go with it
    and are written, in order, once the store is back."""
    target = dev_env.client.service_client.config.target_host
    settings = make_settings(tmp_path, target, task_queue="outage-continue")
    store = EventStore(settings.event_store)
    store.migrate()
    lock = SqliteLock(tmp_path / "pathways.db")
    try:
        async with running_worker(dev_env.client, settings):
            started = await dev_env.client.start_workflow(
                PathwayWorkflow.run,
                PathwayInput(definition=TWO_DAY, patient=DEMO_PATIENTS[0],
                             search_attributes=False, max_history_events=40),
                id=new_pathway_id(),
                task_queue=settings.task_queue,
            )
            first_run = started.result_run_id
            assert first_run is not None
            await wait_until(lambda: _events_of(store, started.id))
            lock.start()
            try:
                for n in range(12):
                    await started.execute_update(
                        PathwayWorkflow.add_note, AddNote(text=f"call {n}", actor="c:amy")
                    )

                async def continued() -> bool:
                    return (await started.describe()).run_id != first_run

                await wait_until(continued, timeout=60)
                carried = await continued_input(dev_env.client, started.id, first_run)
                assert len(carried.unwritten) == 1
                assert sum(e.kind is EventKind.NOTE for e in carried.unwritten[0].batch.events) > 0
            finally:
                lock.stop()

            def notes_written() -> bool:
                kinds = [e.kind for e in _events_of(store, started.id)]
                return kinds.count(EventKind.NOTE) == 12

            await wait_until(notes_written, timeout=60, interval=0.5)
            seqs = [e.seq for e in store.events(started.id)]
            assert seqs == list(range(1, len(seqs) + 1))
            await started.terminate("test over")
    finally:
        store.close()
