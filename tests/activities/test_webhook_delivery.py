"""Webhook delivery against a real HTTP server on 127.0.0.1, and the activities that use it.

The provider system verifies each request with the reference `standardwebhooks` package; our own
`verify` (what the README shows providers) is checked against the same requests and the spec's
published test vector.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment

from activities.notify import WebhookVerificationError, deliver, sign, verify
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
from pathways.model import Provider
from pathways.settings import Settings, WebhookSecret
from tests.fixtures.provider_system import ProviderSystem, Received

SECRETS = (WebhookSecret("gp-1", 1, b"provider-secret-of-at-least-24-bytes"),)
WHSEC = SECRETS[0].whsec
TASK = {"resourceType": "Task", "id": "pw-1.gp-review.1", "status": "requested",
        "for": {"reference": "Patient/SENTINEL-9434765919"}, "intent": "order"}
KEY = "pw-1.gp-review.1.v3.dispatched"


@pytest.fixture(scope="module")
def provider() -> Iterator[ProviderSystem]:
    """Verifies with the provider's secret, as a provider system following the README would."""
    system = ProviderSystem(secrets=[WHSEC])
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
        return int(sock.getsockname()[1])


def counted(buffer: MetricBuffer, name: str) -> list[dict[str, object]]:
    """Attributes of each counter update named `name` (one per increment of 1)."""
    updates = [u for u in buffer.retrieve_updates() if u.metric.name == name]
    return [dict(u.attributes) for u in updates for _ in range(int(u.value))]


def stamp_of(request: Received) -> int:
    return int(request.headers["webhook-timestamp"])


def test_signature_matches_the_spec_test_vector() -> None:
    """The published Standard Webhooks example: the same bytes any provider library computes."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    key = WebhookSecret("any", 1, base64.b64decode(secret.removeprefix("whsec_")))
    msg_id, stamp, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(msg_id, stamp, body, [key]) == expected
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": expected}
    verify(body, headers, [secret], now=stamp)
    with pytest.raises(WebhookVerificationError):
        verify(body, headers, [secret], now=stamp + 301)


async def test_delivery_is_signed_the_standard_webhooks_way(
    provider: ProviderSystem, http: httpx.AsyncClient
) -> None:
    status = await deliver(http, notification(provider.url + "/hooks/tasks"), SECRETS)
    assert status == 202
    request = provider.received[-1]
    assert request.verified is True  # the reference package, with the provider's whsec_ secret
    verify(request.body, request.headers, [WHSEC])
    assert request.path == "/hooks/tasks"
    assert request.body == json.dumps(TASK, separators=(",", ":"), sort_keys=True).encode()
    assert request.headers["Content-Type"] == "application/fhir+json"
    assert request.headers["webhook-id"] == request.headers["Idempotency-Key"] == KEY
    assert abs(stamp_of(request) - time.time()) < 5
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["X-Pathways-Event"] == "dispatched"
    assert request.headers["X-Pathways-Key-Ids"] == "v1"
    assert "X-Pathways-Signature" not in request.headers


async def test_tampering_a_wrong_secret_or_a_stale_timestamp_fail_verification(
    provider: ProviderSystem, http: httpx.AsyncClient
) -> None:
    await deliver(http, notification(provider.url + "/hook"), SECRETS)
    request = provider.received[-1]
    body, headers, stamp = request.body, request.headers, stamp_of(request)
    verify(body, headers, [WHSEC], now=stamp + 299)
    verify(body, headers, [WHSEC], now=stamp + 600, tolerance=timedelta(minutes=11))
    refused = [
        (body.replace(b"requested", b"completed"), headers, [WHSEC], stamp),
        (body, headers, [WebhookSecret("gp-1", 1, b"another-secret-24-bytes-long").whsec], stamp),
        (body, headers, [WHSEC], stamp + 301),
        (body, headers, [WHSEC], stamp - 301),
        (body, headers | {"webhook-id": "pw-1.gp-review.1.v4.dispatched"}, [WHSEC], stamp),
        (body, headers | {"webhook-timestamp": str(stamp + 1)}, [WHSEC], stamp),
    ]
    for bad_body, bad_headers, secrets, now in refused:
        with pytest.raises(WebhookVerificationError):
            verify(bad_body, bad_headers, secrets, now=now)


@pytest.mark.parametrize("signature", ["", "v1", "v1,", "v1,zz!", "v2,abc", "sha256=abc", "v1,a,b"])
def test_malformed_headers_fail_verification_without_crashing(signature: str) -> None:
    headers = {"webhook-id": KEY, "webhook-timestamp": str(int(time.time())),
               "webhook-signature": signature}
    with pytest.raises(WebhookVerificationError):
        verify(b"{}", headers, [WHSEC])
    with pytest.raises(WebhookVerificationError):
        verify(b"{}", headers | {"webhook-timestamp": "soon"}, [WHSEC])


async def test_a_provider_with_the_wrong_secret_refuses_and_the_delivery_is_retried(
    http: httpx.AsyncClient,
) -> None:
    system = ProviderSystem(secrets=[WebhookSecret("gp-1", 1, b"not-this-provider-secret").whsec])
    try:
        with pytest.raises(ApplicationError) as raised:
            await deliver(http, notification(system.url + "/hook"), SECRETS)
    finally:
        system.close()
    assert system.received[-1].verified is False
    assert raised.value.type == "WebhookStatus4xx" and not raised.value.non_retryable


@pytest.mark.parametrize("status", [400, 401, 404, 409, 410, 422, 429, 500, 502, 503])
async def test_every_non_2xx_answer_is_retryable_and_names_its_class(
    provider: ProviderSystem, http: httpx.AsyncClient, status: int
) -> None:
    with pytest.raises(ApplicationError) as raised:
        await deliver(http, notification(f"{provider.url}/status/{status}"), SECRETS)
    assert not raised.value.non_retryable
    assert raised.value.type == f"WebhookStatus{status // 100}xx"
    assert str(status) in raised.value.message
    assert "SENTINEL" not in raised.value.message and "Task" not in raised.value.message


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_a_retryable_failure_and_is_not_followed(
    provider: ProviderSystem, http: httpx.AsyncClient, status: int
) -> None:
    before = len(provider.received)
    with pytest.raises(ApplicationError) as raised:
        await deliver(http, notification(f"{provider.url}/status/{status}"), SECRETS)
    assert raised.value.type == "WebhookStatus3xx" and not raised.value.non_retryable
    assert "redirects are not followed" in raised.value.message
    assert [r.path for r in provider.received[before:]] == [f"/status/{status}"]


async def test_connection_refused_is_retryable(http: httpx.AsyncClient) -> None:
    with pytest.raises(ApplicationError) as raised:
        await deliver(http, notification(f"http://127.0.0.1:{refused_port()}/hook"), SECRETS)
    assert not raised.value.non_retryable
    assert raised.value.type == "WebhookUnreachable"


@pytest.mark.parametrize("url", ["http://provider.example/hook", "http://10.0.0.8/hook",
                                 "http://[2001:db8::1]/hook", "http://localhost.example/hook"])
async def test_plain_http_off_loopback_is_refused_for_good_at_send_time(
    http: httpx.AsyncClient, url: str
) -> None:
    with pytest.raises(ApplicationError) as raised:
        await deliver(http, notification(url), SECRETS)
    assert raised.value.type == "WebhookInsecureUrl" and raised.value.non_retryable
    assert "https" in raised.value.message


@pytest.mark.parametrize("url", ["http://provider.example/hook", "http://192.168.1.20:8080/h",
                                 "http://[2001:db8::1]/hook", "ftp://127.0.0.1/hook"])
def test_a_definition_refuses_plain_http_webhooks_off_loopback(url: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Provider(id="gp-a", name="GP A", webhook=url)
    assert "webhook" in str(raised.value)


@pytest.mark.parametrize("url", ["https://provider.example/hook", "http://127.0.0.1:9/h",
                                 "http://127.8.0.1/h", "http://[::1]:9/h", "http://localhost:9/h"])
def test_a_definition_accepts_https_and_loopback_webhooks(url: str) -> None:
    assert Provider(id="gp-a", name="GP A", webhook=url).webhook is not None


def test_the_refusal_says_what_is_allowed() -> None:
    with pytest.raises(ValidationError) as raised:
        Provider(id="gp-a", name="GP A", webhook="http://provider.example/hook")
    [error] = raised.value.errors()
    assert error["loc"] == ("webhook",)
    assert "must use https" in error["msg"] and "loopback" in error["msg"]


def activities(
    tmp_path: Path, http: httpx.AsyncClient, **overrides: Any
) -> tuple[PathwayActivities, Settings, EventStore]:
    settings = Settings(data_dir=tmp_path, secret_key="test-key", metrics_port=0,
                        **overrides)
    store = EventStore(settings.event_store)
    store.migrate()
    return PathwayActivities(settings, store, http), settings, store


async def test_notify_provider_activity_signs_with_the_provider_secret(
    http: httpx.AsyncClient, tmp_path: Path, metrics: tuple[Runtime, MetricBuffer],
) -> None:
    acts, settings, _ = activities(tmp_path, http)
    [current] = settings.webhook_secrets("gp-7")
    system = ProviderSystem(secrets=[current.whsec])
    env = ActivityEnvironment()
    env.metric_meter = metrics[0].metric_meter
    counted(metrics[1], "pathways_notifications_total")
    try:
        assert await env.run(acts.notify_provider, notification(system.url + "/hook", "gp-7")) == 202
        request = system.received[-1]
        assert request.verified is True
        with pytest.raises(WebhookVerificationError):
            verify(request.body, request.headers, [settings.webhook_secrets("gp-1")[0].whsec])

        with pytest.raises(ApplicationError) as raised:
            await env.run(acts.notify_provider, notification(system.url + "/status/404", "gp-7"))
        assert not raised.value.non_retryable
    finally:
        system.close()
    outcomes = counted(metrics[1], "pathways_notifications_total")
    assert [o["outcome"] for o in outcomes] == ["delivered", "retrying"]
    assert all(set(o) >= {"outcome", "kind"} and "pw-1" not in o.values() for o in outcomes)


async def test_during_rotation_old_and_new_secrets_both_verify(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    acts, settings, _ = activities(tmp_path, http, webhook_secret_versions={"gp-7": [2, 1]})
    new, old = settings.webhook_secrets("gp-7")
    assert (new.key_id, old.key_id) == ("v2", "v1") and new.key != old.key
    before = Settings(data_dir=tmp_path, secret_key="test-key")
    assert before.webhook_secrets("gp-7")[0].key == old.key  # v1 is the secret used until now

    for provider_knows in (old, new):
        system = ProviderSystem(secrets=[provider_knows.whsec])
        try:
            env = ActivityEnvironment()
            assert await env.run(acts.notify_provider, notification(system.url + "/h", "gp-7")) == 202
        finally:
            system.close()
        request = system.received[-1]
        assert request.verified is True
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        assert request.headers["X-Pathways-Key-Ids"] == "v2 v1"
        verify(request.body, request.headers, [provider_knows.whsec])

    done, _, _ = activities(tmp_path, http, webhook_secret_versions={"gp-7": [2]})
    system = ProviderSystem(secrets=[old.whsec])
    try:
        with pytest.raises(ApplicationError):
            await ActivityEnvironment().run(done.notify_provider,
                                            notification(system.url + "/h", "gp-7"))
    finally:
        system.close()
    assert system.received[-1].verified is False  # once rotated out, the old secret is refused


def test_secret_versions_must_be_usable(tmp_path: Path) -> None:
    bad_versions: list[dict[str, list[int]]] = [{"gp-7": []}, {"gp-7": [2, 2]}, {"gp-7": [0]}]
    for bad in bad_versions:
        with pytest.raises(ValidationError):
            Settings(data_dir=tmp_path, webhook_secret_versions=bad)
    everyone = Settings(data_dir=tmp_path, secret_key="k",
                        webhook_secret_versions={"*": [3, 2], "gp-1": [1]})
    assert [s.version for s in everyone.webhook_secrets("gp-7")] == [3, 2]
    assert [s.version for s in everyone.webhook_secrets("gp-1")] == [1]
    shown = repr(everyone.webhook_secrets("gp-7"))
    assert all(repr(s.key) not in shown and s.whsec not in shown for s in everyone.webhook_secrets("gp-7"))


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
    kinds = sorted(str(a["kind"]) for a in counted(metrics[1], "pathways_events_recorded_total"))
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
