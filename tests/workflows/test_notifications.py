"""Just-in-time: a provider with a webhook is told the moment its handover is ready, with a signed
FHIR Task; a provider that loses a handover is told it is cancelled."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fhir.resources.R4B.task import Task
from temporalio.testing import WorkflowEnvironment

from activities.notify import WebhookVerificationError, verify
from pathways.commands import Reassign
from pathways.demo import DEMO_PATIENTS
from pathways.settings import Settings
from pathways.state import TaskStatus
from tests.fixtures.provider_system import ProviderSystem, Received
from tests.workflows.support import provider, start, state_of, wait_until, with_webhooks
from workflows.pathway import PathwayWorkflow


@pytest.fixture
def systems() -> Iterator[ProviderSystem]:
    system = ProviderSystem()
    yield system
    system.close()


def received_by(system: ProviderSystem, provider_id: str, kind: str) -> list[Received]:
    return [
        r for r in system.received
        if r.path == f"/{provider_id}" and r.headers.get("X-Pathways-Event") == kind
    ]


async def test_providers_are_told_at_dispatch_and_at_cancellation_with_signed_tasks(
    dev_env: WorkflowEnvironment, worker: object, settings: Settings, systems: ProviderSystem
) -> None:
    handle = await start(dev_env.client, settings, with_webhooks(systems.url), DEMO_PATIENTS[0])

    [dispatch] = await wait_until(lambda: received_by(systems, "nursing-north", "dispatched"))
    secret = settings.webhook_secrets("nursing-north")[0].whsec
    verify(dispatch.body, dispatch.headers, [secret])
    with pytest.raises(WebhookVerificationError):
        verify(dispatch.body, dispatch.headers, [settings.webhook_secrets("nursing-south")[0].whsec])
    task = Task.model_validate(json.loads(dispatch.body))
    assert task.id == f"{handle.id}.first-visit.1" and task.status == "requested"
    assert task.owner.reference == "Organization/nursing-north"
    assert dispatch.headers["Idempotency-Key"] == f"{handle.id}.first-visit.1.v1.dispatched"

    visit = (await state_of(handle)).handovers["first-visit.1"]
    await provider(handle, visit, TaskStatus.REJECTED, reason="outside our area")
    await wait_until(lambda: received_by(systems, "nursing-south", "dispatched"))

    await handle.execute_update(
        PathwayWorkflow.reassign,
        Reassign(handover_id="first-visit.1", provider_id="nursing-north",
                 reason="back in area", actor="coordinator:amy"),
    )
    [cancel] = await wait_until(lambda: received_by(systems, "nursing-south", "cancelled"))
    withdrawn = Task.model_validate(json.loads(cancel.body))
    assert withdrawn.status == "cancelled"
    assert withdrawn.owner.reference == "Organization/nursing-south"
    assert "nursing-north" not in cancel.body.decode()

    def told_twice() -> list[Received] | None:
        north = received_by(systems, "nursing-north", "dispatched")
        return north if len(north) == 2 else None

    assert {r.headers["Idempotency-Key"] for r in await wait_until(told_twice)} == {
        f"{handle.id}.first-visit.1.v1.dispatched",
        f"{handle.id}.first-visit.1.v{(await state_of(handle)).handovers['first-visit.1'].version}"
        ".dispatched",
    }
    await handle.cancel()
