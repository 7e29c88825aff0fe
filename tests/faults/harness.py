"""A whole installation in real processes, for fault tests: what a lead provider runs.

- a Temporal dev server (`temporal server start-dev`) on a SQLite file, stoppable and
  restartable on the same file and port;
- `pathways worker` and `pathways api` processes, killable (-9) and restartable;
- provider systems: one webhook receiver on 127.0.0.1 that records every delivery by its
  `webhook-id` (the idempotency key) and can refuse connections or answer 500 for a while;
- provider clients that complete each dispatched Task over FHIR (PUT, If-Match), retrying the
  same request after a 503 or a dropped connection, and a coordinator that starts pathways;
- `check()`: the invariants after a fault, as counts.

Each process logs to a file in the data dir (a pipe nobody reads would block it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio.client import Client

from activities.store import EventStore
from api.tokens import TokenStore
from cli.up import _sa_type
from pathways.engine import PathwayRun
from pathways.events import EventKind
from pathways.model import PathwayDefinition
from pathways.nhs_number import check_digit
from pathways.settings import Settings
from pathways.state import parse_task_id
from tests.api.flow import fhir_outputs
from tests.conftest import make_settings
from tests.ops.processes import PATHWAYS, env_for, free_port
from worker.binaries import installed_binary
from workflows import search
from workflows.client import connect
from workflows.pathway import PathwayWorkflow

DEFINITION_ID = "fault-three-step"
PROVIDERS = ("ward", "district-nurses", "gp-practice")
ALLOWED = {200, 201, 409, 412, 503}
"""What API clients may see: done, refused (nothing changed), or unavailable / outcome unknown."""


def definition_yaml(receiver_url: str) -> dict[str, Any]:
    """Three handovers, one provider each, with long SLAs (no reminder fires during a test)."""
    roles = [
        {"id": "hospital", "title": "Hospital",
         "providers": [{"id": PROVIDERS[0], "name": "Ward", "webhook": f"{receiver_url}/ward"}]},
        {"id": "nursing", "title": "Nursing",
         "providers": [{"id": PROVIDERS[1], "name": "Nurses",
                        "webhook": f"{receiver_url}/nurses"}]},
        {"id": "gp", "title": "GP",
         "providers": [{"id": PROVIDERS[2], "name": "GP", "webhook": f"{receiver_url}/gp"}]},
    ]
    sla = {"accept_within": "P1D", "complete_within": "P2D"}
    steps = [
        {"id": "discharge-summary", "title": "Discharge summary", "role": "hospital", "sla": sla,
         "handover": [{"name": "medication_list", "type": "text"}]},
        {"id": "first-visit", "title": "First visit", "role": "nursing", "sla": sla,
         "after": ["discharge-summary"], "handover": [{"name": "wound_ok", "type": "boolean"}]},
        {"id": "gp-review", "title": "GP review", "role": "gp", "sla": sla,
         "after": ["first-visit"], "handover": [{"name": "plan", "type": "text"}]},
    ]
    return {"id": DEFINITION_ID, "version": 1, "title": "Fault test pathway",
            "lead_provider": {"id": "lead", "name": "Lead"}, "roles": roles, "steps": steps}


# --- provider systems' webhook endpoint --------------------------------------------------------
@dataclass
class Delivery:
    webhook_id: str
    path: str
    answered: int
    body: bytes
    at: float = field(default_factory=time.time)


class Receiver:
    """Provider systems' webhook endpoint: records each delivery, answers 202, or 500 while
    `failing`, or refuses connections between `refuse()` and `accept()` (socket closed)."""

    def __init__(self, on_new: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self.failing = False
        self.on_new = on_new
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None
        self.accept()

    def accept(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                webhook_id = self.headers.get("webhook-id", "")
                if len(body) < length:  # the sender died mid-request: nothing was received
                    with receiver._lock:
                        receiver.deliveries.append(Delivery(webhook_id, self.path, 0, body))
                    self.close_connection = True
                    return
                status = 500 if receiver.failing else 202
                with receiver._lock:
                    receiver.deliveries.append(Delivery(webhook_id, self.path, status, body))
                    first = status == 202 and webhook_id not in receiver._seen
                    if first:
                        receiver._seen.add(webhook_id)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if first and receiver.on_new is not None:
                    receiver.on_new(webhook_id, json.loads(body))

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def refuse(self) -> None:
        """Close the listening socket: every connection attempt is refused until accept()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.refuse()

    def accepted(self) -> Counter[str]:
        """2xx answers per webhook-id."""
        with self._lock:
            return Counter(d.webhook_id for d in self.deliveries if d.answered == 202)

    def first_accepted(self) -> dict[str, float]:
        """When each webhook-id was first accepted (unix time)."""
        first: dict[str, float] = {}
        with self._lock:
            for d in self.deliveries:
                if d.answered == 202:
                    first.setdefault(d.webhook_id, d.at)
        return first

    def attempts(self) -> int:
        with self._lock:
            return len(self.deliveries)


# --- processes ---------------------------------------------------------------------------------
@dataclass
class Process:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=out,
                                          start_new_session=True)

    def kill(self) -> None:
        """kill -9: no shutdown of any kind."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 40) -> int:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return int(self.popen.returncode)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class Cluster:
    """Dev server + workers + API as processes on one data dir, plus the test's own client."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.data_dir = data_dir
        self.receiver = Receiver(self._new_task)
        catalogue = data_dir / "catalogue"
        catalogue.mkdir(parents=True)
        (catalogue / f"{DEFINITION_ID}.yaml").write_text(
            yaml.safe_dump(definition_yaml(self.receiver.url))
        )
        self.definition = PathwayDefinition.model_validate(definition_yaml(self.receiver.url))
        self.temporal_port = free_port()
        self.settings: Settings = make_settings(
            data_dir, f"127.0.0.1:{self.temporal_port}", catalogue_dir=catalogue,
            api_port=free_port(), update_timeout_seconds=5.0, **settings,
        )
        self.env = env_for(self.settings, PATHWAYS_CATALOGUE_DIR=str(catalogue),
                           PATHWAYS_API_PORT=str(self.settings.api_port),
                           PATHWAYS_UPDATE_TIMEOUT_SECONDS="5", PATHWAYS_LOG_LEVEL="WARNING")
        self.server = Process("temporal", self._server_args(), dict(os.environ),
                              data_dir / "temporal.log")
        self.workers: list[Process] = []
        self.api: Process | None = None
        self.client: Client | None = None
        self.store = EventStore(self.settings.event_store)
        self.tasks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _server_args(self) -> list[str]:
        args = [installed_binary("temporal"), "server", "start-dev", "--headless",
                "--db-filename", str(self.data_dir / "temporal.db"), "--ip", "127.0.0.1",
                "--port", str(self.temporal_port), "--log-level", "error"]
        for key in search.ALL_KEYS:
            args += ["--search-attribute", f"{key.name}={_sa_type(key.indexed_value_type)}"]
        return args

    # lifecycle -----------------------------------------------------------------------------
    async def start(self, workers: int = 1) -> None:
        self._loop = asyncio.get_running_loop()
        await self.start_server()
        setup = await asyncio.to_thread(
            subprocess.run, [PATHWAYS, "setup"], env=self.env, capture_output=True, timeout=120
        )
        assert setup.returncode == 0, setup.stderr
        for _ in range(workers):
            await self.start_worker()
        await self.start_api()

    async def start_server(self) -> None:
        self.server.start()
        deadline = time.monotonic() + 60
        while True:
            assert self.server.alive, self.server.log.read_text()[-2000:]
            try:
                client = await connect(self.settings)
                await client.service_client.check_health()
                await client.list_workflows(page_size=1).fetch_next_page()
                self.client = client
                return
            except Exception:
                assert time.monotonic() < deadline, "the dev server did not come up"
                await asyncio.sleep(0.3)

    async def stop_server(self) -> None:
        await asyncio.to_thread(self.server.stop)

    async def start_worker(self, command: list[str] | None = None,
                           env: dict[str, str] | None = None) -> Process:
        """A worker process: `pathways worker`, or `command` with the same settings."""
        n = len(self.workers)
        health = free_port()
        worker = Process(f"worker-{n}", command or [PATHWAYS, "worker"],
                         {**self.env, "PATHWAYS_HEALTH_PORT": str(health), **(env or {})},
                         self.data_dir / f"worker-{n}.log")
        worker.start()
        self.workers.append(worker)  # stopped at close() even if it never comes up
        await self._wait_ready(worker, f"http://127.0.0.1:{health}/healthz")
        return worker

    async def stop_worker(self, worker: Process) -> int:
        """SIGTERM: the worker stops polling and finishes what it runs; its exit status."""
        return await asyncio.to_thread(worker.stop)

    async def start_api(self) -> None:
        n = 0 if self.api is None else int(self.api.name.rpartition("-")[2]) + 1
        self.api = Process(f"api-{n}", [PATHWAYS, "api"], self.env, self.data_dir / f"api-{n}.log")
        self.api.start()
        await self._wait_ready(self.api, f"{self.settings.base_url}/fhir/metadata")

    @staticmethod
    async def _wait_ready(process: Process, url: str, timeout: float = 60) -> None:
        """Until the process answers 2xx on `url` (it may die trying: then its log)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                assert process.alive, process.log.read_text(errors="replace")[-3000:]
                try:
                    if (await http.get(url)).is_success:
                        return
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{process.name} did not come up"
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        for process in [*self.workers, self.api]:
            if process is not None and process.alive:
                await asyncio.to_thread(process.stop, 20)
        if self.server.alive:
            await asyncio.to_thread(self.server.stop, 20)
        self.receiver.close()
        self.store.close()

    # provider systems ----------------------------------------------------------------------
    def _new_task(self, webhook_id: str, task: dict[str, Any]) -> None:
        """Called in the receiver's thread for each webhook-id's first accepted delivery."""
        if webhook_id.endswith(".dispatched") and self._loop is not None:
            self._loop.call_soon_threadsafe(self.tasks.put_nowait, task)


@dataclass
class Traffic:
    """What API clients saw and did."""

    statuses: Counter[int] = field(default_factory=Counter)
    unreachable: int = 0
    retried: int = 0
    completed: set[str] = field(default_factory=set)
    """Task ids a client knows it completed (200, or a refusal whose re-read shows it done)."""
    applied_before_refusal: int = 0
    unexplained: list[str] = field(default_factory=list)
    unavailable: Counter[str] = field(default_factory=Counter)
    """What each 503 said (its message), so a test can check it told the truth."""
    without_retry_after: int = 0

    def saw(self, response: httpx.Response) -> None:
        self.statuses[response.status_code] += 1
        if response.status_code == 503:
            self.unavailable[_message(response)] += 1
            self.without_retry_after += "retry-after" not in response.headers


class Drive:
    """Coordinator and provider clients over HTTP. `partial` pathways stop before their last
    handover: it must stay open, dispatched, with its SLA timer pending."""

    def __init__(self, cluster: Cluster, pathways: int, clients: int = 12) -> None:
        self.cluster = cluster
        self.count = pathways
        self.clients = clients
        self.traffic = Traffic()
        self.in_flight = 0
        """Completions a client is still sending (or retrying): not settled until none are."""
        self.ids: list[str] = []
        self.partial: set[str] = set()
        tokens = TokenStore(cluster.settings.event_store)
        self.coordinator = {"Authorization": f"Bearer {tokens.issue_coordinator('faults')}"}
        self.provider_headers = {
            p: {"Authorization": f"Bearer {tokens.issue_provider(p)}"} for p in PROVIDERS
        }
        self._workers: list[asyncio.Task[None]] = []
        self.http = httpx.AsyncClient(base_url=cluster.settings.base_url, timeout=30)

    async def start_pathways(self, more: int = 0) -> list[str]:
        """Start `count` pathways (or `more` further ones); the same Idempotency-Key on a retry
        after a 503 makes the retried start return the same pathway. Returns the new ids."""
        semaphore = asyncio.Semaphore(8)
        first = len(self.ids)
        if more:
            self.count += more
        before = set(self.ids)

        async def one(n: int) -> None:
            body = {"definition": DEFINITION_ID, "patient": {"nhs_number": nhs_number(n)}}
            headers = {**self.coordinator, "Idempotency-Key": f"start-{n}"}
            async with semaphore:
                for _ in range(60):  # the same request again while the outcome is unknown
                    response = await self.http.post("/api/pathways", json=body, headers=headers)
                    self.traffic.saw(response)
                    if response.status_code != 503:
                        break
                    await asyncio.sleep(0.5)
            assert response.status_code == 201, response.text
            pathway_id = str(response.json()["id"])
            self.ids.append(pathway_id)
            if n % 5 == 4:
                self.partial.add(pathway_id)

        await asyncio.gather(*(one(n) for n in range(first, self.count)))
        return [pathway_id for pathway_id in self.ids if pathway_id not in before]

    def run_providers(self) -> None:
        self._workers = [asyncio.ensure_future(self._provider()) for _ in range(self.clients)]

    async def _provider(self) -> None:
        while True:
            task = await self.cluster.tasks.get()
            pathway_id, handover_id = parse_task_id(task["id"])
            step_id = handover_id.rpartition(".")[0] or handover_id
            if pathway_id in self.partial and step_id == self.cluster.definition.steps[-1].id:
                continue
            self.in_flight += 1
            try:
                await self.complete(task, step_id)
            finally:
                self.in_flight -= 1

    async def complete(self, task: dict[str, Any], step_id: str) -> None:
        """PUT the Task completed; retry the very same request while the outcome is unknown."""
        provider = task["owner"]["reference"].rpartition("/")[2]
        body = {**task, "status": "completed",
                "output": fhir_outputs(self.cluster.definition.step(step_id))}
        headers = {**self.provider_headers[provider], "If-Match": f'W/"{task["meta"]["versionId"]}"',
                   "Content-Type": "application/fhir+json"}
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            try:
                response = await self.http.put(f"/fhir/Task/{task['id']}", json=body,
                                               headers=headers)
            except httpx.TransportError:
                self.traffic.unreachable += 1
                self.traffic.retried += 1
                await asyncio.sleep(0.5)
                continue
            self.traffic.saw(response)
            if response.status_code == 503:
                self.traffic.retried += 1
                await asyncio.sleep(0.5)
                continue
            if response.status_code == 200:
                self.traffic.completed.add(task["id"])
            elif response.status_code in (409, 412):
                await self._explain_refusal(task, provider)
            else:
                self.traffic.unexplained.append(f"{response.status_code}: {response.text[:200]}")
            return
        self.traffic.unexplained.append(f"{task['id']}: no answer within 150 s")

    async def _explain_refusal(self, task: dict[str, Any], provider: str) -> None:
        """A refusal after retries: an earlier attempt whose answer was lost must have applied."""
        for _ in range(60):
            try:
                now = await self.http.get(f"/fhir/Task/{task['id']}",
                                          headers=self.provider_headers[provider])
            except httpx.TransportError:
                await asyncio.sleep(0.5)
                continue
            self.traffic.saw(now)
            if now.status_code == 200:
                if now.json()["status"] == "completed":
                    self.traffic.completed.add(task["id"])
                    self.traffic.applied_before_refusal += 1
                else:
                    self.traffic.unexplained.append(f"refused, still {now.json()['status']}")
                return
            await asyncio.sleep(0.5)
        self.traffic.unexplained.append("refused, then could not re-read the Task")

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self.http.aclose()

    # expectations --------------------------------------------------------------------------
    def settled(self) -> bool:
        if self.in_flight or not self.cluster.tasks.empty():
            return False  # a client still awaits the answer to a change the engine may have made
        rows = {row.pathway_id: row for row in _all_rows(self.cluster.store)}
        for pathway_id in self.ids:
            row = rows.get(pathway_id)
            if row is None:
                return False
            want = "active" if pathway_id in self.partial else "completed"
            if row.status != want:
                return False
            if want == "active" and row.open_steps != [self.cluster.definition.steps[-1].id]:
                return False
        accepted = self.cluster.receiver.accepted()
        return sum(1 for key in accepted if key.endswith(".dispatched")) >= 3 * self.count

    async def wait_settled(self, timeout: float) -> float:
        began = time.monotonic()
        while not self.settled():
            if time.monotonic() - began > timeout:
                break
            await asyncio.sleep(0.5)
        return time.monotonic() - began


def _message(response: httpx.Response) -> str:
    """The problem a refusal states: FHIR OperationOutcome diagnostics or problem detail."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "issue" in body:
        return "; ".join(str(i.get("diagnostics", "")) for i in body["issue"])[:200]
    return str(body.get("detail", body) if isinstance(body, dict) else body)[:200]


def nhs_number(n: int) -> str:
    """A valid (modulus 11) NHS number per n, distinct for distinct n (one patient each)."""
    for k in range(13):
        first_nine = f"{900_000_000 + 13 * n + k:09d}"
        digit = check_digit(first_nine)
        if digit is not None:
            return first_nine + str(digit)
    raise AssertionError("unreachable: one in 11 nine-digit runs has no check digit")


def _all_rows(store: EventStore) -> list[Any]:
    rows, total = store.list_pathways(limit=1000)
    return rows


@dataclass
class Report:
    name: str
    pathways: int
    completed: int
    open_as_expected: int
    wrong_state: list[str]
    handovers_completed: int
    lost: list[str]
    doubled: list[str]
    redelivered: int
    stuck: list[str]
    gaps: list[str]
    bad_statuses: dict[int, int]
    unexplained: list[str]
    statuses: dict[int, int]
    webhook_attempts: int
    webhook_ids: int
    retried: int
    unreachable: int
    applied_before_refusal: int
    settle_seconds: float

    def line(self) -> str:
        return (
            f"FAULTS {self.name}: pathways={self.pathways} completed={self.completed} "
            f"open_as_expected={self.open_as_expected} wrong_state={len(self.wrong_state)} "
            f"handovers_completed={self.handovers_completed} lost={len(self.lost)} "
            f"doubled={len(self.doubled)} stuck={len(self.stuck)} log_gaps={len(self.gaps)} "
            f"webhook_ids={self.webhook_ids} webhook_attempts={self.webhook_attempts} "
            f"redelivered={self.redelivered} http={dict(sorted(self.statuses.items()))} "
            f"client_retries={self.retried} unreachable={self.unreachable} "
            f"applied_before_refusal={self.applied_before_refusal} "
            f"unexplained={len(self.unexplained)} settled_in={self.settle_seconds:.0f}s"
        )

    def assert_clean(self) -> None:
        problems = {
            "wrong state": self.wrong_state, "lost": self.lost, "doubled": self.doubled,
            "stuck": self.stuck, "event log gaps": self.gaps,
            "statuses other than 200/201/409/412/503": self.bad_statuses,
            "unexplained answers": self.unexplained,
        }
        found = {name: value for name, value in problems.items() if value}
        assert not found, f"{self.line()}\n{json.dumps(found, default=str, indent=1)[:4000]}"


async def check(
    name: str, drive: Drive, settle_seconds: float, redelivery_possible: bool = False
) -> Report:
    """Every invariant, from the read model, the receiver, the engine and the clients.

    Doubled: a handover dispatched under more than one idempotency key, or (unless a crash
    made it possible) one key accepted twice. A process that dies (or a server that restarts)
    after the provider accepted a webhook but before Temporal recorded the activity done makes
    Temporal retry it with the same `webhook-id`: at-least-once by design, counted as
    `redelivered`; the provider de-duplicates on the key (the receiver here passes each key on
    once), so no provider acts twice on one handover."""
    cluster, definition = drive.cluster, drive.cluster.definition
    store, client = cluster.store, cluster.client
    assert client is not None
    rows = {row.pathway_id: row for row in _all_rows(store)}
    accepted = cluster.receiver.accepted()
    dispatched_keys: dict[str, list[str]] = defaultdict(list)
    for key in accepted:
        if key.endswith(".dispatched"):
            task_key = key.rsplit(".", 2)[0]  # '{pathway}.{step}.{occurrence}'
            dispatched_keys[task_key].append(key)
    wrong, lost, doubled, stuck, gaps = [], [], [], [], []
    completed = open_ok = handovers_done = 0
    last = definition.steps[-1].id
    for pathway_id in drive.ids:
        row = rows.get(pathway_id)
        partial = pathway_id in drive.partial
        want = "active" if partial else "completed"
        if row is None or row.status != want:
            wrong.append(f"{pathway_id}: {row.status if row else 'missing'}, want {want}")
        elif partial:
            open_ok += 1
        else:
            completed += 1
        events = store.events(pathway_id)
        seqs = [e.seq for e in events]
        if seqs != list(range(1, len(seqs) + 1)):
            gaps.append(f"{pathway_id}: seqs {seqs}")
        done_events = Counter(e.handover_id for e in events if e.kind is EventKind.COMPLETED)
        for step in definition.steps:
            task_key = f"{pathway_id}.{step.id}.1"
            keys = dispatched_keys.get(task_key, [])
            if not keys:
                lost.append(f"{task_key}: never dispatched to its provider")
            if len(keys) > 1:
                doubled.append(f"{task_key}: dispatched under {len(keys)} keys")
            expect_done = not (partial and step.id == last)
            handover_id = f"{step.id}.1"
            if expect_done:
                if task_key not in drive.traffic.completed:
                    lost.append(f"{task_key}: no client completed it")
                if done_events[handover_id] != 1:
                    lost.append(f"{task_key}: {done_events[handover_id]} completed events")
                else:
                    handovers_done += 1
            elif done_events[handover_id]:
                wrong.append(f"{task_key}: completed though nobody completed it")
        if partial and row is not None and row.status == "active":
            stuck += await _stuck(client, pathway_id, events[-1].seq if events else 0)
    redelivered = sum(count - 1 for count in accepted.values())
    if redelivered and not redelivery_possible:
        doubled += [f"{key}: accepted {n} times" for key, n in accepted.items() if n > 1]
    traffic = drive.traffic
    bad = {status: n for status, n in traffic.statuses.items() if status not in ALLOWED}
    report = Report(
        name=name, pathways=len(drive.ids), completed=completed, open_as_expected=open_ok,
        wrong_state=wrong, handovers_completed=handovers_done, lost=lost, doubled=doubled,
        redelivered=redelivered, stuck=stuck, gaps=gaps,
        bad_statuses=bad, unexplained=traffic.unexplained, statuses=dict(traffic.statuses),
        webhook_attempts=cluster.receiver.attempts(), webhook_ids=len(accepted),
        retried=traffic.retried, unreachable=traffic.unreachable,
        applied_before_refusal=traffic.applied_before_refusal, settle_seconds=settle_seconds,
    )
    print(report.line(), flush=True)
    return report


async def _stuck(client: Client, pathway_id: str, last_seq: int) -> list[str]:
    """An open pathway is stuck unless it has a next SLA point and a durable timer pending for
    it, and the event log holds every event the engine issued."""
    handle = client.get_workflow_handle(pathway_id)
    state = await handle.query(PathwayWorkflow.state)
    problems = []
    if state.event_seq != last_seq:
        problems.append(f"{pathway_id}: engine issued {state.event_seq} events, log has {last_seq}")
    if not state.open_handovers:
        problems.append(f"{pathway_id}: active with no open handover")
    if PathwayRun(state).next_wakeup() is None:
        problems.append(f"{pathway_id}: open handover without a next SLA point")
    started, ended = set(), set()
    async for event in handle.fetch_history_events():
        if event.HasField("timer_started_event_attributes"):
            started.add(event.timer_started_event_attributes.timer_id)
        elif event.HasField("timer_fired_event_attributes"):
            ended.add(event.timer_fired_event_attributes.timer_id)
        elif event.HasField("timer_canceled_event_attributes"):
            ended.add(event.timer_canceled_event_attributes.timer_id)
    if not started - ended:
        problems.append(f"{pathway_id}: no durable timer pending")
    return problems
