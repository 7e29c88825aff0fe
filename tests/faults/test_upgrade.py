"""Upgrade without losing pathways: pathways started on the current code, the worker replaced
mid-pathway by one whose workflow carries a `workflow.patched` change, every pathway finished
(or left open, as its commands imply) on the new code, nothing lost, doubled or stuck."""

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
        settled = await drive.wait_settled(SETTLE)
        (await check("upgrade-patched", drive, settled)).assert_clean()
        moved_after = upgraded = 0
        for pathway_id in drive.ids:
            handle = cluster.client.get_workflow_handle(pathway_id)
            patched = [
                e async for e in handle.fetch_history_events()
                if e.HasField("marker_recorded_event_attributes")
                and PATCH.encode() in e.marker_recorded_event_attributes.SerializeToString()
            ]
            memo = await (await handle.describe()).memo()
            on_new_code = memo.get("code") == MEMO["code"]
            upgraded += on_new_code
            assert on_new_code == bool(patched), f"{pathway_id}: memo and patch marker disagree"
            if any(e.at > switched for e in cluster.store.events(pathway_id)):
                moved_after += 1
                assert on_new_code, f"{pathway_id} moved after the upgrade on the old code"
        assert moved_after > 0, "the switch came after every pathway had settled"
        print(f"FAULTS upgrade: {moved_after} of {len(drive.ids)} pathways moved on after the "
              f"worker was replaced, {upgraded} carry the patched change ({PATCH!r})", flush=True)
    finally:
        await drive.close()
