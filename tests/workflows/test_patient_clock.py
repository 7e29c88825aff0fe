"""The patient's clock on a real (time-skipping) server: a reassignment never buys time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.testing import WorkflowEnvironment

from pathways.catalogue import Catalogue
from pathways.demo import DEMO_PATIENTS
from pathways.settings import Settings
from pathways.state import RULES_LATEST, BusinessStatus, SlaState, TaskStatus
from tests.workflows.support import provider, start, state_of


@pytest.fixture
def env(skipping_env: WorkflowEnvironment, skipping_worker: object) -> WorkflowEnvironment:
    return skipping_env


async def test_urgent_response_reads_breached_at_2h01_after_the_ladder_reassigned_at_45_min(
    env: WorkflowEnvironment, skipping_settings: Settings, catalogue: Catalogue
) -> None:
    definition = catalogue.get("urgent-community-response")
    handle = await start(env.client, skipping_settings, definition, DEMO_PATIENTS[0])
    await env.sleep(timedelta(minutes=46))

    state = await state_of(handle)
    assert state.rules_version == RULES_LATEST, "a new pathway runs on the patient's clock"
    response = state.handovers["urgent-response.1"]
    assert len(response.attempts) == 2, "the ladder reassigned at 45 minutes"
    assert response.complete_by == response.ready_at + timedelta(hours=2)
    assert response.accept_by - response.dispatched_at == timedelta(minutes=30)
    details = (await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
               ).current_details
    assert "patient due" in details and "accept by" in details
    await provider(handle, response, TaskStatus.ACCEPTED)

    await env.sleep(timedelta(hours=2, minutes=1) - timedelta(minutes=46))
    state = await state_of(handle)
    response = state.handovers["urgent-response.1"]
    assert response.status is TaskStatus.ACCEPTED and response.complete_breached
    assert response.business_status is BusinessStatus.BREACHED
    assert state.sla_state is SlaState.BREACHED
    await handle.cancel()
