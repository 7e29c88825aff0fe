"""Webhook delivery against a real HTTP server on 127.0.0.1, and the activities that use it."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment

from activities.notify import deliver, verify_signature
from activities.pathway_activities import PathwayActivities
from activities.store import EventStore
from pathways.events import (
    EventKind,
    Notification,
    NotificationKind,
    PathwayEvent,
    PathwayRow,
    RecordBatch,
)
from pathways.settings import Settings
from tests.fixtures.provider_system import ProviderSystem

SECRET = b"provider-secret"
TASK = {"resourceType": "Task", "id": "pw-1.gp-review.1", "status": "requested",
        "for": {"reference": "Patient/SENTINEL-9434765919"}, "intent": "order"}


@pytest.fixture(scope="module")
def provider() -> Iterator[ProviderSystem]:
    system = ProviderSystem()
    yield system
    system.close()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture(scope="module")
def metrics() -> tuple[Runtime, MetricBuffer]:
    buffer = MetricBuffer(10_000)
    return Runtime(telemetry=TelemetryConfig(metrics=buffer)), buffer


def notification(webhook: str, provider_id: str = "gp-1") -> Notification:
    return Notification(pathway_id="pw-1", handover_id="gp-review.1", provider_id=provider_id,
                        webhook=webhook, kind=NotificationKind.DISPATCHED, version=3, task=TASK)


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def counted(buffer: MetricBuffer, name: str) -> list[dict[str, object]]:
    """Attributes of each counter update named `name` (one per increment of 1)."""
    updates = [u for u in buffer.retrieve_updates() if u.metric.name == name]
    return [dict(u.attributes) for u in updates for _ in range(int(u.value))]


async def test_delivery_is_signed_and_keyed(
    provider: ProviderSystem, http: httpx.AsyncClient
) -> None:
    status = await deliver(http, notification(provider.url + "/hooks/tasks"), SECRET)
    assert status == 202
    request = provider.received[-1]
    assert request.path == "/hooks/tasks"
    assert json.loads(request.body) == TASK
    assert request.body == json.dumps(TASK, separators=(",", ":"), sort_keys=True).encode()
    assert request.headers["Content-Type"] == "application/fhir+json"
    assert request.headers["Idempotency-Key"] == "pw-1.gp-review.1.v3.dispatched"
    assert request.headers["X-Pathways-Event"] == "dispatched"
    signature = request.headers["X-Pathways-Signature"]
    assert signature.startswith("sha256=")
    assert verify_signature(request.body, signature, SECRET)
    assert not verify_signature(request.body, signature, b"another-secret")
    assert not verify_signature(request.body.replace(b"requested", b"completed"), signature, SECRET)


def test_malformed_signatures_do_not_verify() -> None:
    assert not verify_signature(b"{}", "", SECRET)
    assert not verify_signature(b"{}", "sha256=zz", SECRET)
    assert not verify_signature(b"{}", "md5=abc", SECRET)


@pytest.mark.parametrize("status", [500, 503, 429, 408])
async def test_server_trouble_is_retryable(
    provider: ProviderSystem, http: httpx.AsyncClient, status: int
) -> None:
    with pytest.raises(ApplicationError) as raised:
        await deliver(http, notification(f"{provider.url}/status/{status}"), SECRET)
    assert not raised.value.non_retryable
    assert str(status) in raised.value.message
    assert "SENTINEL" not in raised.value.message


@pytest.mark.parametrize("status", [400, 404, 410])
async def test_refusal_is_not_retryable(
    provider: ProviderSystem, http: httpx.AsyncClient, status: int
) -> None:
    with pytest.raises(ApplicationError) as raised:
        await deliver(http, notification(f"{provider.url}/status/{status}"), SECRET)
    assert raised.value.non_retryable
    assert str(status) in raised.value.message
    assert "SENTINEL" not in raised.value.message


async def test_connection_refused_is_retryable(http: httpx.AsyncClient) -> None:
    with pytest.raises(ApplicationError) as raised:
        await deliver(http, notification(f"http://127.0.0.1:{refused_port()}/hook"), SECRET)
    assert not raised.value.non_retryable
    assert raised.value.type == "WebhookUnreachable"


def activities(
    tmp_path: Path, http: httpx.AsyncClient
) -> tuple[PathwayActivities, Settings, EventStore]:
    settings = Settings(data_dir=tmp_path, secret_key="test-key", metrics_port=0)
    store = EventStore(settings.event_store)
    store.migrate()
    return PathwayActivities(settings, store, http), settings, store


async def test_notify_provider_activity_signs_with_the_provider_secret(
    provider: ProviderSystem, http: httpx.AsyncClient, tmp_path: Path,
    metrics: tuple[Runtime, MetricBuffer],
) -> None:
    acts, settings, _ = activities(tmp_path, http)
    env = ActivityEnvironment()
    env.metric_meter = metrics[0].metric_meter
    counted(metrics[1], "pathways_notifications_total")

    assert await env.run(acts.notify_provider, notification(provider.url + "/hook", "gp-7")) == 202
    request = provider.received[-1]
    signature = request.headers["X-Pathways-Signature"]
    assert verify_signature(request.body, signature, settings.webhook_secret("gp-7"))
    assert not verify_signature(request.body, signature, settings.webhook_secret("gp-1"))

    with pytest.raises(ApplicationError):
        await env.run(acts.notify_provider, notification(provider.url + "/status/400"))
    outcomes = counted(metrics[1], "pathways_notifications_total")
    assert [o["outcome"] for o in outcomes] == ["delivered", "refused"]
    assert all(set(o) >= {"outcome", "kind"} and "pw-1" not in o.values() for o in outcomes)


def batch(at: datetime) -> RecordBatch:
    row = PathwayRow(pathway_id="pw-1", definition_id="hip", definition_version=1,
                     lead_provider="lead-1", status="active", sla_state="on-track", open_steps=[],
                     open_providers=[], open_step_titles=[], started_at=at, updated_at=at)
    kinds = [EventKind.PATHWAY_STARTED, EventKind.DISPATCHED, EventKind.DISPATCHED]
    events = [PathwayEvent(event_id=f"pw-1:{n}", pathway_id="pw-1", definition_id="hip",
                           definition_version=1, seq=n, kind=kind, at=at)
              for n, kind in enumerate(kinds, start=1)]
    return RecordBatch(events=events, pathway=row)


async def test_record_events_activity_writes_and_counts_by_kind(
    http: httpx.AsyncClient, tmp_path: Path, metrics: tuple[Runtime, MetricBuffer]
) -> None:
    acts, _, store = activities(tmp_path, http)
    env = ActivityEnvironment()
    env.metric_meter = metrics[0].metric_meter
    counted(metrics[1], "pathways_events_recorded_total")

    env.run(acts.record_events, batch(datetime(2026, 3, 1, tzinfo=UTC)))
    assert [e.seq for e in store.events("pw-1")] == [1, 2, 3]
    kinds = sorted(a["kind"] for a in counted(metrics[1], "pathways_events_recorded_total"))
    assert kinds == ["dispatched", "dispatched", "pathway-started"]


async def test_record_events_refuses_a_bad_batch_for_good(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    acts, _, store = activities(tmp_path, http)
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(acts.record_events, batch(datetime(2026, 3, 1)))
    assert raised.value.non_retryable
    assert "timezone-aware" in raised.value.message
    assert store.events("pw-1") == []
