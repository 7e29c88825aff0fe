"""What-if jobs outlive the API process: a coordinator who ran a what-if before a deploy finds
it afterwards, with its answer, at the same URLs; a job that was running when the API stopped is
shown as interrupted (not running, not lost), a cancelled one stays cancelled. Real HTTP, two
API apps one after the other on the same data dir and database."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.store import EventStore
from api.tokens import TokenStore
from pathways.settings import Settings
from tests.api.conftest import free_port, serve_in_thread
from tests.conftest import make_settings
from tests.console.conftest import Console
from tests.console.test_console_http import signed_in
from tests.console.test_whatif_console import SMALL, _job_id, _start_form, _wait_finished
from tests.ops.processes import PATHWAYS, env_for

pytestmark = pytest.mark.devserver


@pytest.fixture
def own_settings(tmp_path: Path, dev_env: WorkflowEnvironment,
                 console_catalogue: Path) -> Settings:
    """An installation of its own (data dir, database, port): restarting its API disturbs no
    other test's jobs."""
    settings = make_settings(tmp_path, dev_env.client.service_client.config.target_host,
                             api_port=free_port(), catalogue_dir=console_catalogue)
    EventStore(settings.event_store).migrate()
    return settings


async def _sign_in(settings: Settings, base_url: str) -> tuple[httpx.AsyncClient, str]:
    tokens = TokenStore(settings.event_store)
    return await signed_in(Console(base_url, settings, tokens, tokens.issue_coordinator("casey")))


async def test_finished_jobs_and_their_answers_survive_an_api_restart(
    own_settings: Settings,
) -> None:
    served = serve_in_thread(own_settings, timeout_graceful_shutdown=2)
    client, token = await _sign_in(own_settings, next(served))
    try:
        finished = await _job_id(await client.post("/whatif", data=_start_form(token, yaml=SMALL)))
        answer = await _wait_finished(client, finished)
        assert "Finished: 4 replications" in answer
        long = _start_form(token, example="ucr-add-team.yaml", replications="3")
        cancelled = await _job_id(await client.post("/whatif", data=long))
        running = await _job_id(await client.post("/whatif", data=long))
        stop = await client.post(f"/whatif/jobs/{cancelled}/cancel", data={"csrf": token})
        assert stop.status_code == 303
        assert "Running:" in (await client.get(f"/whatif/jobs/{running}")).text
        page_before = (await client.get(f"/whatif/jobs/{finished}")).text
    finally:
        await client.aclose()
        served.close()  # the API stops (a deploy) while `running` runs

    served = serve_in_thread(own_settings, timeout_graceful_shutdown=2)
    client, token = await _sign_in(own_settings, next(served))
    try:
        kept = await client.get(f"/whatif/jobs/{finished}/progress")
        assert kept.status_code == 200
        assert kept.text == answer  # the same baseline/changes comparison, to the character
        page = await client.get(f"/whatif/jobs/{finished}")
        assert page.status_code == 200
        assert page.text.split("<main", 1)[1] == page_before.split("<main", 1)[1]
        interrupted = await client.get(f"/whatif/jobs/{running}")
        assert interrupted.status_code == 200
        assert "Interrupted" in interrupted.text and "Running:" not in interrupted.text
        assert 'hx-trigger="every 1s"' not in interrupted.text  # nothing polls a dead job
        assert 'href="/whatif"' in interrupted.text  # the way to run it again
        assert "Cancelled after" in (await client.get(f"/whatif/jobs/{cancelled}")).text
        listed = (await client.get("/whatif")).text
        for job_id in (finished, running, cancelled):
            assert f"/whatif/jobs/{job_id}" in listed
        assert "interrupted" in listed and "finished" in listed and "cancelled" in listed
        # Two slots free again: the interrupted job holds none.
        for _ in range(2):
            started = await client.post("/whatif", data=_start_form(token, yaml=SMALL))
            await _wait_finished(client, await _job_id(started))
    finally:
        await client.aclose()
        served.close()


@contextmanager
def _api_process(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    env = env_for(settings, PATHWAYS_API_PORT=str(settings.api_port),
                  PATHWAYS_CATALOGUE_DIR=str(settings.catalogue_dir))
    child = subprocess.Popen([PATHWAYS, "api"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)


async def _until_up(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        for _ in range(300):
            try:
                if (await client.get("/signin")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the API did not start")


async def test_a_job_running_when_the_api_process_is_killed_is_interrupted_after_restart(
    own_settings: Settings,
) -> None:
    """`pathways api` killed outright (no shutdown of its own: out of memory, a node lost)."""
    with _api_process(own_settings) as child:
        await _until_up(own_settings.base_url)
        client, token = await _sign_in(own_settings, own_settings.base_url)
        try:
            finished = await _job_id(
                await client.post("/whatif", data=_start_form(token, yaml=SMALL)))
            answer = await _wait_finished(client, finished)
            running = await _job_id(await client.post("/whatif", data=_start_form(
                token, example="ucr-add-team.yaml", replications="3")))
            assert "Running:" in (await client.get(f"/whatif/jobs/{running}")).text
        finally:
            await client.aclose()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)

    with _api_process(own_settings):
        await _until_up(own_settings.base_url)
        client, token = await _sign_in(own_settings, own_settings.base_url)
        try:
            assert (await client.get(f"/whatif/jobs/{finished}/progress")).text == answer
            interrupted = await client.get(f"/whatif/jobs/{running}")
            assert interrupted.status_code == 200
            assert "Interrupted" in interrupted.text and "Running:" not in interrupted.text
            listed = (await client.get("/whatif")).text
            assert f"/whatif/jobs/{running}" in listed and "interrupted" in listed
        finally:
            await client.aclose()
