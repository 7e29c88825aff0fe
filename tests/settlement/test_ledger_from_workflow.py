"""The ledger from a real workflow run on the time-skipping server: the events the workflow
wrote to the store give the hand-worked entries, and the ledger posted during the run equals
the one rebuilt from the stored log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.ledger import LedgerStore
from activities.store import EventStore
from pathways.catalogue import Catalogue
from pathways.demo import DEMO_PATIENTS, example_output
from pathways.settings import Settings
from pathways.settlement import LedgerEntry
from pathways.state import PathwayStatus, TaskStatus
from tests.settlement.support import CONTRACTS
from tests.workflows.support import provider, start, state_of, wait_until

UCR_TEAM, GP = "elmshire-ucr-central", "elmshire-central-pcn"


@pytest.fixture
def env(skipping_env: WorkflowEnvironment, skipping_worker: object) -> WorkflowEnvironment:
    return skipping_env


async def test_ledger_of_a_late_response_from_the_stored_log(
    env: WorkflowEnvironment, skipping_settings: Settings, catalogue: Catalogue
) -> None:
    definition = catalogue.get("urgent-community-response", 1)
    handle = await start(env.client, skipping_settings, definition, DEMO_PATIENTS[-1])
    pathway_id = handle.id
    store = EventStore(skipping_settings.event_store)
    ledger = LedgerStore(store, CONTRACTS)
    ledger.migrate()

    response = (await state_of(handle)).handovers["urgent-response.1"]
    await provider(handle, response, TaskStatus.ACCEPTED)
    await env.sleep(timedelta(hours=2, minutes=20))  # the 2-hour patient's clock breaches
    step = definition.step("urgent-response")
    await provider(handle, response, TaskStatus.COMPLETED,
                   output=example_output(step, {"disposition": "remain-at-home"}))
    await wait_until(lambda: any(e.kind == "completed" for e in store.events(pathway_id)))
    ledger.post(store.events(pathway_id)[-1].at)  # posted mid-run, as a finance job would

    gp = (await state_of(handle)).handovers["gp-follow-up.1"]
    await provider(handle, gp, TaskStatus.ACCEPTED)
    await provider(handle, gp, TaskStatus.COMPLETED,
                   output=example_output(definition.step("gp-follow-up")))
    assert (await handle.result()).status is PathwayStatus.COMPLETED
    await wait_until(lambda: store.events(pathway_id)[-1].kind == "pathway-completed")

    events = store.events(pathway_id)
    after_deadline = events[-1].at + timedelta(days=14)
    ledger.post(after_deadline)
    mine = [(e.provider_id, e.rule.value, e.amount) for e in ledger.entries()
            if e.pathway_id == pathway_id]
    # late: base and withhold, no top-up; GP on time: base, top-up, withhold; no outcome by
    # the deadline: half of each withheld share released
    assert mine == [(UCR_TEAM, "base", 18000), (UCR_TEAM, "withhold", -1800),
                    (GP, "base", 3500), (GP, "top-up", 1000), (GP, "withhold", -700),
                    (GP, "withhold-release", 350), (UCR_TEAM, "withhold-release", 900)]
    # the session's store may hold other tests' pathways: compare this pathway's lines
    def lines(entries: list[LedgerEntry]) -> list[dict[str, object]]:
        return [e.model_dump(exclude={"seq"}) for e in entries if e.pathway_id == pathway_id]

    assert lines(ledger.entries()) == lines(ledger.rebuild(after_deadline))
    breach = next(e for e in events if e.kind in ("breached", "escalated")
                  and e.handover_id == "urgent-response.1" and e.at > events[0].at
                  + timedelta(hours=1, minutes=59))
    assert breach.event_id
    store.close()
