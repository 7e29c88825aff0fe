"""Worklist page render time with many open pathways in the event store.

Fills a fresh SQLite event store with N open pathways (one open handover each, a spread of
definitions, providers, SLA states and due times; one in ten escalated), signs a coordinator in
and times GET / over the app's own ASGI stack (routing, session check, read-model queries,
template), for the first page of several views. Patient names and accept-by times come from the
rendered Tasks in the read model, as on a real stack; no engine is involved.

    python -m bench.console_worklist --pathways 10000 --rounds 30
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from activities.store import EventStore
from api.app import create_app
from api.problems import unavailable
from pathways.events import (
    EventKind,
    HandoverRow,
    PathwayEvent,
    PathwayRow,
    RecordBatch,
    TaskVersion,
)
from pathways.settings import SHIPPED_CATALOGUE, Settings
from workflows.codec import new_key_line

DEFINITIONS = ["hip-replacement-d2a", "urgent-community-response", "cardiac-surgery-recovery"]
PROVIDERS = ["elmshire-reablement", "kestrel-home-care", "fenwick-park-hospital", "gp-north"]
STATES = ["on-track"] * 7 + ["at-risk"] * 2 + ["breached"]
VIEWS = {
    "default (urgency)": "/",
    "breached queue": "/?queue=breached",
    "escalated queue": "/?queue=escalated",
    "definition + provider": "/?definition=hip-replacement-d2a&provider=gp-north",
    "search": "/?q=review",
    "sort by queue age": "/?sort=age",
    "page 40": "/?page=40",
    "escalation inbox (one in ten escalated)": "/escalations",
}


class NoEngine:
    """A gateway that answers at once that the engine is unavailable (no names)."""

    async def state(self, pathway_id: str) -> None:
        raise unavailable("benchmark: no engine")


def fill(store: EventStore, count: int) -> None:
    now = datetime.now(UTC)
    for index in range(count):
        pathway_id = f"pw-{index:016x}"
        definition = DEFINITIONS[index % len(DEFINITIONS)]
        provider = PROVIDERS[index % len(PROVIDERS)]
        state = STATES[index % len(STATES)]
        ready = now - timedelta(minutes=index % 2000)
        due = ready + timedelta(hours=(index % 72) - 24)
        step = f"step-{index % 9}"
        events = [
            PathwayEvent(
                event_id=f"{pathway_id}:1",
                pathway_id=pathway_id,
                definition_id=definition,
                definition_version=1,
                seq=1,
                kind=EventKind.PATHWAY_STARTED,
                at=ready,
            )
        ]
        if index % 10 == 0:
            events.append(
                PathwayEvent(
                    event_id=f"{pathway_id}:2",
                    pathway_id=pathway_id,
                    definition_id=definition,
                    definition_version=1,
                    seq=2,
                    kind=EventKind.ESCALATED,
                    at=ready,
                    handover_id=f"{step}.1",
                    step_id=step,
                    provider_id=provider,
                    detail={"escalation_id": 1, "level": "alert-coordinator", "reason": "late"},
                )
            )
        task = {
            "resourceType": "Task",
            "id": f"{pathway_id}.{step}.1",
            "for": {"display": f"Patient {index}"},
            "restriction": {
                "period": {"end": due.isoformat()},
                "extension": [
                    {
                        "url": "urn:pathways:extension:accept-by",
                        "valueDateTime": (ready + timedelta(hours=2)).isoformat(),
                    }
                ],
            },
        }
        store.record(
            RecordBatch(
                tasks=[TaskVersion(task_id=f"{pathway_id}.{step}.1", version=1, task=task)],
                events=events,
                handovers=[
                    HandoverRow(
                        task_id=f"{pathway_id}.{step}.1",
                        pathway_id=pathway_id,
                        definition_id=definition,
                        handover_id=f"{step}.1",
                        step_id=step,
                        occurrence=1,
                        provider_id=provider,
                        status="requested",
                        business_status=state,
                        version=1,
                        ready_at=ready,
                        complete_by=due,
                        updated_at=ready,
                    )
                ],
                pathway=PathwayRow(
                    pathway_id=pathway_id,
                    definition_id=definition,
                    definition_version=1,
                    lead_provider="lead",
                    status="active",
                    sla_state=state,
                    open_steps=[step],
                    open_providers=[provider],
                    open_step_titles=[f"Review {step}" if index % 3 == 0 else f"Visit {step}"],
                    started_at=ready,
                    updated_at=ready,
                ),
            )
        )


async def measure(pathways: int, rounds: int) -> dict[str, list[float]]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-console-"))
    (data_dir / "encryption.keys").write_text(new_key_line("bench") + "\n")
    settings = Settings(
        data_dir=data_dir,
        temporal_address="127.0.0.1:1",
        secret_key="bench",
        catalogue_dir=SHIPPED_CATALOGUE,
        metrics_port=0,
        health_port=0,
    )
    store = EventStore(settings.event_store)
    store.migrate()
    started = time.perf_counter()
    await asyncio.to_thread(fill, store, pathways)
    print(f"filled {pathways} pathways in {time.perf_counter() - started:.1f} s")
    app = create_app(settings)
    app.state.gateway = NoEngine()
    token = app.state.tokens.issue_coordinator("bench")
    transport = httpx.ASGITransport(app=app)
    timings: dict[str, list[float]] = {name: [] for name in VIEWS}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        client.cookies.set("pathways_console", token)
        for _ in range(rounds):
            for name, path in VIEWS.items():
                begin = time.perf_counter()
                response = await client.get(path)
                timings[name].append((time.perf_counter() - begin) * 1000)
                assert response.status_code == 200, (path, response.status_code)
                assert "Name unavailable" not in response.text  # names from the read model
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pathways", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    timings = asyncio.run(measure(args.pathways, args.rounds))
    print("| view | p50 ms | p95 ms |")
    print("| --- | --- | --- |")
    for name, values in timings.items():
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        print(f"| {name} | {statistics.median(values):.0f} | {p95:.0f} |")


if __name__ == "__main__":
    main()
