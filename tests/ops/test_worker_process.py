"""`pathways worker` as ops run it: health, Prometheus metrics, graceful shutdown on SIGTERM."""

from __future__ import annotations

import signal
import subprocess

import httpx
from temporalio.testing import WorkflowEnvironment

from pathways.settings import Settings
from pathways.state import Patient, TaskStatus
from tests.ops.processes import PATHWAYS, env_for, free_port
from tests.workflows.support import TWO_DAY, provider, refused, start, state_of, wait_until


async def test_worker_serves_health_and_metrics_and_stops_cleanly(
    settings: Settings, dev_env: WorkflowEnvironment
) -> None:
    own = settings.model_copy(update={"task_queue": "worker-process"})
    metrics, health = free_port(), free_port()
    process = subprocess.Popen(
        [PATHWAYS, "worker"],
        env=env_for(own, PATHWAYS_METRICS_PORT=str(metrics), PATHWAYS_HEALTH_PORT=str(health)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        async with httpx.AsyncClient() as http:

            async def healthy() -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{health}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(healthy, timeout=30)
            handle = await start(dev_env.client, own, TWO_DAY, _patient())
            visit = (await state_of(handle)).handovers["first-visit.1"]
            await provider(handle, visit, TaskStatus.ACCEPTED)
            await refused(provider(handle, visit, TaskStatus.COMPLETED, output={"wound_ok": 3}))

            async def scraped() -> str | None:
                text = (await http.get(f"http://127.0.0.1:{metrics}/metrics")).text
                wanted = ("pathways_events_recorded_total", "pathways_attention_events_total{")
                return text if all(w in text for w in wanted) else None

            text = await wait_until(scraped, timeout=30)
            assert "temporal_workflow_task_schedule_to_start_latency" in text or "temporal_" in text
            assert "9990000" not in text  # no patient data in metric labels
            samples = [line for line in text.splitlines() if line and not line.startswith("#")]
            for line in samples:  # SDK and domain series alike, the label once (valid format)
                assert line.count('service_name="pathways-worker"') == 1, line
                assert line.count("service_name=") == 1, line
            missing = await http.get(f"http://127.0.0.1:{health}/nope")
            assert missing.status_code == 404
        await handle.cancel()
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "worker stopped" in stderr
    assert "9990000" not in stdout + stderr


def _patient() -> Patient:
    from pathways.demo import DEMO_PATIENTS

    return DEMO_PATIENTS[3]
