"""The event store (PostgreSQL, as in production) unavailable for a while mid-run, then back:
nothing lost or doubled, the event log complete, and API clients told the truth meanwhile.

The outage is the database refusing every connection and dropping the open ones
(`ALLOW_CONNECTIONS false` plus `pg_terminate_backend`), as a failover or a restart of the
database server does to the worker's, the API's and the test's own connection pools.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from tests.faults.conftest import PATHWAYS
from tests.faults.harness import Cluster, Drive, _message, check
from workflows.pathway import PathwayWorkflow

pytestmark = pytest.mark.faults

SETTLE = 120.0
OUTAGE = 8.0
HONEST_503 = ("outcome unknown", "nothing was changed", "nothing changed")
"""A 503 says either that the change may still apply (retry the same request) or that it did
not happen (Retry-After invites the retry); never a bare "error"."""


class Database:
    """One database on the test server, which can be made unavailable and available again."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.name = parsed.database
        admin = parsed.set(drivername="postgresql", database="postgres")
        self.admin = admin.render_as_string(hide_password=False)

    def _run(self, *statements: str) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def down(self) -> None:
        """Refuse new connections and drop every open one (mid-transaction or idle)."""
        self._run(
            f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()",
        )

    def up(self) -> None:
        self._run(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
def database(postgres_database: str) -> Iterator[Database]:
    db = Database(postgres_database)
    try:
        yield db
    finally:
        db.up()  # so the fixture can drop it even if the test failed mid-outage


@pytest_asyncio.fixture
async def pg_cluster(tmp_path: Path, postgres_database: str,
                     database: Database) -> AsyncIterator[Cluster]:
    running = Cluster(tmp_path / "install", event_store_url=postgres_database)
    try:
        await running.start()
        yield running
    finally:
        await running.close()


@dataclass
class Probe:
    """A coordinator and a provider reading and writing while the store is down."""

    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)

    async def run(self, drive: Drive, task_id: str, stop: asyncio.Event) -> None:
        provider = drive.provider_headers["ward"]
        calls = [
            ("GET /api/pathways", "GET", "/api/pathways", drive.coordinator, None),
            ("GET /fhir/Task/{id}", "GET", f"/fhir/Task/{task_id}", provider, None),
            ("GET /fhir/Task?owner", "GET", "/fhir/Task?status=requested", provider, None),
            # a move on a Task already completed: refused if the store answers, else 503
            ("PUT /fhir/Task/{id}", "PUT", f"/fhir/Task/{task_id}", provider,
             {"resourceType": "Task", "id": task_id, "status": "in-progress"}),
        ]
        while not stop.is_set():
            for name, method, path, headers, body in calls:
                try:
                    response = await drive.http.request(
                        method, path, json=body,
                        headers={**headers, "If-Match": "*", "Content-Type":
                                 "application/fhir+json"} if body else headers)
                except httpx.TransportError:
                    self.answers[(name, 0)] += 1
                    continue
                self.answers[(name, response.status_code)] += 1
                if response.status_code == 503:
                    self.messages[_message(response)] += 1
            await asyncio.sleep(0.3)


async def _engine_events_logged(cluster: Cluster, ids: list[str]) -> list[str]:
    """Pathways whose event log does not hold exactly the events the engine issued."""
    assert cluster.client is not None
    missing = []
    for pathway_id in ids:
        state = await cluster.client.get_workflow_handle(pathway_id).query(PathwayWorkflow.state)
        logged = cluster.store.events(pathway_id)
        if [e.seq for e in logged] != list(range(1, state.event_seq + 1)):
            missing.append(f"{pathway_id}: engine {state.event_seq}, log {len(logged)}")
    return missing


async def test_event_store_unavailable_for_a_while_then_back(
    pg_cluster: Cluster, database: Database
) -> None:
    cluster = pg_cluster
    drive = Drive(cluster, PATHWAYS)
    probe, stop = Probe(), asyncio.Event()
    try:
        await drive.start_pathways()
        drive.run_providers()
        for _ in range(300):  # a third of the handovers done
            if len(drive.traffic.completed) >= PATHWAYS:
                break
            await asyncio.sleep(0.2)
        assert drive.traffic.completed, "no handover was completed before the outage"
        done_task = next(iter(drive.traffic.completed))
        await asyncio.to_thread(database.down)
        began = time.monotonic()
        probing = asyncio.ensure_future(probe.run(drive, done_task, stop))
        # the coordinator starts more pathways during the outage, retrying the same request
        starting = asyncio.ensure_future(drive.start_pathways(more=10))
        await asyncio.sleep(OUTAGE)
        stop.set()
        await probing
        await asyncio.to_thread(database.up)
        outage = time.monotonic() - began
        await starting
        settled = await drive.wait_settled(SETTLE)
        report = await check("event-store-outage", drive, settled)
        unlogged = await _engine_events_logged(cluster, drive.ids)
        print(f"FAULTS event-store-outage: outage={outage:.1f}s probe="
              f"{dict(sorted(Counter({f'{n} {s}': c for (n, s), c in probe.answers.items()}).items()))} "
              f"unlogged={len(unlogged)} 503_messages={dict(drive.traffic.unavailable + probe.messages)}",
              flush=True)
        report.assert_clean()
        assert not unlogged, unlogged[:10]
        assert all(status < 500 or status == 503 for _, status in probe.answers), probe
        assert sum(n for (_, status), n in probe.answers.items() if status == 503) > 0, (
            "the outage should have been seen by API clients")
        for message, _ in (drive.traffic.unavailable + probe.messages).items():
            assert any(honest in message.lower() for honest in HONEST_503), message
        assert drive.traffic.without_retry_after == 0
        assert all(worker.alive for worker in cluster.workers)
        worker_log = cluster.workers[0].log.read_text(errors="replace")
        assert "event store unavailable" in worker_log, "the engine's writes never met the outage"
        assert cluster.api is not None and cluster.api.alive
    finally:
        stop.set()
        await drive.close()
