"""The patient's clock on a real (time-skipping) server: a reassignment never buys time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.testing import WorkflowEnvironment

from pathways.catalogue import Catalogue
from pathways.commands import ExtendDue
from pathways.demo import DEMO_PATIENTS
from pathways.settings import Settings
from pathways.state import RULES_LATEST, BusinessStatus, SlaState, TaskStatus
from tests.workflows.support import provider, start, state_of
from workflows.pathway import PathwayWorkflow


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


async def test_extending_an_overdue_handover_by_30_minutes_gives_30_minutes_from_now(
    env: WorkflowEnvironment, skipping_settings: Settings, catalogue: Catalogue
) -> None:
    definition = catalogue.get("urgent-community-response")
    handle = await start(env.client, skipping_settings, definition, DEMO_PATIENTS[1])
    await env.sleep(timedelta(minutes=15))  # not at a rung's time (a time-skipping server race)
    response = (await state_of(handle)).handovers["urgent-response.1"]
    await provider(handle, response, TaskStatus.ACCEPTED)
    await env.sleep(timedelta(hours=2, minutes=3) - timedelta(minutes=15))
    breached = await state_of(handle)
    assert breached.sla_state is SlaState.BREACHED
    fired = [(e.id, e.level) for e in breached.escalations]

    before = await env.get_current_time()
    extended = await handle.execute_update(
        PathwayWorkflow.extend_due,
        ExtendDue(handover_id="urgent-response.1", by=timedelta(minutes=30),
                  reason="crew delayed by traffic", actor="coordinator:amy"),
    )
    assert extended.complete_by - before >= timedelta(minutes=30), "counted from now"
    assert extended.complete_by - before < timedelta(minutes=31)
    assert (await state_of(handle)).sla_state is SlaState.ON_TRACK

    await env.sleep(timedelta(minutes=31))
    later = await state_of(handle)
    assert later.sla_state is SlaState.BREACHED, "the new due time passed too"
    assert [(e.id, e.level) for e in later.escalations] == fired, "rungs fired once, not again"
    await handle.cancel()
