"""Provider and coordinator commands as Updates: applied, refused with reasons, or repeated safely."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.store import EventStore
from pathways.commands import AddNote, CancelPathway, EscalationAction, HoldPathway, Reassign
from pathways.demo import DEMO_PATIENTS
from pathways.events import EventKind
from pathways.settings import Settings
from pathways.state import EscalationStatus, PathwayStatus, TaskStatus
from tests.workflows.support import TWO_DAY, provider, refused, start, state_of
from workflows.pathway import PathwayWorkflow

VISIT = "first-visit.1"


@pytest.fixture
async def handle(dev_env: WorkflowEnvironment, worker: object, settings: Settings) -> WorkflowHandle:
    return await start(dev_env.client, settings, TWO_DAY, DEMO_PATIENTS[0])


async def unchanged_after(handle: WorkflowHandle, call: object, **expect: object) -> object:
    """Run a refused command; the whole state must be exactly as before."""
    before = (await state_of(handle)).model_dump_json()
    refusal = await refused(call)
    assert (await state_of(handle)).model_dump_json() == before
    for name, value in expect.items():
        assert getattr(refusal, name) == value
    return refusal


@pytest.mark.parametrize(
    ("setup", "target"),
    [
        ([], TaskStatus.IN_PROGRESS),
        ([], TaskStatus.ON_HOLD),
        ([], TaskStatus.FAILED),
        ([TaskStatus.ACCEPTED], TaskStatus.REJECTED),
        ([TaskStatus.ACCEPTED], TaskStatus.REQUESTED),
        ([TaskStatus.ACCEPTED, TaskStatus.IN_PROGRESS], TaskStatus.ACCEPTED),
        ([TaskStatus.ACCEPTED], TaskStatus.CANCELLED),
    ],
)
async def test_forbidden_transitions_are_refused_and_change_nothing(
    handle: WorkflowHandle, setup: list[TaskStatus], target: TaskStatus
) -> None:
    for status in setup:
        await provider(handle, (await state_of(handle)).handovers[VISIT], status)
    visit = (await state_of(handle)).handovers[VISIT]
    reason = "no capacity" if target in (TaskStatus.REJECTED, TaskStatus.FAILED) else None
    await unchanged_after(
        handle, provider(handle, visit, target, reason=reason), kind="conflict"
    )


async def test_non_conforming_delivery_is_refused_listing_every_problem_and_counted(
    handle: WorkflowHandle,
) -> None:
    visit = (await state_of(handle)).handovers[VISIT]
    refusal = await refused(
        provider(handle, visit, TaskStatus.COMPLETED, output={"wound_ok": "yes", "colour": "red"})
    )
    assert refusal.kind == "non-conforming"
    assert any("wound_ok" in p for p in refusal.problems)
    assert any("colour" in p for p in refusal.problems)
    after = (await state_of(handle)).handovers[VISIT]
    assert after.refused_deliveries == 1
    assert after.model_dump(exclude={"refused_deliveries"}) == visit.model_dump(
        exclude={"refused_deliveries"}
    )
    missing = await refused(provider(handle, visit, TaskStatus.COMPLETED, output={}))
    assert any("wound_ok" in p for p in missing.problems)
    done = await provider(handle, visit, TaskStatus.COMPLETED, output={"wound_ok": True})
    assert done.status is TaskStatus.COMPLETED and done.refused_deliveries == 2


async def test_another_providers_handover_looks_like_no_handover(handle: WorkflowHandle) -> None:
    visit = (await state_of(handle)).handovers[VISIT]
    other = await unchanged_after(
        handle,
        provider(handle, visit, TaskStatus.ACCEPTED, provider_id="nursing-south"),
        kind="not-found",
    )
    unknown = await refused(
        provider(handle, visit.model_copy(update={"id": "no-such-step.1"}), TaskStatus.ACCEPTED)
    )
    assert unknown.kind == "not-found"
    assert "nursing-north" not in " ".join(other.problems)  # type: ignore[attr-defined]


async def test_repeating_an_applied_command_is_acknowledged_without_a_second_effect(
    handle: WorkflowHandle,
) -> None:
    visit = (await state_of(handle)).handovers[VISIT]
    first = await provider(handle, visit, TaskStatus.ACCEPTED)
    again = await provider(handle, visit, TaskStatus.ACCEPTED)
    assert again == first
    assert (await state_of(handle)).handovers[VISIT].version == first.version


async def test_stale_version_is_a_conflict(handle: WorkflowHandle) -> None:
    visit = (await state_of(handle)).handovers[VISIT]
    await provider(handle, visit, TaskStatus.ACCEPTED, expected_version=visit.version)
    current = (await state_of(handle)).handovers[VISIT]
    await unchanged_after(
        handle,
        provider(handle, current, TaskStatus.IN_PROGRESS, expected_version=visit.version),
        kind="conflict",
    )


async def test_rejection_goes_to_the_alternate_then_to_the_coordinator(
    handle: WorkflowHandle,
) -> None:
    visit = (await state_of(handle)).handovers[VISIT]
    moved = await provider(handle, visit, TaskStatus.REJECTED, reason="outside our area")
    assert moved.provider_id == "nursing-south" and moved.status is TaskStatus.REQUESTED
    assert moved.attempts[0].outcome == "rejected" and moved.attempts[0].reason == "outside our area"

    await provider(handle, moved, TaskStatus.ACCEPTED)
    failed = await provider(
        handle, (await state_of(handle)).handovers[VISIT], TaskStatus.FAILED, reason="staff sick"
    )
    assert failed.status is TaskStatus.FAILED
    state = await state_of(handle)
    assert state.escalations[-1].level.value == "alert-coordinator"
    assert state.status is PathwayStatus.ACTIVE

    escalation = state.escalations[-1]
    acknowledged = await handle.execute_update(
        PathwayWorkflow.acknowledge_escalation,
        EscalationAction(escalation_id=escalation.id, actor="coordinator:amy"),
    )
    assert acknowledged.status is EscalationStatus.ACKNOWLEDGED
    assert acknowledged.acknowledged_by == "coordinator:amy"
    reassigned = await handle.execute_update(
        PathwayWorkflow.reassign,
        Reassign(handover_id=VISIT, provider_id="nursing-north", reason="capacity back",
                 actor="coordinator:amy"),
    )
    assert reassigned.provider_id == "nursing-north" and reassigned.status is TaskStatus.REQUESTED
    settled = (await state_of(handle)).escalations[-1]
    assert (settled.id, settled.status, settled.resolution) == (
        escalation.id, EscalationStatus.RESOLVED, "reassigned"), "reassignment resolves it"


async def test_coordinator_reassign_outside_the_role_is_refused(handle: WorkflowHandle) -> None:
    await unchanged_after(
        handle,
        handle.execute_update(
            PathwayWorkflow.reassign,
            Reassign(handover_id=VISIT, provider_id="gp-one", reason="x", actor="coordinator:amy"),
        ),
    )


async def test_cancel_closes_open_handovers_and_finishes_the_workflow(
    handle: WorkflowHandle,
) -> None:
    await handle.execute_update(
        PathwayWorkflow.add_note, AddNote(text="family informed", actor="coordinator:amy")
    )
    await handle.execute_update(
        PathwayWorkflow.hold, HoldPathway(reason="admitted", actor="coordinator:amy")
    )
    visit = (await state_of(handle)).handovers[VISIT]
    await unchanged_after(handle, provider(handle, visit, TaskStatus.ACCEPTED), kind="conflict")
    cancelled = await handle.execute_update(
        PathwayWorkflow.cancel, CancelPathway(reason="patient moved away", actor="coordinator:amy")
    )
    assert cancelled.status is PathwayStatus.CANCELLED
    assert (await state_of(handle)).handovers[VISIT].status is TaskStatus.CANCELLED
    result = await handle.result()
    assert result.status is PathwayStatus.CANCELLED
    final = await state_of(handle)
    assert [n.text for n in final.notes] == ["family informed"]


async def test_cancelling_the_workflow_in_temporal_cancels_the_pathway_properly(
    handle: WorkflowHandle, settings: Settings
) -> None:
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    final = await state_of(handle)
    assert final.status is PathwayStatus.CANCELLED
    assert final.handovers[VISIT].status is TaskStatus.CANCELLED
    store = EventStore(settings.event_store)
    kinds = [e.kind for e in store.events(handle.id)]
    assert kinds[-1] is EventKind.PATHWAY_CANCELLED
    assert EventKind.CANCELLED in kinds
