"""Every shipped pathway, end to end, on the Temporal dev server with a real worker and event store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.store import EventStore
from pathways.catalogue import Catalogue
from pathways.demo import DEMO_PATIENTS
from pathways.events import EventKind, PathwayEvent
from pathways.settings import Settings
from pathways.state import PathwayState, PathwayStatus, StepStatus
from tests.workflows.support import deliver_everything, start, state_of, wait_until
from workflows import search

SHIPPED = ["cardiac-surgery-recovery", "hip-replacement-d2a", "urgent-community-response",
           "ltc-annual-contract"]


def assert_flow_recorded(state: PathwayState) -> None:
    """Every delivered handover has its times in order; every skipped step's condition failed."""
    for step in state.definition.steps:
        step_state = state.steps[step.id]
        if step_state.status is StepStatus.SKIPPED:
            condition = step.when
            assert condition is not None, f"{step.id} skipped without a condition"
            source = [h for h in state.handovers.values() if h.step_id == condition.step]
            delivered = source[-1].output.get(condition.field) if source else None
            assert not condition.holds(delivered), f"{step.id} skipped although its condition held"
    for handover in state.handovers.values():
        if handover.completed_at is None:
            continue
        assert handover.inputs_complete_at <= handover.dispatched_at
        assert handover.ready_at <= handover.dispatched_at <= handover.accepted_at  # type: ignore[operator]
        assert handover.accepted_at <= handover.started_at <= handover.completed_at  # type: ignore[operator]
        assert handover.handover_gap == timedelta(0)
        assert handover.work_time is not None and handover.wait_time is not None


@pytest.mark.parametrize("definition_id", SHIPPED)
async def test_shipped_pathway_runs_to_completion_or_next_recurrence(
    definition_id: str,
    dev_env: WorkflowEnvironment,
    worker: object,
    settings: Settings,
    catalogue: Catalogue,
) -> None:
    definition = catalogue.get(definition_id)
    handle = await start(dev_env.client, settings, definition, DEMO_PATIENTS[0])

    state = await deliver_everything(handle)
    assert_flow_recorded(state)
    recurring = [s for s in definition.steps if s.recurrence]
    if recurring:
        # The next occurrence is months away: the pathway waits on a durable timer.
        assert state.status is PathwayStatus.ACTIVE
        assert any(state.steps[s.id].next_ready_at for s in recurring)
        await handle.cancel()
        return
    assert state.status is PathwayStatus.COMPLETED
    assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED

    store = EventStore(settings.event_store)

    def completed_log() -> list[PathwayEvent] | None:
        events = store.events(handle.id)
        return events if events and events[-1].kind is EventKind.PATHWAY_COMPLETED else None

    events = await wait_until(completed_log)
    kinds_by_handover: dict[str, set[EventKind]] = {}
    for event in events:
        if event.handover_id:
            kinds_by_handover.setdefault(event.handover_id, set()).add(event.kind)
    for handover_id in state.handovers:
        assert {EventKind.READY, EventKind.DISPATCHED, EventKind.ACCEPTED, EventKind.STARTED,
                EventKind.COMPLETED} <= kinds_by_handover[handover_id]
    assert [e.seq for e in events] == sorted(e.seq for e in events)


async def test_search_attributes_let_ops_find_pathways_without_patient_data(
    dev_env: WorkflowEnvironment, worker: object, settings: Settings, catalogue: Catalogue
) -> None:
    definition = catalogue.get("cardiac-surgery-recovery")
    patient = DEMO_PATIENTS[1]
    handle = await start(dev_env.client, settings, definition, patient)
    state = await state_of(handle)
    first_provider = next(iter(state.handovers.values())).provider_id
    query = (
        f"PathwayDefinition = '{definition.id}' AND PathwayOpenProviders = '{first_provider}'"
        f" AND PathwaySlaState = 'on-track' AND PathwayPatientKey = "
        f"'{settings.patient_key(patient.nhs_number)}'"
    )

    async def listed() -> list[str]:
        return [w.id async for w in dev_env.client.list_workflows(query)]

    assert handle.id in await wait_until(listed)
    description = await handle.describe()
    attributes = description.typed_search_attributes
    assert attributes.get(search.DEFINITION_VERSION) == definition.version
    assert attributes.get(search.LEAD_PROVIDER) == definition.lead_provider.id
    shown = " ".join(str(p.value) for p in attributes) + handle.id
    assert patient.nhs_number not in shown and (patient.name or "") not in shown
    await handle.cancel()

