"""Recorded workflow histories: the proof that code changes keep in-flight pathways replayable.

`python -m tests.workflows.histories` runs every shipped pathway, one with provider webhooks and,
with time skipping, the SLA ladder and a recurring pathway's whole year on real Temporal servers,
and writes their histories to tests/workflows/histories/<today>/. Commit them, and keep the older
folders: they stand for pathways still in flight. The test suite replays every file against the
current workflow code, so a change that would break a running pathway fails CI unless it is
guarded with `workflow.patched`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from pathways.catalogue import load_catalogue
from pathways.demo import DEMO_PATIENTS
from pathways.settings import SHIPPED_CATALOGUE
from pathways.state import TaskStatus
from tests.conftest import make_settings, run_worker
from tests.fixtures.provider_system import ProviderSystem
from tests.workflows.support import (
    TWO_DAY,
    deliver_everything,
    provider,
    run_through_the_year,
    start,
    state_of,
    with_webhooks,
)
from worker.binaries import installed_binary
from workflows import search

FOLDER = Path(__file__).parent / "histories"
TODAY = FOLDER / (sys.argv[1] if len(sys.argv) > 1 else date.today().isoformat())
"""Where this run records: `python -m tests.workflows.histories [FOLDER]`, by default today's
date; name a new folder when today's already holds histories of older code."""


async def save(handle: WorkflowHandle, name: str) -> None:
    history = await handle.fetch_history()
    (TODAY / f"{name}.json").write_text(history.to_json())
    print(f"recorded {name}: {len(history.events)} events")


async def record_shipped(env: WorkflowEnvironment, data_dir: Path) -> None:
    target = env.client.service_client.config.target_host
    settings = make_settings(data_dir, target)
    async for _ in run_worker(env.client, settings):
        for definition in load_catalogue(SHIPPED_CATALOGUE):
            handle = await start(env.client, settings, definition, DEMO_PATIENTS[0])
            await deliver_everything(handle)
            await save(handle, definition.key.replace("@", "-v"))
        system = ProviderSystem()
        try:
            handle = await start(env.client, settings, with_webhooks(system.url), DEMO_PATIENTS[1])
            await deliver_everything(handle)
            await handle.result()
            await save(handle, "webhooks-two-step")
        finally:
            system.close()


async def record_effects(env: WorkflowEnvironment, data_dir: Path) -> None:
    """Effects that wait on the outside world: webhooks to a provider system that is down while
    the run continues as new, and event-store writes retried through a locked SQLite file."""
    from pathways.commands import AddNote
    from tests.workflows.test_effects import Receiver, SqliteLock
    from workflows.client import new_pathway_id
    from workflows.pathway import PathwayInput, PathwayWorkflow

    target = env.client.service_client.config.target_host
    settings = make_settings(data_dir, target, task_queue="effects")
    receiver = Receiver()
    lock = SqliteLock(data_dir / "pathways.db")
    async for _ in run_worker(env.client, settings):
        for name, definition, outage in (
            ("continue-as-new-provider-down", with_webhooks(receiver.url), None),
            ("continue-as-new-store-locked", TWO_DAY, lock),
        ):
            started = await env.client.start_workflow(
                PathwayWorkflow.run,
                PathwayInput(definition=definition, patient=DEMO_PATIENTS[2],
                             search_attributes=False, max_history_events=40),
                id=new_pathway_id(),
                task_queue=settings.task_queue,
            )
            await asyncio.sleep(1)
            if outage is not None:
                outage.start()
            for n in range(12):
                await started.execute_update(
                    PathwayWorkflow.add_note, AddNote(text=f"call {n}", actor="c:amy")
                )
            while (await started.describe()).run_id == started.result_run_id:
                await asyncio.sleep(0.5)
            if outage is not None:
                outage.stop()
            first = env.client.get_workflow_handle(started.id, run_id=started.result_run_id)
            await save(first, name)
            await started.terminate("recorded")
    receiver.down()


async def record_timed(env: WorkflowEnvironment, data_dir: Path) -> None:
    """On the time-skipping server: the SLA ladder, and a recurring pathway's whole year."""
    settings = make_settings(data_dir, "unused:0", search_attributes=False, task_queue="timed")
    async for _ in run_worker(env.client, settings):
        handle = await start(env.client, settings, TWO_DAY, DEMO_PATIENTS[0])
        await env.sleep(timedelta(days=2, hours=7))
        visit = (await state_of(handle)).handovers["first-visit.1"]
        await provider(handle, visit, TaskStatus.COMPLETED, output={"wound_ok": True})
        await deliver_everything(handle)
        await handle.result()
        await save(handle, "sla-ladder-two-day")

        year = load_catalogue(SHIPPED_CATALOGUE).get("ltc-annual-contract")
        handle = await start(env.client, settings, year, DEMO_PATIENTS[1])
        await run_through_the_year(env, handle)
        await save(handle, "ltc-annual-contract-v1-full-year")


async def main() -> None:
    TODAY.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data_dir:
        dev = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            search_attributes=search.ALL_KEYS,
            dev_server_existing_path=installed_binary("temporal"),
        )
        async with dev:
            await record_shipped(dev, Path(data_dir) / "dev")
            await record_effects(dev, Path(data_dir) / "effects")
        skipping = await WorkflowEnvironment.start_time_skipping(
            data_converter=pydantic_data_converter,
            test_server_existing_path=installed_binary("temporal-test-server"),
        )
        async with skipping:
            await record_timed(skipping, Path(data_dir) / "skip")


if __name__ == "__main__":
    asyncio.run(main())
