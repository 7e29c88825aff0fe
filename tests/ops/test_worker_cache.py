"""Ops bound a worker's memory with PATHWAYS_MAX_CACHED_WORKFLOWS: with 10,000 open pathways the
worker would otherwise keep up to Temporal's default of 1,000 in memory (about 0.3 MiB each,
bench/scale.py). Pathways beyond the cache still answer: their history replays on demand."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from bench.handover_throughput import DEFINITION
from pathways.demo import DEMO_PATIENTS
from tests.conftest import make_settings
from tests.faults.test_metrics import scrape, value
from tests.ops.processes import PATHWAYS, env_for, free_port
from workflows.client import start_pathway
from workflows.pathway import PathwayWorkflow


async def test_worker_keeps_at_most_the_configured_pathways_in_memory(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, dev_env.client.service_client.config.target_host,
                             task_queue="worker-cache")
    port = free_port()
    env = env_for(settings, PATHWAYS_METRICS_PORT=str(port), PATHWAYS_MAX_CACHED_WORKFLOWS="2")
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([PATHWAYS, "worker"], env=env, stdout=log, stderr=log)
    try:
        ids = [await start_pathway(dev_env.client, settings, DEFINITION, patient)
               for patient in DEMO_PATIENTS[:5]]
        for pathway_id in ids:  # every one answers, evicted or not (a replay)
            state = await dev_env.client.get_workflow_handle(pathway_id).query(
                PathwayWorkflow.state)
            assert state.pathway_id == pathway_id and state.open_handovers
        samples = await scrape(port, "temporal_sticky_cache_size")
        cached = value(samples, "temporal_sticky_cache_size")
        assert cached is not None and cached <= 2, cached
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        log.close()
