"""On-call totals survive a worker restart: the SLA breaches and escalations a worker exports are
read from the event log, so a successor (after kill -9) exports the same totals at once, where
the worker's in-memory counters start again at zero."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from activities.store import EventStore
from pathways.demo import DEMO_PATIENTS
from pathways.events import EventKind
from tests.conftest import make_settings
from tests.faults.test_metrics import fast_breaching, scrape, value
from tests.ops.processes import PATHWAYS, env_for, free_port
from workflows.client import start_pathway


def _worker(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([PATHWAYS, "worker"], stdout=out, stderr=out,
                                env={**env, "PATHWAYS_METRICS_PORT": str(port)})


async def test_breach_and_escalation_totals_survive_a_worker_killed_and_replaced(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, dev_env.client.service_client.config.target_host,
                             task_queue="metrics-restart")
    store = EventStore(settings.event_store)
    store.migrate()
    env = env_for(settings)
    first_port, second_port = free_port(), free_port()
    first = _worker(env, first_port, tmp_path / "worker.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        pathway_id = await start_pathway(dev_env.client, settings, fast_breaching(),
                                         DEMO_PATIENTS[2])
        for _ in range(120):  # the step escalates at once and breaches after 2 s
            kinds = {event.kind for event in store.events(pathway_id)}
            if {EventKind.ESCALATED, EventKind.BREACHED} <= kinds:
                break
            await asyncio.sleep(0.5)
        assert {EventKind.ESCALATED, EventKind.BREACHED} <= kinds, kinds
        samples = await scrape(first_port, "pathways_attention_events_total")
        assert value(samples, "pathways_attention_events_total", kind="breached") == 1

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        second = _worker(env, second_port, tmp_path / "worker.log")
        samples = await scrape(second_port, "pathways_attention_recorded")
        labels = {"definition": "fast-breach"}
        assert value(samples, "pathways_attention_recorded", kind="breached", **labels) == 1
        assert value(samples, "pathways_attention_recorded", kind="escalated", **labels) == 1
        assert value(samples, "pathways_attention_recorded", kind="notification-failed",
                     **labels) == 0
        # what a counter in the new worker's memory would have said
        assert value(samples, "pathways_attention_events_total", kind="breached") is None
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
        store.close()
