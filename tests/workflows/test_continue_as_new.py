"""Long pathways stay small: the run continues as new, carrying its whole state."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from pathways.commands import AddNote
from pathways.demo import DEMO_PATIENTS
from pathways.settings import Settings
from pathways.state import PathwayStatus, TaskStatus
from tests.workflows.support import TWO_DAY, provider, state_of
from workflows.client import new_pathway_id
from workflows.pathway import PathwayInput, PathwayWorkflow


async def test_state_survives_continue_as_new_and_the_pathway_completes(
    dev_env: WorkflowEnvironment, worker: object, settings: Settings
) -> None:
    started = await dev_env.client.start_workflow(
        PathwayWorkflow.run,
        PathwayInput(
            definition=TWO_DAY,
            patient=DEMO_PATIENTS[3],
            search_attributes=False,
            max_history_events=40,
        ),
        id=new_pathway_id(),
        task_queue=settings.task_queue,
    )
    first_run = started.result_run_id
    handle = dev_env.client.get_workflow_handle_for(PathwayWorkflow.run, started.id)  # newest run
    for n in range(12):
        await handle.execute_update(
            PathwayWorkflow.add_note, AddNote(text=f"call {n}", actor="coordinator:amy")
        )
    visit = (await state_of(handle)).handovers["first-visit.1"]
    await provider(handle, visit, TaskStatus.ACCEPTED)
    await provider(handle, visit, TaskStatus.COMPLETED, output={"wound_ok": True})
    review = (await state_of(handle)).handovers["gp-review.1"]
    await provider(handle, review, TaskStatus.COMPLETED)

    result = await handle.result()
    assert result.status is PathwayStatus.COMPLETED
    description = await handle.describe()
    assert description.run_id != first_run
    final = await state_of(handle)
    assert [note.text for note in final.notes] == [f"call {n}" for n in range(12)]
    assert final.handovers["first-visit.1"].output == {"wound_ok": True}
    assert len((await handle.fetch_history()).events) < 60
