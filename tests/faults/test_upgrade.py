"""Upgrade without losing pathways: pathways started on the current code, the worker replaced
mid-pathway by one whose workflow carries a `workflow.patched` change, every pathway finished
(or left open, as its commands imply) on the new worker, nothing lost, doubled or stuck.

Temporal's patch semantics: a run that was in flight at the switch keeps the old branch to its
end (its history replays exactly as recorded; it moves to the new branch at its next
continue-as-new), a run started after the switch takes the new one."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest

from tests.faults.harness import Cluster, Drive, check
from tests.faults.test_faults import SETTLE, _mid_run
from tests.faults.upgraded_workflow import MEMO, PATCH

pytestmark = pytest.mark.faults

UPGRADED = [sys.executable, "-m", "tests.faults.upgraded_worker"]


async def test_worker_replaced_mid_pathway_by_a_patched_workflow(cluster: Cluster) -> None:
    assert cluster.client is not None
    drive = Drive(cluster, 40)
    try:
        await drive.start_pathways()
        drive.run_providers()
        await _mid_run(drive, 0.4)
        old = cluster.workers[0]
        assert await cluster.stop_worker(old) == 0  # SIGTERM: running tasks finish
        switched = datetime.now(UTC)
        await cluster.start_worker(UPGRADED)
        started_after = set(await drive.start_pathways(more=10))
        settled = await drive.wait_settled(SETTLE)
        (await check("upgrade-patched", drive, settled)).assert_clean()
        moved_after = 0
        for pathway_id in drive.ids:
            handle = cluster.client.get_workflow_handle(pathway_id)
            history = [e async for e in handle.fetch_history_events()]
            patched = [
                e for e in history
                if e.HasField("marker_recorded_event_attributes")
                and PATCH.encode() in e.marker_recorded_event_attributes.SerializeToString()
            ]
            first_task = next(e.event_time.ToDatetime(UTC) for e in history
                              if e.HasField("workflow_task_completed_event_attributes"))
            # ran no code before the switch (its first task waited): all on the new code
            fresh = pathway_id in started_after or first_task > switched
            memo = await (await handle.describe()).memo()
            new_branch = memo.get("code") == MEMO["code"]
            assert new_branch == bool(patched), f"{pathway_id}: memo and patch marker disagree"
            # in flight at the switch: the old branch to the end of this run (replays as
            # recorded); started after it: the new branch
            assert new_branch == fresh, (pathway_id, new_branch)
            if not fresh and any(
                e.at > switched for e in cluster.store.events(pathway_id)
            ):
                moved_after += 1
        assert moved_after > 0, "the switch came after every pathway had settled"
        print(f"FAULTS upgrade: {moved_after} of {len(drive.ids) - len(started_after)} pathways "
              f"in flight moved on after the worker was replaced (old branch, replayed); "
              f"{len(started_after)} started after it took the patched branch", flush=True)
    finally:
        await drive.close()
