"""Pathways run through the engine on the time-skipping server: the report's waiting and working
times are the ones the providers' moves made, and agree with the engine's own lead time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.analytics import flow_report
from activities.store import EventStore
from pathways.demo import DEMO_PATIENTS
from pathways.settings import Settings
from pathways.state import PathwayStatus, TaskStatus
from tests.workflows.support import TWO_DAY, provider, start, state_of

DEFINITION = TWO_DAY.model_copy(update={"id": "analytics-two-day"})
H = 3600.0
SLACK = 120.0  # seconds: an Update lands a little after the skipped-to instant


@pytest.fixture
def env(skipping_env: WorkflowEnvironment, skipping_worker: object) -> WorkflowEnvironment:
    return skipping_env


async def test_report_of_pathways_run_by_the_engine(
    env: WorkflowEnvironment, skipping_settings: Settings
) -> None:
    handle = await start(env.client, skipping_settings, DEFINITION, DEMO_PATIENTS[2])
    visit = (await state_of(handle)).handovers["first-visit.1"]
    await env.sleep(timedelta(hours=3))
    visit = await provider(handle, visit, TaskStatus.ACCEPTED)  # 3 h in transit
    await env.sleep(timedelta(hours=2))
    visit = await provider(handle, visit, TaskStatus.IN_PROGRESS)  # 2 h queued
    await env.sleep(timedelta(hours=4))
    await provider(handle, visit, TaskStatus.COMPLETED, output={"wound_ok": True})  # 4 h work
    review = (await state_of(handle)).handovers["gp-review.1"]
    await env.sleep(timedelta(hours=1))
    review = await provider(handle, review, TaskStatus.ACCEPTED)  # 1 h in transit
    await env.sleep(timedelta(minutes=30))
    await provider(handle, review, TaskStatus.COMPLETED)  # accepted, never started: 30 m work
    assert (await handle.result()).status is PathwayStatus.COMPLETED
    final = await state_of(handle)

    store = EventStore(skipping_settings.event_store)
    began = final.started_at
    report = flow_report(store, DEFINITION.id, since=began - timedelta(days=1),
                         until=began + timedelta(days=2), now=began + timedelta(days=2))
    steps = {m.key: m for m in report.steps}
    first, gp = steps["first-visit"], steps["gp-review"]
    assert first.completed == gp.completed == 1

    def near(value: float | None, hours: float) -> bool:
        return value is not None and abs(value - hours * H) <= SLACK

    assert near(first.lead.p50, 9) and near(first.waiting.p50, 5) and near(first.working.p50, 4)
    assert near(first.states.in_transit, 3) and near(first.states.queued, 2)
    assert first.states.blocked == 0
    assert near(gp.lead.p50, 1.5) and near(gp.waiting.p50, 1) and near(gp.working.p50, 0.5)
    assert gp.gap.p50 is not None and gp.gap.p50 < 1  # told the moment the visit completed
    engine_lead = final.handovers["first-visit.1"].lead_time
    assert engine_lead is not None and first.lead.p50 is not None
    assert abs(first.lead.p50 - engine_lead.total_seconds()) < 1
    assert report.overall.flow_efficiency == pytest.approx(4.5 / 10.5, abs=0.01)
    assert report.pathways.completed == 1
    assert report.pathways.lead.p50 == pytest.approx(
        (final.ended_at - final.started_at).total_seconds(), abs=1)  # type: ignore[operator]
    store.close()
