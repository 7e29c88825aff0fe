"""A real `pathways worker` exports on-call gauges derived from the event store, and the
Prometheus alert rules and Grafana dashboard in deploy/ parse and reference only metrics that
worker really exports (scraped, not listed by hand)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml
from temporalio.testing import WorkflowEnvironment

from activities.store import EventStore
from bench.handover_throughput import DEFINITION
from pathways.demo import DEMO_PATIENTS
from pathways.events import EventKind, PathwayEvent, PathwayRow, RecordBatch
from pathways.model import PathwayDefinition
from tests.conftest import make_settings
from tests.ops.processes import PATHWAYS, env_for, free_port
from worker.metrics import NAMES
from workflows.client import start_pathway

DEPLOY = Path(__file__).parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "pathways-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "pathways-dashboard.json"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
METRIC_NAME = re.compile(r"\b((?:pathways|temporal)_[a-zA-Z0-9_:]+)")
BUILTIN = {"up"}
"""Series Prometheus makes itself for every scrape target."""

Samples = dict[str, list[tuple[dict[str, str], float]]]


def fast_breaching() -> PathwayDefinition:
    """The two-step bench pathway with a first step due in seconds: it escalates and breaches
    while the test watches (the attention counter the breach-rate alert reads)."""
    data = DEFINITION.model_dump(mode="json", exclude_none=True)
    data["id"] = "fast-breach"
    data["steps"][0]["sla"] = {"accept_within": "PT1S", "complete_within": "PT2S"}
    data["steps"][0]["escalation"] = [
        {"clock": "accept", "at": "PT0S", "action": "alert-coordinator"},
        {"clock": "complete", "at": "PT0S", "action": "mark-breached"},
    ]
    return PathwayDefinition.model_validate(data)


def parse(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(LABEL.findall(match[3] or ""))
            samples.setdefault(match[1], []).append((labels, float(match[4])))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    for found, number in samples.get(name, []):
        if all(found.get(k) == v for k, v in labels.items()):
            return number
    return None


def seed(store: EventStore, now: datetime) -> None:
    """What the workflows would have recorded: a running pathway with a coordinator escalation
    raised two hours ago, and a pathway Temporal terminated."""
    started = now - timedelta(hours=3)

    def row(pathway_id: str, status: str, sla: str) -> PathwayRow:
        return PathwayRow(
            pathway_id=pathway_id, definition_id="seeded", definition_version=1,
            lead_provider="lead", status=status, sla_state=sla, open_steps=[],
            open_providers=[], open_step_titles=[], started_at=started, updated_at=now,
        )

    escalated = PathwayEvent(
        event_id="pw-seeded-1:1", pathway_id="pw-seeded-1", definition_id="seeded",
        definition_version=1, seq=1, kind=EventKind.ESCALATED, at=now - timedelta(hours=2),
        handover_id="visit.1", step_id="visit", provider_id="nurses",
        detail={"escalation_id": 1, "level": "alert-coordinator", "reason": "accept overdue"},
    )
    store.record(RecordBatch(events=[escalated], pathway=row("pw-seeded-1", "active", "at-risk")))
    store.record(RecordBatch(pathway=row("pw-seeded-2", "terminated", "on-track")))


async def scrape(port: int, until: str, timeout: float = 60) -> Samples:
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(int(timeout / 0.5)):
            try:
                samples = parse((await http.get(f"http://127.0.0.1:{port}/metrics")).text)
                if until in samples:
                    return samples
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    raise AssertionError(f"{until} never exported")


async def test_worker_exports_read_model_gauges_and_deploy_files_use_only_exported_metrics(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, dev_env.client.service_client.config.target_host,
                             task_queue="metrics-export")
    store = EventStore(settings.event_store)
    store.migrate()
    seed(store, datetime.now(UTC))
    port = free_port()
    env = env_for(settings, PATHWAYS_METRICS_PORT=str(port))
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([PATHWAYS, "worker"], env=env, stdout=log, stderr=log)
    try:
        ids = [await start_pathway(dev_env.client, settings, DEFINITION, DEMO_PATIENTS[n])
               for n in range(3)]
        await dev_env.client.get_workflow_handle(ids[0]).terminate("test: closed outside")
        await start_pathway(dev_env.client, settings, fast_breaching(), DEMO_PATIENTS[3])
        # a workflow task this worker cannot run (an unregistered type): a task failure
        await dev_env.client.start_workflow("NotAPathway", id=f"not-a-pathway-{port}",
                                            task_queue=settings.task_queue)
        await scrape(port, "temporal_workflow_task_execution_failed")
        samples = await scrape(port, "pathways_attention_events_total")
        for _ in range(60):  # the gauges refresh every 15 s; the first read is at start
            waiting = value(samples, "pathways_handovers_waiting", provider="h",
                            status="requested")
            if waiting is not None and waiting >= 2:
                break
            await asyncio.sleep(1)
            samples = await scrape(port, "pathways_open")
        # a restart of the worker loses no count: they come from the read model
        assert value(samples, "pathways_open", definition="seeded", status="active",
                     sla_state="at-risk") == 1
        assert value(samples, "pathways_escalations_open", definition="seeded") == 1
        age = value(samples, "pathways_escalation_oldest_age_seconds")
        assert age is not None and 7100 < age < 7400
        assert value(samples, "pathways_closed_outside", definition="seeded",
                     status="terminated") == 1
        assert (value(samples, "pathways_handovers_waiting", provider="h", status="requested")
                or 0) >= 2
        for name in NAMES:
            assert name in samples, name
        exported = set(samples) | BUILTIN
        labels_text = json.dumps([labels for rows in samples.values() for labels, _ in rows])
        assert "943" not in labels_text and "Test Patient" not in labels_text

        rules = yaml.safe_load(ALERTS.read_text())
        alerts = [rule for group in rules["groups"] for rule in group["rules"]]
        assert {"PathwaysSlaBreachRate", "PathwaysOldestEscalation", "PathwaysTaskQueueBacklog",
                "PathwaysWorkflowTaskFailures", "PathwaysTerminated"} <= {
                    r["alert"] for r in alerts}
        for rule in alerts:
            assert {"alert", "expr", "labels", "annotations"} <= rule.keys(), rule
            used = set(METRIC_NAME.findall(rule["expr"]))
            assert used or "up{" in rule["expr"], rule["alert"]
            assert used <= exported, (rule["alert"], used - exported)
        dashboard = json.loads(DASHBOARD.read_text())
        exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
        assert len(exprs) >= 6
        for expr in exprs:
            used = set(METRIC_NAME.findall(expr))
            assert used and used <= exported, (expr, used - exported)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        log.close()
        store.close()
