"""Nothing lost, doubled or stuck, whatever fails: ~100 pathways of three handovers each driven
through the FHIR API by provider clients, with a fault injected mid-run (see harness.py)."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.conftest import PATHWAYS
from tests.faults.harness import Cluster, Drive, check

pytestmark = pytest.mark.faults

SETTLE = 120.0


async def _mid_run(drive: Drive, fraction: float = 0.3, timeout: float = 60) -> None:
    """Wait until a fraction of the handovers has been completed by clients."""
    target = int(3 * drive.count * fraction)
    for _ in range(int(timeout / 0.2)):
        if len(drive.traffic.completed) >= target:
            return
        await asyncio.sleep(0.2)


async def test_baseline_without_faults(cluster: Cluster) -> None:
    drive = Drive(cluster, PATHWAYS)
    try:
        await drive.start_pathways()
        drive.run_providers()
        settled = await drive.wait_settled(SETTLE)
        (await check("baseline", drive, settled)).assert_clean()
    finally:
        await drive.close()


async def test_worker_killed_mid_flight_then_replaced(cluster: Cluster) -> None:
    drive = Drive(cluster, PATHWAYS)
    try:
        await drive.start_pathways()
        drive.run_providers()
        await _mid_run(drive)
        cluster.workers[0].kill()
        await asyncio.sleep(2)
        await cluster.start_worker()
        settled = await drive.wait_settled(SETTLE)
        (await check("worker-kill-9", drive, settled)).assert_clean()
    finally:
        await drive.close()
