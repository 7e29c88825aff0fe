"""FHIR Subscriptions end to end: a provider system subscribes over the FHIR API, a real
subscriber process receives the notifications over HTTP, the delivery loop the worker runs
sends them from the event store, pathways run on the real worker and Temporal dev server.

The subscriber is a separate Python process (a small HTTP server that appends each POST to a
file and answers 200), so "down" is a killed process and "up" is a new one on the same port.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.parameters import Parameters
from sqlalchemy import update

from activities.clients import ClientStore
from activities.notify import verify
from activities.subscriptions import LIVE, SubscriptionStore, subscriptions
from api.smart import issue_access_token
from pathways.catalogue import Catalogue
from pathways.subscriptions import FILTER_CRITERIA, HEARTBEAT_PERIOD, PAYLOAD_CONTENT, topic_url
from tests.api.conftest import RunningApi, free_port
from tests.api.flow import HIP, bearer, fhir_outputs, put_status, read_task, start_pathway
from tests.ops.processes import PATHWAYS, env_for
from worker.subscriptions import Delivery, Timing, endpoint_client

pytestmark = pytest.mark.devserver

ORTHO = "elmshire-elective-ortho-centre"
HUB = "elmshire-care-transfer-hub"
KINGSBRIDGE = "kingsbridge-treatment-centre"  # the next orthopaedic centre of the role
FAST = Timing(poll_seconds=0.2, first_backoff_seconds=0.3, max_backoff_seconds=1.0,
              handshake_waits=(0.3, 0.6))

SUBSCRIBER = r"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, out, delay, status = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
lock = threading.Lock()

class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(delay)
        line = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                "raw": raw.decode(), "at": time.time()}
        with lock, open(out, "a") as f:
            f.write(json.dumps(line) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", port), Hook).serve_forever()
"""


class Subscriber:
    """A subscriber process on a fixed port: start, stop (killed), start again."""

    def __init__(self, directory: Path, delay: float = 0.0, status: int = 200) -> None:
        self.port = free_port()
        self.out = directory / f"received-{self.port}.jsonl"
        self.delay = delay
        self.status = status
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, str(self.port), str(self.out), str(self.delay),
             str(self.status)]
        )
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    await client.get(self.url("/"), timeout=1)
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise AssertionError("the subscriber did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def received(self, path: str) -> list[dict[str, Any]]:
        """Every notification POSTed to `path`, in arrival order, with its parsed Bundle."""
        if not self.out.exists():
            return []
        lines = [json.loads(line) for line in self.out.read_text().splitlines() if line]
        return [line | {"bundle": json.loads(line["raw"])} for line in lines if line["path"] == path]


@pytest.fixture(autouse=True)
def any_endpoint(api: RunningApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """These subscribers listen on loopback: the on-premises policy (PATHWAYS_SUBSCRIPTION_ENDPOINTS
    =any), for the API and for the delivery loops started on its settings."""
    monkeypatch.setattr(api.settings, "subscription_endpoints", "any")


@pytest.fixture
def subscriber(tmp_path: Path) -> Iterator[Subscriber]:
    made = Subscriber(tmp_path)
    yield made
    made.stop()


@pytest_asyncio.fixture
async def delivery(api: RunningApi) -> AsyncIterator[Callable[..., Delivery]]:
    """Start the worker's delivery loop (as `pathways worker` runs it); each call starts a new
    one (a restarted worker); all are stopped at the end."""
    running: list[tuple[Delivery, asyncio.Task[None]]] = []
    http = httpx.AsyncClient()
    store = SubscriptionStore(api.settings.event_store)

    def start(timing: Timing = FAST) -> Delivery:
        loop = Delivery(api.settings, store, http, timing)
        running.append((loop, asyncio.ensure_future(loop.run())))
        return loop

    yield start
    for loop, task in running:
        loop.stop.set()
        await asyncio.wait_for(task, 30)
    with store.store.write() as conn:  # no later worker process in the session sends for them
        conn.execute(update(subscriptions).where(subscriptions.c.status.in_(LIVE)).values(status="off"))
    await http.aclose()
    store.close()


def subscription(api: RunningApi, endpoint: str, *filters: str, content: str = "id-only",
                 heartbeat: int | None = None, headers: list[str] | None = None) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": content}]},
        "header": headers or [],
    }
    if heartbeat is not None:
        channel["extension"] = [{"url": HEARTBEAT_PERIOD, "valueUnsignedInt": heartbeat}]
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": topic_url(api.settings.base_url),
        "_criteria": {"extension": [{"url": FILTER_CRITERIA, "valueString": f} for f in filters]},
        "channel": channel,
    }


async def until(check: Callable[[], Any], seconds: float = 20, what: str = "condition") -> Any:
    for _ in range(int(seconds / 0.1)):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def status_of(notification: dict[str, Any]) -> dict[str, Any]:
    """The notification's status Parameters as {name: parameter}, events as a list."""
    parameters = notification["bundle"]["entry"][0]["resource"]
    values: dict[str, Any] = {}
    for parameter in parameters["parameter"]:
        if parameter["name"] == "notification-event":
            parts = {p["name"]: p for p in parameter["part"]}
            values.setdefault("events", []).append(parts)
        else:
            values[parameter["name"]] = parameter
    return values


def kind(notification: dict[str, Any]) -> str:
    return str(status_of(notification)["type"]["valueCode"])


def events_of(notifications: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(event number, focus Task URL) of every event notification, in arrival order."""
    found = []
    for notification in notifications:
        if kind(notification) == "event-notification":
            for event in status_of(notification)["events"]:
                focus = event.get("focus", {}).get("valueReference", {}).get("reference", "")
                found.append((int(event["event-number"]["valueString"]), focus))
    return found


async def subscribe(http: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]) -> str:
    response = await http.post("/fhir/Subscription", json=body, headers=auth)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "requested"
    return str(created["id"])


async def active(http: httpx.AsyncClient, auth: dict[str, str], sub_id: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        return dict((await http.get(f"/fhir/Subscription/{sub_id}", headers=auth)).json())

    for _ in range(200):
        resource = await read()
        if resource["status"] != "requested":
            return resource
        await asyncio.sleep(0.1)
    raise AssertionError("the subscription stayed requested")


async def test_a_provider_subscribes_and_its_system_follows_its_handovers(
    api: RunningApi,
    http: httpx.AsyncClient,
    coordinator: dict[str, str],
    catalogue: Catalogue,
    subscriber: Subscriber,
    delivery: Callable[[], Delivery],
) -> None:
    """Handshake, then every change to the provider's Tasks in order (full resource), a
    heartbeat while quiet, catch-up by $events and by retry after the subscriber was down, and
    never another provider's Task (the hub's subscription gets its own, id-only)."""
    ortho, hub = bearer(api.provider_token(ORTHO)), bearer(api.provider_token(HUB))
    await subscriber.start()
    ortho_sub = await subscribe(http, ortho, subscription(
        api, subscriber.url("/ortho"), content="full-resource", heartbeat=2,
        headers=["Authorization: Bearer subscriber-secret"],
    ))
    hub_sub = await subscribe(http, hub, subscription(api, subscriber.url("/hub"), "Task?status=requested"))
    delivery()

    assert (await active(http, ortho, ortho_sub))["status"] == "active"
    assert (await active(http, hub, hub_sub))["status"] == "active"
    handshake = subscriber.received("/ortho")[0]
    assert kind(handshake) == "handshake" and status_of(handshake)["status"]["valueCode"] == "requested"
    assert handshake["headers"]["authorization"] == "Bearer subscriber-secret"
    whsecs = [s.whsec for s in api.settings.webhook_secrets(ORTHO)]
    verify(handshake["raw"].encode(), handshake["headers"], whsecs)  # Standard Webhooks signed

    pathway_id = await start_pathway(http, coordinator)
    mine = f"{pathway_id}.hip-replacement.1"
    task = await read_task(http, mine, ortho)
    accepted = await put_status(http, task, "accepted", ortho)
    assert accepted.status_code == 200, accepted.text

    def my_tasks() -> list[dict[str, Any]]:
        found = []
        for notification in subscriber.received("/ortho"):
            for entry in notification["bundle"]["entry"][1:]:
                if entry["resource"]["id"] == mine:
                    found.append(entry["resource"])
        return found

    await until(lambda: len(my_tasks()) >= 2, what="two notifications of the Task")
    assert [t["status"] for t in my_tasks()][:2] == ["requested", "accepted"]
    history = (await http.get(f"/fhir/Task/{mine}/_history", headers=ortho)).json()
    versions = {e["response"]["etag"]: e for e in history["entry"]}
    notified = [e for n in subscriber.received("/ortho") for e in n["bundle"]["entry"][1:]
                if e["resource"]["id"] == mine]
    for entry in notified[:2]:  # one history entry of a version, however it reaches the provider
        assert entry == versions[entry["response"]["etag"]]
    await until(lambda: any(kind(n) == "heartbeat" for n in subscriber.received("/ortho")), 10, "a heartbeat")

    subscriber.stop()  # the provider's system goes down; the handover moves on meanwhile
    step = catalogue.get(HIP).step("hip-replacement")
    done = await put_status(http, accepted.json(), "completed", ortho, output=fhir_outputs(step))
    assert done.status_code == 200, done.text
    hubs = f"{pathway_id}.discharge-assessment.1"
    await read_task(http, hubs, hub)

    async def status() -> dict[str, Any]:
        bundle = (await http.get(f"/fhir/Subscription/{ortho_sub}/$status", headers=ortho)).json()
        assert bundle["type"] == "searchset"
        return {p["name"]: p for p in bundle["entry"][0]["resource"]["parameter"]}

    for _ in range(100):
        now = await status()
        if int(now["events-since-subscription-start"]["valueString"]) > int(now["events-delivered"]["valueString"]) \
                and "error" in now:
            break
        await asyncio.sleep(0.1)
    assert "unreachable" in now["error"]["valueCodeableConcept"]["text"]
    missed = int(now["events-delivered"]["valueString"]) + 1
    caught = await http.get(f"/fhir/Subscription/{ortho_sub}/$events", headers=ortho,
                            params={"eventsSinceNumber": str(missed)})
    assert caught.status_code == 200, caught.text
    bundle = caught.json()
    assert bundle["type"] == "history"
    assert {p["name"]: p for p in bundle["entry"][0]["resource"]["parameter"]}["type"]["valueCode"] == "query-event"
    assert "completed" in [e["resource"]["status"] for e in bundle["entry"][1:] if e["resource"]["id"] == mine]

    await subscriber.start()  # back up: the retry delivers what was missed, in order
    await until(lambda: "completed" in [t["status"] for t in my_tasks()], what="the missed completion")
    statuses = [t["status"] for t in my_tasks()]
    assert statuses == sorted(statuses, key=["requested", "accepted", "completed"].index)
    numbers = [n for n, _ in events_of(subscriber.received("/ortho"))]
    assert numbers == list(range(1, len(numbers) + 1)), numbers  # in order, none lost or doubled

    await until(lambda: events_of(subscriber.received("/hub")), what="the hub's notification")
    hub_focus = {focus for _, focus in events_of(subscriber.received("/hub"))}
    assert f"{api.settings.base_url}/fhir/Task/{hubs}" in hub_focus
    assert all(not focus.endswith(f"/Task/{hubs}") for _, focus in events_of(subscriber.received("/ortho")))
    assert all(not focus.endswith(f"/Task/{mine}") for focus in hub_focus)
    for notification in subscriber.received("/hub"):  # id-only: the status Parameters alone
        assert len(notification["bundle"]["entry"]) == 1
    for notification in subscriber.received("/ortho") + subscriber.received("/hub"):
        Bundle.model_validate(notification["bundle"])  # valid FHIR (R4B models) as sent
        Parameters.model_validate(notification["bundle"]["entry"][0]["resource"])


async def counters(http: httpx.AsyncClient, auth: dict[str, str], sub_id: str) -> dict[str, int]:
    """$status's events generated and delivered so far."""
    bundle = (await http.get(f"/fhir/Subscription/{sub_id}/$status", headers=auth)).json()
    parameters = bundle["entry"][0]["resource"]["parameter"]
    names = ("events-since-subscription-start", "events-delivered")
    return {p["name"]: int(p["valueString"]) for p in parameters if p["name"] in names}


async def test_a_worker_restart_mid_stream_loses_nothing_and_doubles_nothing(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], tmp_path: Path,
    delivery: Callable[[], Delivery],
) -> None:
    slow = Subscriber(tmp_path, delay=0.5)  # a notification takes a while: stop lands mid-stream
    await slow.start()
    try:
        ortho = bearer(api.provider_token(ORTHO))
        sub_id = await subscribe(http, ortho, subscription(api, slow.url("/s"), "Task?status=requested,accepted"))
        pathways = [await start_pathway(http, coordinator) for _ in range(4)]
        tasks = [await read_task(http, f"{p}.hip-replacement.1", ortho) for p in pathways]
        first = delivery()  # four events wait for it (numbered from the subscription's creation)
        await active(http, ortho, sub_id)
        await until(lambda: events_of(slow.received("/s")), what="the first notification")
        first.stop.set()  # a graceful worker stop, as on SIGTERM: the POST in flight finishes
        await asyncio.sleep(1)
        counts = await counters(http, ortho, sub_id)
        assert counts["events-delivered"] < counts["events-since-subscription-start"]  # mid-stream
        for task in tasks:
            assert (await put_status(http, task, "accepted", ortho)).status_code == 200
        delivery()  # the worker comes back

        def mine() -> list[str]:
            return [f for _, f in events_of(slow.received("/s")) if f.rsplit("/", 1)[1] in
                    {t["id"] for t in tasks}]

        await until(lambda: len(mine()) >= 8, 30, "every requested and accepted version")
        numbers = [n for n, _ in events_of(slow.received("/s"))]
        assert numbers == list(range(1, len(numbers) + 1)), numbers
        assert sorted(mine()) == sorted(f"{api.settings.base_url}/fhir/Task/{t['id']}" for t in tasks for _ in (1, 2))
        history = (await http.get(f"/fhir/Subscription/{sub_id}/$events", headers=ortho)).json()
        listed = [int(p["part"][0]["valueString"]) for p in history["entry"][0]["resource"]["parameter"]
                  if p["name"] == "notification-event"]
        assert listed == numbers  # what $events lists is what was delivered, number for number
    finally:
        slow.stop()


async def test_subscriptions_are_validated_owned_and_scoped(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], delivery: Callable[[], Delivery],
) -> None:
    ortho, hub = bearer(api.provider_token(ORTHO)), bearer(api.provider_token(HUB))
    refused = await http.post("/fhir/Subscription", headers=ortho, json=subscription(
        api, "http://ehr.example.org/hook", f"Task?owner=Organization/{HUB}", headers=["Host: x"],
    ))
    assert refused.status_code == 400
    problems = " ".join(i["diagnostics"] for i in refused.json()["issue"])
    assert "https" in problems and "own organisation" in problems and "Host" in problems

    closed = f"http://127.0.0.1:{free_port()}/nobody-listens"
    sub_id = await subscribe(http, ortho, subscription(api, closed))
    assert (await http.get(f"/fhir/Subscription/{sub_id}", headers=hub)).status_code == 404
    assert (await http.delete(f"/fhir/Subscription/{sub_id}", headers=hub)).status_code == 404
    assert (await http.get(f"/fhir/Subscription/{sub_id}/$events", headers=hub)).status_code == 404
    assert (await http.get("/fhir/Subscription", headers=coordinator)).status_code == 403
    theirs = (await http.get("/fhir/Subscription", headers=hub)).json()
    assert sub_id not in {e["resource"]["id"] for e in theirs.get("entry", [])}
    none = bearer(api.provider_token("provider-with-no-subscriptions"))
    for empty in [(await http.get(path, headers=none)).json()
                  for path in ("/fhir/Subscription", "/fhir/Subscription/$status")]:
        Bundle.model_validate(empty)  # no matches: no `entry` (FHIR JSON has no empty arrays)
        assert empty["total"] == 0 and "entry" not in empty, empty

    delivery()
    errored = await active(http, ortho, sub_id)
    assert errored["status"] == "error" and "handshake failed after 3 attempts" in errored["error"]

    def subscriptions_in(bundle: dict[str, Any]) -> set[str]:
        return {p["valueReference"]["reference"].rsplit("/", 1)[1]
                for e in bundle.get("entry", []) for p in e["resource"]["parameter"] if p["name"] == "subscription"}

    all_mine = await http.get("/fhir/Subscription/$status", headers=ortho, params={"status": "error"})
    assert all_mine.status_code == 200 and sub_id in subscriptions_in(all_mine.json())
    active_only = await http.get("/fhir/Subscription/$status", headers=ortho, params={"status": "active"})
    assert sub_id not in subscriptions_in(active_only.json())
    assert sub_id not in subscriptions_in((await http.get("/fhir/Subscription/$status", headers=hub)).json())

    topic = await http.get("/fhir/SubscriptionTopic/handover-task")
    assert topic.status_code == 200 and topic.json()["resourceType"] == "Basic"
    metadata = (await http.get("/fhir/metadata")).json()
    resources = {r["type"]: r for r in metadata["rest"][0]["resource"]}
    assert resources["Subscription"]["extension"][0]["valueCanonical"] == topic_url(api.settings.base_url)

    assert (await http.delete(f"/fhir/Subscription/{sub_id}", headers=ortho)).status_code == 204
    assert (await http.get(f"/fhir/Subscription/{sub_id}", headers=ortho)).status_code == 404


async def test_smart_tokens_need_the_subscription_scopes(api: RunningApi, http: httpx.AsyncClient) -> None:
    """SMART access tokens are held to system/Subscription.* as Task routes are to system/Task.*."""
    clients = ClientStore(api.settings.event_store)
    clients.migrate()
    client = clients.register(f"subs-{secrets.token_hex(4)}", ORTHO, ["system/Subscription.rs", "system/Task.rs"],
                              jwks={"keys": []})
    reader = bearer(issue_access_token(api.settings, client, ["system/Subscription.rs"]))
    tasks_only = bearer(issue_access_token(api.settings, client, ["system/Task.rs"]))
    body = subscription(api, "https://ehr.example.org/hook")
    refused = await http.post("/fhir/Subscription", json=body, headers=reader)
    assert refused.status_code == 403 and "system/Subscription.c" in refused.text
    assert (await http.get("/fhir/Subscription", headers=reader)).status_code == 200
    assert (await http.get("/fhir/Subscription", headers=tasks_only)).status_code == 403
    creator = bearer(issue_access_token(api.settings, client, ["system/Subscription.cruds"]))
    created = await http.post("/fhir/Subscription", json=body, headers=creator)
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    assert (await http.get(f"/fhir/Subscription/{sub_id}/$status", headers=reader)).status_code == 200
    assert (await http.delete(f"/fhir/Subscription/{sub_id}", headers=reader)).status_code == 403
    assert (await http.delete(f"/fhir/Subscription/{sub_id}", headers=creator)).status_code == 204


async def test_a_worker_killed_mid_notification_resends_it_under_the_same_number(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], tmp_path: Path,
) -> None:
    """At least once, never renumbered: a worker killed while a POST is in flight leaves its
    lease to run out; the next worker sends that event again, same number, same webhook-id."""
    slow = Subscriber(tmp_path, delay=1.0)
    await slow.start()
    store = SubscriptionStore(api.settings.event_store)
    timing = Timing(poll_seconds=0.2, first_backoff_seconds=0.3, max_backoff_seconds=1.0,
                    lease=timedelta(seconds=2))
    try:
        async with httpx.AsyncClient() as client:
            ortho = bearer(api.provider_token(ORTHO))
            sub_id = await subscribe(http, ortho, subscription(api, slow.url("/k"), "Task?status=requested,accepted"))
            doomed = Delivery(api.settings, store, client, timing)
            running = asyncio.ensure_future(doomed.run())
            await active(http, ortho, sub_id)
            task = await read_task(http, f"{await start_pathway(http, coordinator)}.hip-replacement.1", ortho)
            for _ in range(100):
                if (await counters(http, ortho, sub_id))["events-since-subscription-start"] >= 1:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # the first notification is in flight (the subscriber takes 1 s)
            for doing in [running, *doomed.inflight.values()]:
                doing.cancel()  # the process dies: no bookkeeping, its lease stays behind
            await asyncio.gather(running, *doomed.inflight.values(), return_exceptions=True)
            assert (await counters(http, ortho, sub_id))["events-delivered"] == 0

            successor = Delivery(api.settings, store, client, timing)
            resumed = asyncio.ensure_future(successor.run())
            assert (await put_status(http, task, "accepted", ortho)).status_code == 200
            await until(lambda: len(events_of(slow.received("/k"))) >= 3, 30, "the resent and the new event")
            successor.stop.set()
            await resumed
        received = [n for n in slow.received("/k") if kind(n) == "event-notification"]
        assert [n for n, _ in events_of(received)] == [1, 1, 2]
        assert received[0]["headers"]["webhook-id"] == received[1]["headers"]["webhook-id"]
        first, again, _ = events_of(received)
        assert first == again
    finally:
        slow.stop()
        store.close()


async def test_the_worker_process_runs_the_delivery_loop(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], subscriber: Subscriber,
) -> None:
    """`pathways worker` (the deployed process) handshakes and notifies, and stops cleanly."""
    env = env_for(api.settings, PATHWAYS_API_PORT=str(api.settings.api_port),
                  PATHWAYS_SUBSCRIPTION_ENDPOINTS="any")
    worker = subprocess.Popen([PATHWAYS, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        await subscriber.start()
        ortho = bearer(api.provider_token(ORTHO))
        sub_id = await subscribe(http, ortho, subscription(api, subscriber.url("/w"), "Task?status=requested"))
        assert (await active(http, ortho, sub_id))["status"] == "active"
        task = await read_task(http, f"{await start_pathway(http, coordinator)}.hip-replacement.1", ortho)
        url = f"{api.settings.base_url}/fhir/Task/{task['id']}"
        await until(lambda: url in {f for _, f in events_of(subscriber.received("/w"))}, 30, "the notification")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=60)
    assert worker.returncode == 0, errors[-3000:]
    assert (await http.delete(f"/fhir/Subscription/{sub_id}", headers=ortho)).status_code == 204


async def test_notifications_follow_a_change_within_seconds_at_the_default_pace(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], subscriber: Subscriber,
    delivery: Callable[..., Delivery],
) -> None:
    """Just in time: with the worker's default timing (a pass a second), a provider's system
    hears of a change to its Task within a couple of seconds. Prints the figures (-s)."""
    await subscriber.start()
    ortho = bearer(api.provider_token(ORTHO))
    sub_id = await subscribe(http, ortho, subscription(api, subscriber.url("/l"), "Task?status=accepted"))
    delivery(Timing())
    await active(http, ortho, sub_id)
    tasks = [await read_task(http, f"{await start_pathway(http, coordinator)}.hip-replacement.1", ortho)
             for _ in range(10)]
    sent: dict[str, float] = {}
    for task in tasks:
        sent[task["id"]] = time.time()
        assert (await put_status(http, task, "accepted", ortho)).status_code == 200
        await asyncio.sleep(0.3)
    await until(lambda: len(events_of(subscriber.received("/l"))) >= len(tasks), 30, "every acceptance")
    latencies = sorted(
        n["at"] - sent[focus.rsplit("/", 1)[1]]
        for n in subscriber.received("/l") if kind(n) == "event-notification"
        for _, focus in events_of([n])
    )
    p50, worst = latencies[len(latencies) // 2], latencies[-1]
    print(f"\nsubscription latency over {len(latencies)} changes: p50 {p50:.2f} s, max {worst:.2f} s")
    assert worst < 3.0


async def test_a_task_handed_on_after_a_rejection_is_withdrawn_from_the_rejecter_only(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], subscriber: Subscriber,
    delivery: Callable[..., Delivery],
) -> None:
    """The rejecting provider hears its Task is gone (cancelled, still addressed to it) and
    never who has it now; the next provider's own subscription gets it as requested."""
    await subscriber.start()
    ortho, next_one = bearer(api.provider_token(ORTHO)), bearer(api.provider_token(KINGSBRIDGE))
    mine = await subscribe(http, ortho, subscription(api, subscriber.url("/a"), content="full-resource"))
    theirs = await subscribe(http, next_one, subscription(api, subscriber.url("/b"), content="full-resource"))
    delivery()
    await active(http, ortho, mine)
    await active(http, next_one, theirs)
    task = await read_task(http, f"{await start_pathway(http, coordinator)}.hip-replacement.1", ortho)
    rejected = await put_status(http, task, "rejected", ortho, statusReason={"text": "no theatre capacity"})
    assert rejected.status_code == 200, rejected.text

    def seen(path: str) -> list[dict[str, Any]]:
        return [e["resource"] for n in subscriber.received(path) for e in n["bundle"]["entry"][1:]
                if e["resource"]["id"] == task["id"]]

    await until(lambda: any(t["status"] == "cancelled" for t in seen("/a")), 20, "the withdrawal")
    await until(lambda: seen("/b"), 20, "the next provider's notification")
    assert all(t["owner"] == {"reference": f"Organization/{ORTHO}"} for t in seen("/a"))
    assert all(KINGSBRIDGE not in n["raw"] for n in subscriber.received("/a"))
    assert seen("/b")[-1]["status"] == "requested"
    assert seen("/b")[-1]["owner"] == {"reference": f"Organization/{KINGSBRIDGE}"}


INTERNAL = ["https://169.254.169.254/latest/meta-data/", "https://10.0.0.1/hook",
            "https://[::ffff:192.168.1.1]/hook", "https://100.64.0.1/hook", "https://localhost/hook"]


async def test_a_provider_cannot_point_a_subscription_at_internal_hosts_under_public(
    api: RunningApi, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Server-side request forgery: under `public` (the default), creating or changing a
    subscription whose endpoint is the cloud metadata service, a private network, the API's own
    loopback port or the like is refused, naming channel.endpoint and not the address it
    resolved to; under `any` (on premises) the same endpoints are taken as before."""
    ortho = bearer(api.provider_token(ORTHO))
    own_port = f"http://127.0.0.1:{api.settings.api_port}/fhir/Task"
    kept = await subscribe(http, ortho, subscription(api, own_port))  # under `any` (the fixture)

    monkeypatch.setattr(api.settings, "subscription_endpoints", "public")
    for endpoint in [*INTERNAL, own_port]:
        refused = await http.post("/fhir/Subscription", headers=ortho, json=subscription(api, endpoint))
        assert refused.status_code == 422, (endpoint, refused.text)
        outcome = refused.json()
        assert outcome["resourceType"] == "OperationOutcome"
        problems = " ".join(i["diagnostics"] for i in outcome["issue"])
        assert "channel.endpoint" in problems and "public internet address" in problems
        assert "127.0.0.1" not in problems or "127.0.0.1" in endpoint  # localhost: not echoed
    changed = subscription(api, "https://10.0.0.1/hook") | {"id": kept}
    refused = await http.put(f"/fhir/Subscription/{kept}", headers=ortho, json=changed)
    assert refused.status_code == 422 and "channel.endpoint" in refused.text
    assert (await http.get(f"/fhir/Subscription/{kept}", headers=ortho)).json()["channel"]["endpoint"] == own_port
    names_a_later_host = await http.post("/fhir/Subscription", headers=ortho, json=subscription(
        api, "https://ehr.invalid/hook"))  # no such name (yet): the handshake will tell
    assert names_a_later_host.status_code == 201, names_a_later_host.text

    monkeypatch.setattr(api.settings, "subscription_endpoints", "any")
    created = [names_a_later_host.json()["id"], kept]
    for endpoint in INTERNAL:
        created.append(await subscribe(http, ortho, subscription(api, endpoint)))
    for sub_id in created:
        assert (await http.delete(f"/fhir/Subscription/{sub_id}", headers=ortho)).status_code == 204


async def test_a_name_resolving_to_an_internal_address_is_never_contacted(
    api: RunningApi, http: httpx.AsyncClient, subscriber: Subscriber,
) -> None:
    """At each delivery the name is resolved again and only a public address is dialled: a name
    that now resolves to loopback (DNS rebinding; an injected resolver stands in for DNS) is not
    contacted though a subscriber listens there, and the subscription goes to `error` with the
    reason in $status, once, with no retries: an active one at its next heartbeat, a new one at
    its handshake."""
    await subscriber.start()
    ortho = bearer(api.provider_token(ORTHO))
    endpoint = subscriber.url("/r").replace("127.0.0.1", "localhost")
    store = SubscriptionStore(api.settings.event_store)
    try:
        async with httpx.AsyncClient() as plain:  # before: the name resolved to a public address
            before = Delivery(api.settings, store, plain, FAST)
            running = asyncio.ensure_future(before.run())
            was_active = await subscribe(http, ortho, subscription(api, endpoint, heartbeat=2))
            assert (await active(http, ortho, was_active))["status"] == "active"
            before.stop.set()
            await running
        assert [kind(n) for n in subscriber.received("/r")] == ["handshake"]
        new = await subscribe(http, ortho, subscription(api, endpoint))

        public = api.settings.model_copy(update={"subscription_endpoints": "public"})
        asked: list[str] = []

        def rebinding(host: str, port: int) -> list[str]:
            asked.append(host)
            return ["93.184.216.34", "127.0.0.1"]

        async with endpoint_client(public, rebinding) as guarded:
            after = Delivery(public, store, guarded, FAST)
            running = asyncio.ensure_future(after.run())
            try:
                assert (await active(http, ortho, new))["status"] == "error"
                refused = await until(
                    lambda: (r := store.current(was_active)) is not None and r.status.value == "error" and r,
                    10, "the heartbeat refused")
                await asyncio.sleep(1.0)  # more passes: nothing retried
            finally:
                after.stop.set()
                await running
        assert set(asked) == {"localhost"} and len(asked) == 2, "one look-up each, no retry loop"
        assert [kind(n) for n in subscriber.received("/r")] == ["handshake"], "never contacted"
        assert refused.error.startswith("endpoint refused") and "127.0.0.1" not in refused.error
        status = (await http.get(f"/fhir/Subscription/{new}/$status", headers=ortho)).json()
        parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
        assert parameters["status"]["valueCode"] == "error"
        assert "public internet address" in parameters["error"]["valueCodeableConcept"]["text"]
    finally:
        for sub_id in (was_active, new):
            await http.delete(f"/fhir/Subscription/{sub_id}", headers=ortho)
        store.close()


async def test_a_failed_handshake_is_tried_three_times_with_backoff_before_error(
    api: RunningApi, http: httpx.AsyncClient, tmp_path: Path, delivery: Callable[..., Delivery],
) -> None:
    """A subscriber that is briefly down at its handshake still becomes active; one that keeps
    failing gets three handshakes, spaced by the backoff, and then `error`."""
    failing = Subscriber(tmp_path, status=503)
    late = Subscriber(tmp_path)
    ortho = bearer(api.provider_token(ORTHO))
    timing = Timing(poll_seconds=0.1, handshake_waits=(0.5, 1.0))
    try:
        await failing.start()
        keeps_failing = await subscribe(http, ortho, subscription(api, failing.url("/f")))
        comes_up = await subscribe(http, ortho, subscription(api, late.url("/u")))
        delivery(timing)

        async def state(sub_id: str) -> dict[str, Any]:
            return dict((await http.get(f"/fhir/Subscription/{sub_id}", headers=ortho)).json())

        for _ in range(50):
            first = await state(comes_up)
            if "attempt 1 of 3" in first.get("error", ""):
                break
            await asyncio.sleep(0.05)
        assert first["status"] == "requested" and "attempt 1 of 3" in first["error"]
        await late.start()
        assert (await active(http, ortho, comes_up))["status"] == "active"

        for _ in range(100):
            if (given_up := await state(keeps_failing))["status"] == "error":
                break
            await asyncio.sleep(0.1)
        assert given_up["status"] == "error"
        assert "handshake failed after 3 attempts: endpoint answered 503" in given_up["error"]
        tries = [n["at"] for n in failing.received("/f")]
        assert len(tries) == 3 and all(kind(n) == "handshake" for n in failing.received("/f"))
        assert tries[1] - tries[0] >= 0.5 and tries[2] - tries[1] >= 1.0
        await asyncio.sleep(0.5)
        assert len(failing.received("/f")) == 3
    finally:
        failing.stop()
        late.stop()
