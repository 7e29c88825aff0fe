"""What-if jobs outlive the API process: a coordinator who ran a what-if before a deploy finds
it afterwards, with its answer, at the same URLs; a job that was running when the API stopped is
shown as interrupted (not running, not lost), a cancelled one stays cancelled. Real HTTP, two
API apps one after the other on the same data dir and database."""

from __future__ import annotations

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
