"""Handover throughput and Update latency on the embedded default (dev server on a SQLite file).

    make bench            # or: .venv/bin/python -m bench.handover_throughput --pathways 100

Starts a Temporal dev server persisting to a temporary SQLite file and one in-process worker,
starts N pathways of a two-step definition, then has every provider complete its handover
straight from `requested` (one Update each), all pathways concurrently. Reports handovers per
second, Update latency percentiles and history events per handover, and appends them to
bench/RESULTS.md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.store import EventStore
from pathways.commands import ProviderCommand
from pathways.demo import DEMO_PATIENTS, example_output
from pathways.logs import configure_logging
from pathways.model import PathwayDefinition
from pathways.settings import Settings
from pathways.state import TaskStatus
from worker.binaries import installed_binary
from worker.main import running_worker
from workflows import search
from workflows.client import start_pathway
from workflows.codec import Keyring, encrypted_converter, new_key_line
from workflows.pathway import PathwayWorkflow

RESULTS = Path(__file__).parent / "RESULTS.md"

DEFINITION = PathwayDefinition.model_validate(
    {
        "id": "bench-two-step",
        "version": 1,
        "title": "Discharge summary then community visit",
        "lead_provider": {"id": "lead", "name": "Lead"},
        "roles": [
            {"id": "hospital", "title": "Hospital", "providers": [{"id": "h", "name": "H"}]},
            {"id": "nursing", "title": "Nursing", "providers": [{"id": "n", "name": "N"}]},
        ],
        "steps": [
            {
                "id": "discharge-summary",
                "title": "Discharge summary",
                "role": "hospital",
                "sla": {"accept_within": "PT2H", "complete_within": "P1D"},
                "handover": [{"name": "medication_list", "type": "text"}],
            },
            {
                "id": "first-visit",
                "title": "First visit",
                "role": "nursing",
                "after": ["discharge-summary"],
                "sla": {"accept_within": "PT4H", "complete_within": "P2D"},
                "handover": [{"name": "wound_ok", "type": "boolean"}],
            },
        ],
    }
)


async def complete_all(handle: WorkflowHandle[Any, Any], latencies: list[float]) -> int:
    """Complete each handover as it becomes open; returns how many were completed."""
    done = 0
    while True:
        state = await handle.query(PathwayWorkflow.state)
        open_now = state.open_handovers
        if not open_now:
            return done
        for handover in open_now:
            command = ProviderCommand(
                handover_id=handover.id,
                provider_id=handover.provider_id,
                status=TaskStatus.COMPLETED,
                output=example_output(DEFINITION.step(handover.step_id)),
                actor=f"provider:{handover.provider_id}",
            )
            began = time.perf_counter()
            await handle.execute_update(PathwayWorkflow.provider_update, command)
            latencies.append(time.perf_counter() - began)
            done += 1


async def measure(client: Client, settings: Settings, pathways: int) -> dict[str, float]:
    ids = [
        await start_pathway(client, settings, DEFINITION, DEMO_PATIENTS[n % 4])
        for n in range(pathways)
    ]
    handles = [client.get_workflow_handle(pathway_id) for pathway_id in ids]
    latencies: list[float] = []
    began = time.perf_counter()
    counts = await asyncio.gather(*(complete_all(h, latencies) for h in handles))
    elapsed = time.perf_counter() - began
    await asyncio.gather(*(h.result() for h in handles))
    events = sum([len((await h.fetch_history()).events) for h in handles[:10]]) / 10
    latencies.sort()
    return {
        "pathways": pathways,
        "handovers": sum(counts),
        "seconds": elapsed,
        "handovers_per_second": sum(counts) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
        "events_per_pathway": events,
        "events_per_handover": events / 2,
    }


async def run(pathways: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        env = await WorkflowEnvironment.start_local(
            data_converter=encrypted_converter(Keyring.parse(new_key_line("bench"), "bench")),
            search_attributes=search.ALL_KEYS,
            dev_server_existing_path=installed_binary("temporal"),
            dev_server_database_filename=str(Path(data_dir) / "temporal.db"),
        )
        async with env:
            settings = Settings(
                data_dir=Path(data_dir),
                temporal_address=env.client.service_client.config.target_host,
                metrics_port=0,
                health_port=0,
                secret_key="bench",
                task_queue="bench",
            )
            EventStore(settings.event_store).migrate()
            async with running_worker(env.client, settings):
                await measure(env.client, settings, 5)  # warm up
                return await measure(env.client, settings, pathways)
    raise AssertionError("unreachable")


def record(result: dict[str, float], command: str) -> str:
    line = (
        f"| {datetime.now(UTC):%Y-%m-%d} | {platform.machine()}, {os.cpu_count()} cores "
        f"| {command} | {result['pathways']:.0f} | {result['handovers_per_second']:.1f} "
        f"| {result['p50_ms']:.0f} | {result['p95_ms']:.0f} | {result['events_per_handover']:.1f} |"
    )
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\nOne Update per handover (complete straight from requested), "
            "all pathways concurrently, dev server on a SQLite file, worker and client in one "
            "process on the same machine.\n\n"
            "| date | machine | command | pathways | handovers/s | Update p50 ms "
            "| Update p95 ms | history events / handover |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
        )
    RESULTS.write_text(_after_own_table(RESULTS.read_text(), line))
    return line


def _after_own_table(text: str, line: str) -> str:
    """Insert the row at the end of this benchmark's table (other benchmarks' sections follow)."""
    lines = text.splitlines()
    header = next(i for i, row in enumerate(lines) if row.startswith("| date | machine | command | pathways |"))
    end = header
    while end + 1 < len(lines) and lines[end + 1].startswith("|"):
        end += 1
    return "\n".join([*lines[: end + 1], line, *lines[end + 1 :]]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pathways", type=int, default=100)
    args = parser.parse_args()
    configure_logging("console", "WARNING")
    result = asyncio.run(run(args.pathways))
    command = f"python -m bench.handover_throughput --pathways {args.pathways}"
    print(record(result, command))
    os._exit(0)  # the SDK's runtime can crash the interpreter at exit (sdk-python issue 300)


if __name__ == "__main__":
    main()
