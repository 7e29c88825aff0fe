"""A provider answering 4xx is retried by Temporal (dev server, real worker, real HTTP): the same
webhook-id on every attempt, each attempt freshly signed and verifiable, until it is accepted."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.notify import verify
from activities.pathway_activities import PathwayActivities
from activities.store import EventStore
from pathways.events import Notification, NotificationKind
from pathways.settings import Settings
from tests.activities.delivery_workflow import DeliverNotification
from tests.fixtures.provider_system import ProviderSystem


async def test_a_404_answer_is_retried_until_the_provider_accepts(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, secret_key="retry-key", metrics_port=0)
    whsec = settings.webhook_secrets("gp-9")[0].whsec
    system = ProviderSystem(secrets=[whsec])
    store = EventStore(settings.event_store)
    store.migrate()
    queue = f"deliver-{uuid.uuid4()}"
    note = Notification(pathway_id="pw-retry", handover_id="gp-review.1", provider_id="gp-9",
                        webhook=f"{system.url}/flaky/404/2", kind=NotificationKind.REMINDER,
                        version=2, task={"resourceType": "Task", "id": "pw-retry.gp-review.1"})
    try:
        async with httpx.AsyncClient() as http:
            acts = PathwayActivities(settings, store, http)
            async with Worker(dev_env.client, task_queue=queue, workflows=[DeliverNotification],
                              activities=[acts.notify_provider]):
                status = await dev_env.client.execute_workflow(
                    DeliverNotification.run, note, id=f"deliver-{uuid.uuid4()}", task_queue=queue
                )
    finally:
        system.close()
    assert status == 202
    attempts = system.received
    assert len(attempts) == 3  # 404, 404, then accepted
    assert {a.headers["webhook-id"] for a in attempts} == {"pw-retry.gp-review.1.v2.reminder"}
    assert all(a.verified for a in attempts)
    for attempt in attempts:
        verify(attempt.body, attempt.headers, [whsec])
