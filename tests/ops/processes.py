"""Run the real `pathways` command as a child process, the way ops and the README do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from pathways.settings import Settings

PATHWAYS = str(Path(sys.executable).parent / "pathways")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that makes a child process share the test's settings."""
    env = dict(os.environ)
    env.update(
        PATHWAYS_TEMPORAL_ADDRESS=settings.temporal_address,
        PATHWAYS_NAMESPACE=settings.namespace,
        PATHWAYS_TASK_QUEUE=settings.task_queue,
        PATHWAYS_DATA_DIR=str(settings.data_dir),
        PATHWAYS_EVENT_STORE_URL=settings.event_store,
        PATHWAYS_SECRET_KEY=settings.key.decode(),
        PATHWAYS_LOG_FORMAT="json",
        PATHWAYS_METRICS_PORT="0",
        PATHWAYS_HEALTH_PORT="0",
    )
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PATHWAYS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
