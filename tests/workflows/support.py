"""Helpers for driving real pathway workflows in tests."""

from __future__ import annotations

import asyncio
import inspect
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError

from pathways.commands import ProviderCommand, Refusal
from pathways.demo import example_output
from pathways.model import PathwayDefinition
from pathways.state import Handover, PathwayState, TaskStatus
from workflows.client import refusal_of
from workflows.pathway import PathwayWorkflow


async def state_of(handle: WorkflowHandle) -> PathwayState:
    return await handle.query(PathwayWorkflow.state)


async def provider(
    handle: WorkflowHandle,
    handover: Handover,
    status: TaskStatus,
    output: dict[str, Any] | None = None,
    reason: str | None = None,
    provider_id: str | None = None,
    expected_version: int | None = None,
) -> Handover:
    who = provider_id or handover.provider_id
    return await handle.execute_update(
        PathwayWorkflow.provider_update,
        ProviderCommand(
            handover_id=handover.id,
            provider_id=who,
            status=status,
            output=output or {},
            reason=reason,
            expected_version=expected_version,
            actor=f"provider:{who}",
        ),
    )


async def refused(call: Any) -> Refusal:
    """Await an Update that must be refused; return the engine's Refusal."""
    try:
        await call
    except WorkflowUpdateFailedError as error:
        refusal = refusal_of(error)
        assert refusal is not None, f"refused for another reason: {error.cause!r}"
        return refusal
    raise AssertionError("the command was applied, expected a refusal")


async def deliver_everything(
    handle: WorkflowHandle, choices: dict[str, dict[str, Any]] | None = None
) -> PathwayState:
    """Act as every provider: accept, start and complete each open handover until none is open.

    `choices` overrides delivered values per step (to steer conditions).
    """
    while True:
        state = await state_of(handle)
        open_now = [h for h in state.handovers.values() if h.is_open]
        if not open_now or state.is_finished:
            return state
        for handover in open_now:
            step = state.definition.step(handover.step_id)
            await provider(handle, handover, TaskStatus.ACCEPTED)
            await provider(handle, handover, TaskStatus.IN_PROGRESS)
            data = example_output(step, (choices or {}).get(step.id))
            await provider(handle, handover, TaskStatus.COMPLETED, output=data)


async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll a predicate, sync or async, until it returns something truthy (eventually
    consistent reads: visibility, the read model)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def start(client: Client, settings: Any, definition: Any, patient: Any) -> WorkflowHandle:
    from workflows.client import start_pathway

    pathway_id = await start_pathway(client, settings, definition, patient)
    return client.get_workflow_handle_for(PathwayWorkflow.run, pathway_id)


TWO_DAY = PathwayDefinition.model_validate(  # two providers, a 2-day SLA, a four-rung ladder
    {
        "id": "two-day-handover",
        "version": 1,
        "title": "Two-day handover",
        "lead_provider": {"id": "lead", "name": "Lead Provider"},
        "roles": [
            {
                "id": "nursing",
                "title": "Community nursing",
                "providers": [
                    {"id": "nursing-north", "name": "Nursing North"},
                    {"id": "nursing-south", "name": "Nursing South"},
                ],
            },
            {"id": "gp", "title": "GP", "providers": [{"id": "gp-one", "name": "GP One"}]},
        ],
        "escalation": [
            {"at": "-PT12H", "action": "remind-provider"},
            {"at": "PT0S", "action": "alert-coordinator"},
            {"at": "PT6H", "action": "reassign"},
            {"at": "PT12H", "action": "mark-breached"},
        ],
        "steps": [
            {
                "id": "first-visit",
                "title": "First home visit",
                "role": "nursing",
                "sla": {"accept_within": "P1D", "complete_within": "P2D"},
                "handover": [{"name": "wound_ok", "type": "boolean"}],
            },
            {
                "id": "gp-review",
                "title": "GP review",
                "role": "gp",
                "after": ["first-visit"],
                "sla": {"accept_within": "P1D", "complete_within": "P2D"},
            },
        ],
    }
)


async def run_through_the_year(env: Any, handle: WorkflowHandle) -> PathwayState:
    """Deliver every handover as it comes, skipping time to each next occurrence, until done."""
    for _ in range(20):
        state = await deliver_everything(handle)
        if state.is_finished:
            return state
        pending = [s.next_ready_at for s in state.steps.values() if s.next_ready_at]
        assert pending, "nothing open and nothing scheduled, yet the pathway is not finished"
        await env.sleep(min(pending) - state.updated_at + timedelta(minutes=1))
    raise AssertionError("the pathway did not finish")


def with_webhooks(url: str) -> PathwayDefinition:
    data = TWO_DAY.model_dump(mode="json")
    for role in data["roles"]:
        for entry in role["providers"]:
            entry["webhook"] = f"{url}/{entry['id']}"
    return PathwayDefinition.model_validate(data)
