"""No command can break a pathway: an exception in an Update handler fails that Update and
leaves the pathway exactly as it was, answering the next request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from pathways.commands import AddNote
from pathways.demo import DEMO_PATIENTS
from pathways.engine import PathwayRun
from pathways.settings import Settings
from tests.workflows.support import TWO_DAY, start, state_of
from workflows.pathway import CommandFailed, PathwayWorkflow, apply_atomically

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_a_failing_command_restores_the_state_and_outbox() -> None:
    run = PathwayRun.begin("pw-unit", TWO_DAY, DEMO_PATIENTS[0], T0)
    before_state = run.state.model_dump()
    before_outbox = run.outbox.model_dump()

    def half_applied() -> None:
        run.apply_note(AddNote(text="half", actor="coordinator:amy"), T0)
        run.state.handovers["first-visit.1"].version += 7
        raise OverflowError("date value out of range")

    with pytest.raises(CommandFailed) as failed:
        apply_atomically(run, half_applied)
    assert failed.value.error == "OverflowError"
    assert failed.value.restored.state.model_dump() == before_state
    assert failed.value.restored.outbox.model_dump() == before_outbox
    assert failed.value.restored.state.definition is run.state.definition


def test_a_successful_command_is_applied_in_place() -> None:
    run = PathwayRun.begin("pw-unit", TWO_DAY, DEMO_PATIENTS[0], T0)
    note = apply_atomically(
        run, lambda: run.apply_note(AddNote(text="ok", actor="coordinator:amy"), T0)
    )
    assert run.state.notes == [note]


async def test_an_extend_that_overflows_fails_the_update_not_the_pathway(
    dev_env: WorkflowEnvironment, worker: object, settings: Settings
) -> None:
    """P99999999D overflowed in the handler on main and froze the pathway (failed workflow
    task); now it is a failed Update (or, with the engine's bounded validator, a refusal)."""
    handle = await start(dev_env.client, settings, TWO_DAY, DEMO_PATIENTS[0])
    before = await state_of(handle)
    with pytest.raises(WorkflowUpdateFailedError):  # raw JSON, as any client could send it
        await handle.execute_update(
            "extend_due",
            {"handover_id": "first-visit.1", "by": "P99999999D", "reason": "typo",
             "actor": "coordinator:amy"},
            rpc_timeout=timedelta(seconds=10),
        )
    after = await state_of(handle)
    assert after.handovers == before.handovers and after.event_seq == before.event_seq
    await handle.execute_update(
        PathwayWorkflow.add_note, AddNote(text="still here", actor="coordinator:amy"),
        rpc_timeout=timedelta(seconds=10),
    )
    assert [n.text for n in (await state_of(handle)).notes] == ["still here"]
    await handle.terminate("test over")
