"""Nothing lost, doubled or stuck, whatever fails: 60 pathways (PATHWAYS_FAULT_PATHWAYS) of three handovers each driven
through the FHIR API by provider clients, with a fault injected mid-run (see harness.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from pathways.events import EventKind
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


def _held_up(cluster: Cluster, back: float) -> int:
    """Webhooks dispatched (event recorded) before the endpoint came back, received after."""
    first = cluster.receiver.first_accepted()
    held = 0
    for key, received in first.items():
        pathway_id, _, rest = key.partition(".")
        handover_id = rest.rsplit(".", 2)[0]
        dispatched = [e.at.timestamp() for e in cluster.store.events(pathway_id)
                      if e.kind is EventKind.DISPATCHED and e.handover_id == handover_id]
        held += bool(dispatched) and dispatched[0] < back - 1 and received > back
    return held


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
        (await check("worker-kill-9", drive, settled, redelivery_possible=True)).assert_clean()
    finally:
        await drive.close()


async def test_dev_server_stopped_and_restarted_on_the_same_database(cluster: Cluster) -> None:
    drive = Drive(cluster, PATHWAYS)
    try:
        await drive.start_pathways()
        drive.run_providers()
        await _mid_run(drive)
        await cluster.stop_server()
        await asyncio.sleep(3)
        await cluster.start_server()
        settled = await drive.wait_settled(SETTLE)
        (await check("dev-server-restart", drive, settled, redelivery_possible=True)).assert_clean()
    finally:
        await drive.close()


async def test_api_restarted_while_clients_retry_the_same_puts(cluster: Cluster) -> None:
    drive = Drive(cluster, PATHWAYS)
    try:
        await drive.start_pathways()
        drive.run_providers()
        await _mid_run(drive, 0.2)
        assert cluster.api is not None
        cluster.api.kill()
        await asyncio.sleep(2)
        await cluster.start_api()
        await _mid_run(drive, 0.5)
        await asyncio.to_thread(cluster.api.stop)  # graceful this time
        await cluster.start_api()
        settled = await drive.wait_settled(SETTLE)
        report = await check("api-restart", drive, settled)
        report.assert_clean()
        assert report.unreachable > 0, "the restarts should have been seen by clients"
    finally:
        await drive.close()


async def test_provider_webhook_refuses_connections_then_recovers(cluster: Cluster) -> None:
    drive = Drive(cluster, PATHWAYS)
    try:
        await drive.start_pathways()
        drive.run_providers()
        await _mid_run(drive, 0.2)
        cluster.receiver.refuse()
        await asyncio.sleep(10)
        cluster.receiver.accept()
        back = time.time()
        settled = await drive.wait_settled(SETTLE)
        (await check("webhook-refused", drive, settled)).assert_clean()
        assert _held_up(cluster, back) > 0, "no webhook was held up by the refusal"
    finally:
        await drive.close()


async def test_provider_webhook_answers_500_then_recovers(cluster: Cluster) -> None:
    drive = Drive(cluster, PATHWAYS)
    try:
        await drive.start_pathways()
        drive.run_providers()
        await _mid_run(drive, 0.2)
        cluster.receiver.failing = True
        await asyncio.sleep(10)
        cluster.receiver.failing = False
        settled = await drive.wait_settled(SETTLE)
        report = await check("webhook-500", drive, settled)
        report.assert_clean()
        assert report.webhook_attempts > report.webhook_ids, "some webhooks should have failed"
    finally:
        await drive.close()


async def test_two_workers_on_one_task_queue_one_killed(cluster: Cluster) -> None:
    await cluster.start_worker()
    drive = Drive(cluster, PATHWAYS)
    try:
        await drive.start_pathways()
        drive.run_providers()
        await _mid_run(drive)
        cluster.workers[0].kill()
        settled = await drive.wait_settled(SETTLE)
        (await check("two-workers-one-killed", drive, settled, redelivery_possible=True)).assert_clean()
    finally:
        await drive.close()
