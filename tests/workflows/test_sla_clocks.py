"""Durable SLA clocks on the time-skipping server: days of waiting pass in milliseconds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from pathways.catalogue import Catalogue
from pathways.commands import ExtendDue, HoldPathway, ResumePathway
from pathways.demo import DEMO_PATIENTS
from pathways.model import EscalationAction
from pathways.settings import Settings
from pathways.state import (
    BusinessStatus,
    EscalationStatus,
    PathwayStatus,
    SlaState,
    TaskStatus,
)
from tests.workflows.support import TWO_DAY, provider, run_through_the_year, start, state_of
from workflows.pathway import PathwayWorkflow


@pytest.fixture
def env(skipping_env: WorkflowEnvironment, skipping_worker: object) -> WorkflowEnvironment:
    return skipping_env


async def test_missed_handover_escalates_in_ladder_order_reassigns_and_completes(
    env: WorkflowEnvironment, skipping_settings: Settings
) -> None:
    handle = await start(env.client, skipping_settings, TWO_DAY, DEMO_PATIENTS[0])
    await env.sleep(timedelta(days=2, hours=7))

    state = await state_of(handle)
    visit = state.handovers["first-visit.1"]
    # One escalation for the late handover: reminder (day 1.5), alert (day 2) and reassign
    # (day 2 + 6 h) raised its level; the reassignment resolved it automatically.
    (first,) = [e for e in state.escalations if e.provider_id == "nursing-north"]
    assert first.level is EscalationAction.REASSIGN
    assert (first.status, first.resolution) == (EscalationStatus.RESOLVED, "reassigned")
    assert first.raised_at is not None
    rise = first.raised_at - first.at  # rung times, give or take timer latency
    assert abs(rise - timedelta(hours=18)) < timedelta(seconds=1)
    assert visit.provider_id == "nursing-south"
    assert visit.status is TaskStatus.REQUESTED
    assert visit.complete_by == visit.ready_at + timedelta(days=2), "the patient's clock"
    assert visit.business_status is BusinessStatus.BREACHED
    assert visit.accept_breached and visit.complete_breached
    assert [a.provider_id for a in visit.attempts] == ["nursing-north", "nursing-south"]
    assert visit.attempts[0].outcome == "reassigned"

    await provider(handle, visit, TaskStatus.COMPLETED, output={"wound_ok": True})
    state = await state_of(handle)
    review = state.handovers["gp-review.1"]
    await provider(handle, review, TaskStatus.COMPLETED)

    result = await handle.result()
    assert result.status is PathwayStatus.COMPLETED
    final = await state_of(handle)
    visit = final.handovers["first-visit.1"]
    assert visit.completed_at is not None and visit.accepted_at == visit.completed_at
    assert visit.lead_time == visit.completed_at - visit.ready_at
    assert visit.lead_time > timedelta(days=2)


async def test_last_provider_missing_its_slot_leaves_a_breached_pathway_for_the_coordinator(
    env: WorkflowEnvironment, skipping_settings: Settings
) -> None:
    handle = await start(env.client, skipping_settings, TWO_DAY, DEMO_PATIENTS[1])
    await env.sleep(timedelta(days=5))

    state = await state_of(handle)
    visit = state.handovers["first-visit.1"]
    # The patient's due time passed on day 2: the second team inherits it, so only the rung
    # still ahead (mark-breached at day 2 + 12 h) fires for it, as one open escalation.
    second_attempt = [(e.level, e.status) for e in state.escalations
                      if e.provider_id == "nursing-south"]
    assert second_attempt == [(EscalationAction.MARK_BREACHED, EscalationStatus.OPEN)]
    assert visit.provider_id == "nursing-south" and visit.is_open
    assert visit.business_status is BusinessStatus.BREACHED
    assert state.sla_state is SlaState.BREACHED
    await handle.cancel()


async def test_hold_pauses_the_clocks_and_extension_moves_the_due_time(
    env: WorkflowEnvironment, skipping_settings: Settings
) -> None:
    handle = await start(env.client, skipping_settings, TWO_DAY, DEMO_PATIENTS[2])
    before = (await state_of(handle)).handovers["first-visit.1"]

    await handle.execute_update(
        PathwayWorkflow.hold, HoldPathway(reason="patient admitted", actor="coordinator:amy")
    )
    await env.sleep(timedelta(days=10))
    held = await state_of(handle)
    assert held.status is PathwayStatus.ON_HOLD
    assert held.escalations == []

    await handle.execute_update(PathwayWorkflow.resume, ResumePathway(actor="coordinator:amy"))
    resumed = (await state_of(handle)).handovers["first-visit.1"]
    assert resumed.complete_by - before.complete_by >= timedelta(days=10)

    extended = await handle.execute_update(
        PathwayWorkflow.extend_due,
        ExtendDue(
            handover_id="first-visit.1",
            by=timedelta(days=1),
            reason="awaiting equipment",
            actor="coordinator:amy",
        ),
    )
    assert extended.complete_by == resumed.complete_by + timedelta(days=1)
    # Resumed at day 10, due at day 13: the reminder (12 h before) has fired, nothing else.
    await env.sleep(timedelta(days=2, hours=18))
    later = await state_of(handle)
    assert [e.level for e in later.escalations] == [EscalationAction.REMIND_PROVIDER]
    assert later.handovers["first-visit.1"].provider_id == "nursing-north"
    await handle.cancel()


async def test_quarterly_reviews_recur_through_the_contract_year(
    env: WorkflowEnvironment, skipping_settings: Settings, catalogue: Catalogue
) -> None:
    definition = catalogue.get("ltc-annual-contract")
    handle = await start(env.client, skipping_settings, definition, DEMO_PATIENTS[3])
    final = await run_through_the_year(env, handle)

    assert final.status is PathwayStatus.COMPLETED
    reviews = sorted(
        (h for h in final.handovers.values() if h.step_id == "quarterly-review"),
        key=lambda h: h.occurrence,
    )
    assert [h.occurrence for h in reviews] == [1, 2, 3, 4]
    every = definition.step("quarterly-review").recurrence.every  # type: ignore[union-attr]
    for review in reviews[1:]:
        assert review.ready_at - reviews[0].ready_at >= every * (review.occurrence - 1)
    outcome = next(h for h in final.handovers.values() if h.step_id == "annual-outcome-review")
    assert outcome.ready_at >= reviews[-1].completed_at  # type: ignore[operator]
