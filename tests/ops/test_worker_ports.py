"""The worker as ops start it on a busy or misconfigured machine: a taken metrics or health port
does not stop it (it says which port and variable, and works on); an unreachable Temporal is one
readable line and a non-zero exit."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator

import pytest
from temporalio.testing import WorkflowEnvironment

from pathways.settings import Settings
from tests.ops.processes import PATHWAYS, env_for, free_port, run
from tests.workflows.support import TWO_DAY, start, state_of, wait_until


@pytest.fixture
def taken_ports() -> Iterator[tuple[int, int]]:
    """Two ports another program listens on."""
    sockets = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sockets.append(sock)
    yield sockets[0].getsockname()[1], sockets[1].getsockname()[1]
    for sock in sockets:
        sock.close()


async def test_worker_runs_on_when_its_metrics_and_health_ports_are_taken(
    settings: Settings, dev_env: WorkflowEnvironment, taken_ports: tuple[int, int]
) -> None:
    own = settings.model_copy(update={"task_queue": "worker-ports-taken"})
    metrics, health = taken_ports
    process = subprocess.Popen(
        [PATHWAYS, "worker"],
        env=env_for(own, PATHWAYS_METRICS_PORT=str(metrics), PATHWAYS_HEALTH_PORT=str(health)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        handle = await start(dev_env.client, own, TWO_DAY, _patient())

        async def dispatched() -> bool:  # only a running worker moves the pathway along
            return bool((await state_of(handle)).open_handovers)

        await wait_until(dispatched, timeout=30)
        assert process.poll() is None
        await handle.cancel()
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert f"127.0.0.1:{metrics}" in stderr and "PATHWAYS_METRICS_PORT" in stderr
    assert f"127.0.0.1:{health}" in stderr and "PATHWAYS_HEALTH_PORT" in stderr


def test_an_unreachable_temporal_is_one_readable_line(settings: Settings) -> None:
    dead = f"127.0.0.1:{free_port()}"
    done = run("worker", env=env_for(settings, PATHWAYS_TEMPORAL_ADDRESS=dead), timeout=60)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert dead in lines[0] and "PATHWAYS_TEMPORAL_ADDRESS" in lines[0]
    assert "tonic" not in done.stderr and "Traceback" not in done.stderr


def _patient():  # type: ignore[no-untyped-def]
    from pathways.demo import DEMO_PATIENTS

    return DEMO_PATIENTS[2]
