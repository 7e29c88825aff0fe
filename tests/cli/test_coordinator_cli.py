"""Coordinator commands on the command line, run as the real `pathways` console script against
a real dev server and worker: what they change, what they refuse (exit 2), and what they say when
the engine is away (exit 1: unavailable, or outcome unknown with the key to retry with)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from pathways.settings import Settings
from pathways.state import PathwayStatus
from tests.ops.processes import PATHWAYS, env_for, free_port
from tests.workflows.support import TWO_DAY, start, state_of, wait_until
from worker.main import running_worker

pytestmark = pytest.mark.devserver


async def pathways(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`pathways ARGS` in a child process sharing the test's settings (PYTHONPATH included)."""
    return await asyncio.to_thread(
        subprocess.run, [PATHWAYS, *args], env=env_for(settings, **env),
        capture_output=True, text=True, timeout=90,
    )


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.stdout.strip(), done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _patient():  # type: ignore[no-untyped-def]
    from pathways.demo import DEMO_PATIENTS

    return DEMO_PATIENTS[1]


async def test_hold_resume_and_extend_change_the_pathway(
    settings: Settings, dev_env: WorkflowEnvironment, worker: Worker
) -> None:
    handle = await start(dev_env.client, settings, TWO_DAY, _patient())
    pathway_id = handle.id
    visit = (await state_of(handle)).handovers["first-visit.1"]

    held = await pathways(settings, "hold", pathway_id, "--reason", "in hospital", "--as", "night-desk",
                          "--format", "json")
    assert held.returncode == 0, held.stderr
    assert _json(held)["status"] == "on-hold"
    assert "patient" not in held.stdout  # the API's summary, not the whole state
    assert (await state_of(handle)).status is PathwayStatus.ON_HOLD

    again = await pathways(settings, "hold", pathway_id, "--reason", "still")
    assert again.returncode == 2, again.stderr
    assert "on hold" in again.stderr

    resumed = await pathways(settings, "resume", pathway_id)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith(f"resumed {pathway_id}: status active")

    before = (await state_of(handle)).handovers[visit.id]  # the hold moved it by its length
    extended = await pathways(settings, "extend", pathway_id, visit.id, "--by", "PT4H", "--reason", "ok")
    assert extended.returncode == 0, extended.stderr
    assert extended.stdout.startswith(f"extended {pathway_id} {visit.id}")
    after = (await state_of(handle)).handovers[visit.id]
    assert (after.complete_by - before.complete_by).total_seconds() == 4 * 3600
    await handle.cancel()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("extend", "{id}", "first-visit.1", "--reason", "r"), "exactly one of"),
        (("extend", "{id}", "first-visit.1", "--by", "PT4H", "--until", "2030-01-01T00:00:00Z",
          "--reason", "r"), "exactly one of"),
        (("extend", "{id}", "first-visit.1", "--by", "soon", "--reason", "r"), "by"),
        (("hold", "{id}", "--reason", ""), "reason"),
        (("reassign", "{id}", "no-such-handover", "--to", "nursing-south", "--reason", "r"), "no-such-handover"),
        (("ack", "{id}", "99"), "99"),
        (("cancel", "pw-does-not-exist", "--reason", "r"), "pw-does-not-exist"),
    ],
)
async def test_refused_commands_exit_2_and_change_nothing(
    settings: Settings, dev_env: WorkflowEnvironment, worker: Worker, args: tuple[str, ...], message: str
) -> None:
    handle = await start(dev_env.client, settings, TWO_DAY, _patient())
    before = await state_of(handle)
    done = await pathways(settings, *(a.format(id=handle.id) for a in args))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "refused" in done.stderr
    assert "Traceback" not in done.stderr
    assert (await state_of(handle)).updated_at == before.updated_at
    await handle.cancel()


async def test_a_refusal_in_json_is_an_error_object(
    settings: Settings, dev_env: WorkflowEnvironment, worker: Worker
) -> None:
    done = await pathways(settings, "resume", "pw-does-not-exist", "--format", "json")
    assert done.returncode == 2
    assert _json(done)["error"]["outcome"] == "refused"


async def test_list_and_inbox_read_the_read_model(
    settings: Settings, dev_env: WorkflowEnvironment, worker: Worker
) -> None:
    handle = await start(dev_env.client, settings, TWO_DAY, _patient())

    async def listed() -> Any:
        done = await pathways(settings, "list", "--definition", TWO_DAY.id, "--format", "json",
                              "--limit", "500")
        assert done.returncode == 0, done.stderr
        return _json(done) if handle.id in done.stdout else None

    page = await wait_until(listed, timeout=30, interval=0.5)
    row = next(r for r in page["items"] if r["pathway_id"] == handle.id)
    assert row["status"] == "active" and row["open_steps"] == ["first-visit"]
    text = await pathways(settings, "list", "--definition", TWO_DAY.id, "--limit", "500")
    assert text.stdout.startswith("PATHWAY") and handle.id in text.stdout

    inbox = await pathways(settings, "inbox", "--format", "json")
    assert inbox.returncode == 0, inbox.stderr
    assert isinstance(_json(inbox)["items"], list)
    assert (await pathways(settings, "inbox")).stdout.startswith("PATHWAY")
    await handle.cancel()


async def test_an_unreachable_engine_exits_1_and_says_nothing_changed(settings: Settings) -> None:
    dead = f"127.0.0.1:{free_port()}"
    done = await pathways(settings, "hold", "pw-x", "--reason", "r", PATHWAYS_TEMPORAL_ADDRESS=dead)
    assert done.returncode == 1
    assert dead in done.stderr and "PATHWAYS_TEMPORAL_ADDRESS" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


async def test_outcome_unknown_then_retry_with_the_same_key_applies_once(
    settings: Settings, dev_env: WorkflowEnvironment
) -> None:
    """No worker on the pathway's queue: the Update is accepted by the server and waits, so the
    CLI cannot know the outcome. Retried with the printed key once a worker runs, it is applied
    once: a second, new hold would be refused (the pathway is already on hold)."""
    own = settings.model_copy(update={"task_queue": "cli-no-worker-yet"})
    handle = await start(dev_env.client, own, TWO_DAY, _patient())
    first = await pathways(own, "hold", handle.id, "--reason", "in hospital",
                           PATHWAYS_UPDATE_TIMEOUT_SECONDS="2")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "outcome unknown" in first.stderr
    key = first.stderr.split("--idempotency-key ")[1].split()[0]

    async with running_worker(dev_env.client, own):
        retried = await pathways(own, "hold", handle.id, "--reason", "in hospital",
                                 "--idempotency-key", key)
        assert retried.returncode == 0, retried.stderr
        assert (await state_of(handle)).status is PathwayStatus.ON_HOLD
        fresh = await pathways(own, "hold", handle.id, "--reason", "in hospital")
        assert fresh.returncode == 2
        await handle.cancel()


async def test_the_cli_and_the_api_share_update_ids(
    settings: Settings, dev_env: WorkflowEnvironment, worker: Worker
) -> None:
    """A hold sent by the CLI and retried through /api with the same key and coordinator is one
    change: the API answers with the same result instead of 409 "already on hold"."""
    import httpx

    from api.tokens import TokenStore
    from tests.api.conftest import serve_in_thread

    handle = await start(dev_env.client, settings, TWO_DAY, _patient())
    key = "cli-then-api-1"
    held = await pathways(settings, "hold", handle.id, "--reason", "in hospital", "--as", "night-desk",
                          "--idempotency-key", key, "--format", "json")
    assert held.returncode == 0, held.stderr
    served = serve_in_thread(settings.model_copy(update={"api_port": free_port()}))
    try:
        base_url = next(served)  # the app migrates the token table
        token = TokenStore(settings.event_store).issue_coordinator("night-desk")
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
            again = await http.post(f"/api/pathways/{handle.id}/hold", json={"reason": "in hospital"},
                                    headers=headers)
            assert again.status_code == 200, again.text
            assert again.json() == _json(held)
            headers["Idempotency-Key"] = "a-new-request"
            fresh = await http.post(f"/api/pathways/{handle.id}/hold", json={"reason": "in hospital"},
                                    headers=headers)
            assert fresh.status_code == 409
    finally:
        served.close()
    await handle.cancel()
