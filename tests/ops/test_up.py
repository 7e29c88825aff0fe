"""`pathways up`, the README's run command: everything starts, demo pathways appear, and a
second run resumes the same pathways from the same files."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import httpx
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.ops.processes import PATHWAYS, free_port, port_is_free

BANNER = "Pathway Orchestrator is running"


def _temporal_port() -> int:
    """A frontend port whose Web UI port (+1000) is free as well."""
    while True:
        port = random.randint(20000, 29000)
        if port_is_free(port) and port_is_free(port + 1000):
            return port


def _start(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [PATHWAYS, "up"], cwd=data_dir.parent, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if sum(line.startswith("  Try: ") for line in lines) == 2:  # the banner's last lines
            return process, "".join(lines)
    process.kill()
    raise AssertionError("pathways up did not start:\n" + "".join(lines))


def _path_without_the_venv() -> str:
    venv_bin = str(Path(PATHWAYS).parent)
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep) if d != venv_bin)


def _run_the_banners_examples(output: str, demo_ids: list[str]) -> None:
    """Each `Try:` command, pasted into a shell as printed (no PATHWAYS_* variables set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATHWAYS_")}
    env["PATH"] = _path_without_the_venv()
    examples = [line.split("Try: ", 1)[1] for line in output.splitlines() if "Try: " in line]
    assert len(examples) == 2
    for example in examples:
        done = subprocess.run(example, shell=True, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{example}\n{done.stdout}{done.stderr}"
        assert any(pathway_id in done.stdout for pathway_id in demo_ids), (example, done.stdout)


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=90)
    return rest


async def test_up_runs_everything_and_resumes_the_same_pathways(tmp_path: Path) -> None:
    port = _temporal_port()
    api_port = free_port()
    data_dir = tmp_path / "data"
    env = dict(os.environ)
    env.update(
        PATH=_path_without_the_venv(),  # as after `make run`: the venv is not activated
        PATHWAYS_DATA_DIR=str(data_dir),
        PATHWAYS_TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
        PATHWAYS_API_PORT=str(api_port),
        PATHWAYS_METRICS_PORT=str(free_port()),
        PATHWAYS_HEALTH_PORT=str(free_port()),
        PATHWAYS_LOG_FORMAT="json",
    )
    process, output = _start(data_dir, env)
    try:
        assert BANNER in output
        demo_ids = output.split("Demo pathways")[1].split("\n")[0].strip().split(", ")
        assert len(demo_ids) == 4 and all(i.startswith("pw-") for i in demo_ids)
        async with httpx.AsyncClient() as http:
            ui = await http.get(f"http://127.0.0.1:{port + 1000}/")
            assert ui.status_code == 200
            metadata = await http.get(f"http://127.0.0.1:{api_port}/fhir/metadata")
            assert metadata.status_code == 200
        client = await Client.connect(f"127.0.0.1:{port}", data_converter=pydantic_data_converter)
        listed = []
        for _ in range(50):
            listed = [w async for w in client.list_workflows("PathwayDefinition IS NOT NULL")]
            if len(listed) >= 4:
                break
            time.sleep(0.2)
        assert {w.id for w in listed} == set(demo_ids)
        assert all(w.search_attributes.get("PathwaySlaState") for w in listed)
        _run_the_banners_examples(output, demo_ids)
    finally:
        rest = _stop(process)
    assert process.returncode == 0, rest
    assert (data_dir / "temporal.db").exists()

    process, output = _start(data_dir, env)
    try:
        assert ", ".join(demo_ids) in output
        client = await Client.connect(f"127.0.0.1:{port}", data_converter=pydantic_data_converter)
        for pathway_id in demo_ids:
            description = await client.get_workflow_handle(pathway_id).describe()
            assert description.status is WorkflowExecutionStatus.RUNNING
    finally:
        rest = _stop(process)
    assert process.returncode == 0, rest
