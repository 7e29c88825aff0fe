"""`pathways up` checks every port before starting anything: a taken one is refused by name and
variable, and another stack's dev server is never used, announced or given demo pathways."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.ops.processes import PATHWAYS, free_port

BANNER = "Pathway Orchestrator is running"


def _env(data_dir: Path, **ports: int) -> dict[str, str]:
    """Free ports for everything, unless given (frontend's UI port = frontend + 1000)."""
    frontend = ports.get("frontend") or _frontend_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATHWAYS_")}
    env.update(
        PATHWAYS_DATA_DIR=str(data_dir),
        PATHWAYS_TEMPORAL_ADDRESS=f"127.0.0.1:{frontend}",
        PATHWAYS_API_PORT=str(ports.get("api") or free_port()),
        PATHWAYS_METRICS_PORT=str(ports.get("metrics") or free_port()),
        PATHWAYS_HEALTH_PORT=str(ports.get("health") or free_port()),
        PATHWAYS_LOG_FORMAT="json",
    )
    return env


def _frontend_port() -> int:
    while True:
        port = free_port()
        if port + 1000 < 65536 and _free(port + 1000):
            return port


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """Another program listening on a port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", _frontend_port()))
    sock.listen()
    yield sock
    sock.close()


def _up(data_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PATHWAYS, "up"], cwd=data_dir.parent, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("taken", "variable"),
    [
        ("frontend", "PATHWAYS_TEMPORAL_ADDRESS"),
        ("ui", "PATHWAYS_TEMPORAL_ADDRESS"),
        ("api", "PATHWAYS_API_PORT"),
        ("metrics", "PATHWAYS_METRICS_PORT"),
        ("health", "PATHWAYS_HEALTH_PORT"),
    ],
)
def test_up_refuses_a_taken_port_before_starting_anything(
    tmp_path: Path, listener: socket.socket, taken: str, variable: str
) -> None:
    port = listener.getsockname()[1]
    data_dir = tmp_path / "data"
    ports = {"frontend": port - 1000} if taken == "ui" else {taken: port}
    if taken == "ui" and not (1024 < port - 1000 and _free(port - 1000)):
        pytest.skip("no free frontend port 1000 below the taken one")
    done = _up(data_dir, _env(data_dir, **ports))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port {port}" in done.stderr and variable in done.stderr
    assert BANNER not in done.stdout
    assert not data_dir.exists()  # nothing started, nothing written


def test_up_never_uses_another_stacks_dev_server(
    tmp_path: Path, dev_env: WorkflowEnvironment
) -> None:
    """The session's dev server stands in for another `make run` on the same frontend port."""
    host, _, port = dev_env.client.service_client.config.target_host.rpartition(":")
    data_dir = tmp_path / "data"
    env = _env(data_dir) | {"PATHWAYS_TEMPORAL_ADDRESS": f"{host}:{port}"}
    done = _up(data_dir, env)
    assert done.returncode == 1
    assert f"port {port}" in done.stderr and "PATHWAYS_TEMPORAL_ADDRESS" in done.stderr
    assert BANNER not in done.stdout and "Demo pathways" not in done.stdout
    assert not (data_dir / "demo-pathways.txt").exists()


def test_up_refuses_two_components_on_one_port(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    same = free_port()
    done = _up(data_dir, _env(data_dir, metrics=same, health=same))
    assert done.returncode == 1
    assert "PATHWAYS_METRICS_PORT" in done.stderr and "PATHWAYS_HEALTH_PORT" in done.stderr
