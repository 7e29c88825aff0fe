"""A worker started on an existing store folds the flow summary at start, beside the workflows,
so the first report does not fold the whole log itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.flow_summary import folded_events
from activities.flow_tables import summary_rows
from activities.store import EventStore
from tests.analytics.eventlog import write_log
from tests.analytics.test_flow_summary import HANDOVERS_WITH_EVENTS, rows
from tests.conftest import make_settings
from worker.main import run_worker

pytestmark = pytest.mark.devserver


async def test_the_worker_folds_an_existing_store_at_start(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, dev_env.client.service_client.config.target_host,
                             task_queue="catch-up-test")
    store = EventStore(settings.event_store)
    store.migrate()
    write_log(store)  # a store with history, never reported on
    assert folded_events(store) is None
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    try:
        for _ in range(120):
            if folded_events(store) is not None:
                break
            await asyncio.sleep(0.25)
        with store.engine.connect() as conn:
            events = conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one()
        assert folded_events(store) == events
        assert rows(store, summary_rows) == HANDOVERS_WITH_EVENTS
    finally:
        stop.set()
        await asyncio.wait_for(worker, 60)
        store.close()
