"""`pathways worker` logs as ops read them: with PATHWAYS_LOG_FORMAT=json every line it writes is
one JSON object, the Temporal SDK core's own lines included, and a workflow task that fails
shows its real exception and traceback (not an error of the logging inside the sandbox)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from pathways.settings import Settings
from tests.ops.processes import PATHWAYS, env_for, free_port

PATIENT_NAME = "Ada Lovelace"


async def _worker_output(settings: Settings, dev_env: WorkflowEnvironment, tmp_path: Path,
                         log_format: str, until: str) -> str:
    """Run a worker, start a pathway whose input its workflow cannot take (a workflow task
    failure, retried), and return what the worker wrote once `until` appears in it."""
    own = settings.model_copy(update={"task_queue": f"worker-logs-{uuid.uuid4().hex[:6]}"})
    health = free_port()
    out = tmp_path / f"worker-{log_format}.log"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [PATHWAYS, "worker"], stdout=sink, stderr=subprocess.STDOUT,
            env=env_for(own, PATHWAYS_LOG_FORMAT=log_format, PATHWAYS_HEALTH_PORT=str(health)),
        )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    if (await http.get(f"http://127.0.0.1:{health}/healthz")).is_success:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.3)
        handle = await dev_env.client.start_workflow(
            "PathwayWorkflow",
            {"definition": {"title": PATIENT_NAME},
             "patient": {"name": PATIENT_NAME, "nhs_number": "943 476 5919"}},
            id=f"broken-{uuid.uuid4().hex[:8]}", task_queue=own.task_queue,
        )
        try:
            for _ in range(100):
                if until in out.read_text(errors="replace"):
                    break
                await asyncio.sleep(0.3)
        finally:
            await handle.terminate("test over")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    return out.read_text(errors="replace")


async def test_json_worker_output_is_all_json_core_lines_included(
    settings: Settings, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    text = await _worker_output(settings, dev_env, tmp_path, "json", "Failing workflow task")
    lines: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line[:300]}\n---\n{text[-3000:]}") from None
    core = [line for line in lines if str(line.get("target", "")).startswith("temporalio_")]
    assert core, "no line from the SDK core"
    assert any(line["event"] == "Failing workflow task" and line["level"] == "warning"
               for line in core), core
    failed = [line for line in lines if line["event"].startswith("Failed activation")]
    assert failed and "ValidationError" in failed[0]["exception"], failed
    assert "Traceback (most recent call last)" in failed[0]["exception"]
    # the SDK's ids as keys of the line, not text appended to its message
    assert failed[0]["workflow_id"].startswith("broken-"), failed[0]
    assert failed[0]["workflow_type"] == "PathwayWorkflow"
    assert "{" not in failed[0]["event"], failed[0]["event"]
    assert "RestrictedWorkflowAccessError" not in text


async def test_a_failed_workflow_task_shows_its_real_exception_on_the_console(
    settings: Settings, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    text = await _worker_output(settings, dev_env, tmp_path, "console", "Failing workflow task")
    assert "Failed activation on workflow PathwayWorkflow" in text, text[-3000:]
    assert "ValidationError" in text, text[-3000:]
    assert "RestrictedWorkflowAccessError" not in text, text[-3000:]
    assert "Logging error" not in text, text[-3000:]
    assert "DeadlockError" not in text, text[-3000:]
    # the failing input holds a patient: the logged error names fields, never their values
    assert PATIENT_NAME not in text and "943 476 5919" not in text, text[-3000:]
