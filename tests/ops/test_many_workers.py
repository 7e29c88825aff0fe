"""The deployed shape: several worker processes on one task queue, sharing a PostgreSQL event store.

One worker is stopped gracefully half-way; its pathways carry on at the others.
"""

from __future__ import annotations

import signal
import subprocess

from temporalio.testing import WorkflowEnvironment

from activities.store import EventStore
from pathways.demo import DEMO_PATIENTS
from pathways.settings import Settings
from pathways.state import PathwayStatus
from tests.ops.processes import PATHWAYS, env_for, run
from tests.workflows.support import TWO_DAY, deliver_everything, start, wait_until


def _workers(env: dict[str, str], count: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [PATHWAYS, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]


async def test_three_workers_on_postgresql_complete_pathways_through_a_graceful_stop(
    settings: Settings, dev_env: WorkflowEnvironment, postgres_database: str
) -> None:
    own = settings.model_copy(
        update={"task_queue": "many-workers", "event_store_url": postgres_database}
    )
    env = env_for(own)
    assert run("setup", env=env).returncode == 0
    workers = _workers(env, 3)
    try:
        handles = [
            await start(dev_env.client, own, TWO_DAY, DEMO_PATIENTS[n % 4]) for n in range(6)
        ]
        for handle in handles[:3]:
            await deliver_everything(handle)
        workers[0].send_signal(signal.SIGTERM)
        assert workers[0].wait(timeout=60) == 0
        for handle in handles[3:]:
            await deliver_everything(handle)
        results = [await handle.result() for handle in handles]
        assert {r.status for r in results} == {PathwayStatus.COMPLETED}

        store = EventStore(postgres_database)

        def all_completed() -> bool:
            rows, total = store.list_pathways(status="completed", limit=50)
            return total == 6 and {r.pathway_id for r in rows} == {h.id for h in handles}

        await wait_until(all_completed, timeout=15)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=60) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
