"""10,000 concurrently open pathways on one dev server: what a lead provider's contract costs.

    python -m bench.scale --pathways 10000      # the issue's figure (several minutes)
    python -m bench.scale --quick               # 200 pathways, a couple of minutes

A whole installation in real processes (tests/faults/harness.py): a Temporal dev server on its
own SQLite file, one `pathways worker`, the `pathways api`, and a webhook receiver standing in
for the providers' systems. Then:

1. start: `--pathways` pathways over `POST /api/pathways` (Idempotency-Key, distinct patients,
   `--concurrency` coordinators at once); the time and rate until every start answered 201, and
   until every first Task reached its provider's webhook. Nine in ten are `scale-steady` (a
   two-step pathway with a day's SLA and a reminder / alert ladder: every one has a durable SLA
   timer pending); one in ten (`--burst`) are `scale-burst`, the burst's candidates.
2. worker resident memory (VmRSS from /proc) with them all open, and at the end;
3. history events per handover: history length of a sample at start (one handover dispatched)
   and after a provider completed its first handover over FHIR (the next one dispatched);
4. p50/p95 latency over them all of the coordinator list (`/api/pathways`, typical filters and
   sorts, a deep page) and of the FHIR Task search as the provider holding every first Task;
5. the burst. The dev server cannot skip time, and pathways started over minutes would fall due
   over minutes, so the bench makes them fall due together on purpose: a burst pathway's
   handover is due `--burst-within` seconds after it started (short), and right after starting
   them a coordinator extends each (`POST /api/pathways/{id}/extend`, `until`) to one common
   instant T. At T each one's ladder fires at once: a provider reminder (webhook; its rung is
   at T - 1 s) and a coordinator alert (escalation) at the due time, plus the breach points. Measured from T:
   until every alert is recorded in the event store and every reminder accepted by the
   receiver (and the lag per pathway);
6. the escalation inbox with those escalations open: `/api/escalations` and the console's
   `/escalations` page, p50/p95.

Writes a section into bench/RESULTS.md unless `--no-write`; prints one JSON line `SCALE {...}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import func, select

from activities.store import event_rows, handover_rows
from api.tokens import TokenStore
from pathways.model import PathwayDefinition
from tests.api.flow import fhir_outputs
from tests.faults.harness import Cluster, Process, nhs_number

RESULTS = Path(__file__).parent / "RESULTS.md"
STEADY, BURST = "scale-steady", "scale-burst"
PROVIDER = "ward"
"""Holds every pathway's first handover: its FHIR search runs over all of them."""
SECTION = "## Scale: 10,000 open pathways (bench.scale)"


def definitions(receiver_url: str, burst_within: int) -> list[dict[str, Any]]:
    """Two steps each (ward, then district nurses). Steady: a day to complete, a reminder two
    hours before the accept-by and an alert at the due time: timers pending, nothing fires in a
    run. Burst: due `burst_within` seconds after the start, a reminder a second before the due time
    and an alert at it (rungs must be strictly ordered)."""
    roles = [
        {"id": "hospital", "title": "Hospital",
         "providers": [{"id": PROVIDER, "name": "Ward", "webhook": f"{receiver_url}/ward"}]},
        {"id": "nursing", "title": "Nursing",
         "providers": [{"id": "district-nurses", "name": "Nurses",
                        "webhook": f"{receiver_url}/nurses"}]},
    ]

    def one(definition_id: str, sla: dict[str, str], ladder: list[dict[str, str]]) -> dict[str, Any]:
        steps = [
            {"id": "discharge-summary", "title": "Discharge summary", "role": "hospital",
             "sla": sla, "handover": [{"name": "medication_list", "type": "text"}]},
            {"id": "first-visit", "title": "First visit", "role": "nursing",
             "sla": {"accept_within": "PT12H", "complete_within": "P1D"},
             "after": ["discharge-summary"], "handover": [{"name": "wound_ok", "type": "boolean"}]},
        ]
        return {"id": definition_id, "version": 1, "title": f"Scale bench ({definition_id})",
                "lead_provider": {"id": "lead", "name": "Lead"}, "roles": roles,
                "escalation": ladder, "steps": steps}

    due = f"PT{burst_within}S"
    return [
        one(STEADY, {"accept_within": "PT12H", "complete_within": "P1D"}, [
            {"at": "-PT2H", "action": "remind-provider", "clock": "accept"},
            {"at": "PT0S", "action": "alert-coordinator", "clock": "complete"},
        ]),
        one(BURST, {"accept_within": due, "complete_within": due}, [
            {"at": "-PT1S", "action": "remind-provider", "clock": "complete"},
            {"at": "PT0S", "action": "alert-coordinator", "clock": "complete"},
        ]),
    ]


# --- measuring ---------------------------------------------------------------------------------
def rss_mb(process: Process) -> float:
    """Resident memory of a process we started, from /proc (MiB)."""
    assert process.popen is not None
    for line in Path(f"/proc/{process.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(process: Process) -> float:
    """CPU seconds (user + system) a process we started has used, from /proc."""
    assert process.popen is not None
    fields = Path(f"/proc/{process.popen.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def timed(rounds: int, call: Callable[[], Awaitable[httpx.Response]]) -> dict[str, float]:
    """p50/p95/max of `rounds` sequential calls (ms), after one warm-up (`first`: caches
    cold); every answer 200."""
    began = time.perf_counter()
    (await call()).raise_for_status()
    first = (time.perf_counter() - began) * 1000
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        response = await call()
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, f"{response.status_code}: {response.text[:300]}"
    return {"p50": round(statistics.median(times)), "p95": round(pct(times, 95)),
            "max": round(max(times)), "first": round(first)}


class Bench:
    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        self.args = args
        self.cluster = Cluster(data_dir)
        # as installed: the worker's sandbox re-imports the workflow module for every workflow
        # it instantiates, and without bytecode files (a setting of this machine's shells)
        # it compiles the source each time
        self.cluster.env.pop("PYTHONDONTWRITEBYTECODE", None)
        catalogue = data_dir / "catalogue"
        self.definitions = {}
        for body in definitions(self.cluster.receiver.url, args.burst_within):
            (catalogue / f"{body['id']}.yaml").write_text(yaml.safe_dump(body))
            self.definitions[body["id"]] = PathwayDefinition.model_validate(body)
        self.n_dispatched = 0
        self.cluster.receiver.on_new = self._on_new
        self.http = httpx.AsyncClient(base_url=self.cluster.settings.base_url, timeout=120)
        self.started: set[int] = set()
        self.steady: list[str] = []
        self.burst: list[str] = []
        self.figures: dict[str, Any] = {}
        self.statuses: dict[int, int] = {}

    @property
    def worker(self) -> Process:
        return self.cluster.workers[0]

    def tokens(self) -> None:
        tokens = TokenStore(self.cluster.settings.event_store)
        self.coordinator = tokens.issue_coordinator("scale-bench")
        self.coord = {"Authorization": f"Bearer {self.coordinator}"}
        self.provider = {"Authorization": f"Bearer {tokens.issue_provider(PROVIDER)}"}

    async def run(self) -> dict[str, Any]:
        began = time.monotonic()
        self.figures["load_at_start"] = round(os.getloadavg()[0], 1)
        await self.cluster.start()
        self.tokens()
        f = self.figures
        f["rss_worker_idle_mb"] = round(rss_mb(self.worker))
        n_burst = self.args.burst
        n_steady = self.args.pathways - n_burst
        f["pathways"], f["burst"] = self.args.pathways, n_burst
        await self.start_all(n_steady, n_burst)
        f["rss_worker_started_mb"] = round(rss_mb(self.worker))
        f["rss_server_started_mb"] = round(rss_mb(self.cluster.server))
        assert self.cluster.api is not None
        f["rss_api_started_mb"] = round(rss_mb(self.cluster.api))
        burst_at = await self.extend_burst()
        await self.history_per_handover()
        await self.lists()
        await self.wait_burst(burst_at)
        await self.inbox()
        f["rss_worker_end_mb"] = round(rss_mb(self.worker))
        f["rss_server_end_mb"] = round(rss_mb(self.cluster.server))
        f["http_statuses"] = dict(sorted(self.statuses.items()))
        f["wall_s"] = round(time.monotonic() - began)
        return f

    # 1. start --------------------------------------------------------------------------------
    def cpu(self) -> dict[str, float]:
        assert self.cluster.api is not None
        return {"worker": cpu_s(self.worker), "server": cpu_s(self.cluster.server),
                "api": cpu_s(self.cluster.api), "bench": time.process_time()}

    async def start_all(self, n_steady: int, n_burst: int) -> None:
        cpu = self.cpu()
        began = time.monotonic()
        self.steady = await self.start(STEADY, 0, n_steady)
        steady_s = time.monotonic() - began
        await self.until(lambda: self.dispatched() >= n_steady, 7200, "first Tasks dispatched")
        steady_dispatched = time.monotonic() - began
        # the burst's candidates on a drained queue, so that their short due times run from
        # now rather than from whenever the backlog reaches them
        burst_began = time.monotonic()
        self.burst = await self.start(BURST, n_steady, n_burst)
        total = n_steady + n_burst
        await self.until(lambda: self.dispatched() >= total, 3600, "burst Tasks dispatched")
        dispatched = time.monotonic() - began
        self.burst_started_s = time.monotonic() - burst_began
        started = steady_s + self.burst_started_s
        self.figures.update(
            start_s=round(steady_s, 1), start_per_s=round(n_steady / steady_s, 1),
            all_dispatched_s=round(steady_dispatched, 1),
            dispatched_per_s=round(n_steady / steady_dispatched, 1),
            burst_started_and_dispatched_s=round(self.burst_started_s, 1),
            start_cpu_s={k: round(v - cpu[k], 1) for k, v in self.cpu().items()},
        )
        print(f"started {n_steady} in {steady_s:.0f} s ({n_steady / steady_s:.1f}/s), every "
              f"first Task at its provider after {steady_dispatched:.0f} s; then {n_burst} burst "
              f"pathways started and dispatched in {self.burst_started_s:.0f} s "
              f"({started:.0f} s / {dispatched:.0f} s in all)", flush=True)

    async def start(self, definition: str, first: int, count: int) -> list[str]:
        semaphore = asyncio.Semaphore(self.args.concurrency)
        ids: list[str] = []

        async def one(n: int) -> None:
            body = {"definition": definition, "patient": {"nhs_number": nhs_number(n)}}
            headers = {**self.coord, "Idempotency-Key": f"scale-start-{n}"}
            async with semaphore:
                # closed loop: at most `window` started and not yet at their provider, the
                # rate the installation sustains rather than a backlog in the task queue
                while len(self.started) - self.dispatched() >= self.args.window:
                    await asyncio.sleep(0.1)
                self.started.add(n)
                for _ in range(120):  # the same request again while the outcome is unknown
                    try:
                        response = await self.http.post("/api/pathways", json=body,
                                                        headers=headers)
                    except httpx.TransportError:
                        await asyncio.sleep(1)
                        continue
                    self.statuses[response.status_code] = (
                        self.statuses.get(response.status_code, 0) + 1)
                    if response.status_code != 503:
                        break
                    await asyncio.sleep(1)
            assert response.status_code == 201, response.text
            ids.append(str(response.json()["id"]))

        await asyncio.gather(*(one(n) for n in range(first, first + count)))
        return ids

    def _on_new(self, webhook_id: str, task: dict[str, Any]) -> None:
        """In the receiver's thread, for each webhook-id's first accepted delivery."""
        if webhook_id.endswith(".dispatched"):
            self.n_dispatched += 1

    def dispatched(self) -> int:
        return self.n_dispatched

    @staticmethod
    async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for: {what}"
            await asyncio.sleep(0.5)

    # 5a. make the burst pathways fall due together --------------------------------------------
    async def extend_burst(self) -> datetime | None:
        """Extend each burst pathway's first handover to one instant T; returns T."""
        if not self.burst:
            return None
        store = self.cluster.store
        with store.engine.connect() as conn:
            latest = conn.execute(
                select(func.max(handover_rows.c.complete_by))
                .where(handover_rows.c.definition_id == BURST)
            ).scalar_one()
        assert latest is not None
        latest = latest if latest.tzinfo else latest.replace(tzinfo=UTC)
        # the extensions take about as long as the starts did: T after them and the latest due
        extend_s = self.burst_started_s
        at: datetime = max(latest, datetime.now(UTC) + timedelta(seconds=extend_s * 2)) + timedelta(
            seconds=self.args.burst_margin
        )
        at = at.replace(microsecond=0) + timedelta(seconds=1)
        semaphore = asyncio.Semaphore(self.args.concurrency)
        refused: list[str] = []
        began = time.monotonic()

        async def one(pathway_id: str) -> None:
            body = {"handover_id": "discharge-summary.1", "until": at.isoformat(),
                    "reason": "scale bench: fall due together"}
            headers = {**self.coord, "Idempotency-Key": f"scale-extend-{pathway_id}"}
            async with semaphore:
                for _ in range(60):
                    response = await self.http.post(f"/api/pathways/{pathway_id}/extend",
                                                    json=body, headers=headers)
                    if response.status_code != 503:
                        break
                    await asyncio.sleep(1)
            if response.status_code != 200:
                refused.append(f"{response.status_code}: {response.text[:200]}")

        await asyncio.gather(*(one(p) for p in self.burst))
        extended_s = time.monotonic() - began
        left = (at - datetime.now(UTC)).total_seconds()
        warnings = [f"{len(refused)} extensions refused, e.g. {refused[0]}"] if refused else []
        if left <= 0:
            warnings.append(f"the extensions ended {-left:.0f} s after T: raise --burst-within")
        for warning in warnings:
            print(f"WARNING: {warning}", flush=True)
        self.figures["warnings"] = warnings
        self.figures.update(burst_extend_s=round(extended_s, 1), burst_fires_in_s=round(left))
        print(f"extended {len(self.burst)} to T={at.isoformat()} in {extended_s:.0f} s; "
              f"T in {left:.0f} s", flush=True)
        return at

    # 3. history events per handover ------------------------------------------------------------
    async def history_per_handover(self) -> None:
        """History length of a sample: one handover dispatched, then after its completion."""
        client = self.cluster.client
        assert client is not None
        sample = sorted(self.steady)[: self.args.sample]
        if not sample:
            return

        async def length(pathway_id: str) -> int:
            described = await client.get_workflow_handle(pathway_id).describe()
            return int(described.raw_description.workflow_execution_info.history_length)

        before = [await length(p) for p in sample]
        tasks = self.first_tasks(sample)
        step = self.definitions[STEADY].steps[0]
        for pathway_id in sample:
            task = tasks[pathway_id]
            body = {**task, "status": "completed", "output": fhir_outputs(step)}
            headers = {**self.provider, "If-Match": f'W/"{task["meta"]["versionId"]}"',
                       "Content-Type": "application/fhir+json"}
            for _ in range(60):  # the same request again while the outcome is unknown
                response = await self.http.put(f"/fhir/Task/{task['id']}", json=body,
                                               headers=headers)
                if response.status_code != 503:
                    break
                await asyncio.sleep(1)
            assert response.status_code in (200, 412), response.text[:300]
        want = len(self.steady) + len(self.burst) + len(sample)
        await self.until(lambda: self.dispatched() >= want, 300, "second Tasks dispatched")
        await asyncio.sleep(1)  # the dispatch activity's completion reaches history
        after = [await length(p) for p in sample]
        per = [a - b for a, b in zip(after, before, strict=True)]
        self.figures.update(
            history_at_start=round(statistics.mean(before), 1),
            history_per_completed_handover=round(statistics.mean(per), 1),
            history_sample=len(sample),
        )

    def first_tasks(self, pathway_ids: list[str]) -> dict[str, dict[str, Any]]:
        wanted = set(pathway_ids)
        found: dict[str, dict[str, Any]] = {}
        for delivery in self.cluster.receiver.deliveries:
            if delivery.answered == 202 and delivery.webhook_id.endswith(".dispatched"):
                pathway_id = delivery.webhook_id.split(".", 1)[0]
                if pathway_id in wanted and delivery.webhook_id.startswith(
                    f"{pathway_id}.discharge-summary."
                ):
                    found[pathway_id] = json.loads(delivery.body)
        assert len(found) == len(wanted), f"{len(found)} of {len(wanted)} first Tasks"
        return found

    # 4. coordinator list and FHIR search ---------------------------------------------------------
    async def lists(self) -> None:
        rounds = self.args.rounds
        views = {
            "list: open, latest change": "/api/pathways?status=open",
            "list: soonest due": "/api/pathways?status=open&sort=due",
            "list: at risk or breached": "/api/pathways?sla_state=at-risk,breached&sort=sla",
            "list: definition + provider": f"/api/pathways?definition={STEADY}"
                                           f"&provider={PROVIDER}&sort=age",
            "list: step title search": "/api/pathways?status=open&q=discharge",
            "list: deep page": f"/api/pathways?status=open&offset="
                               f"{max(0, (len(self.steady) + len(self.burst)) // 2)}",
        }
        searches = {
            "fhir: requested Tasks": f"/fhir/Task?owner=Organization/{PROVIDER}&status=requested",
            "fhir: changed since": f"/fhir/Task?owner=Organization/{PROVIDER}"
                                   f"&_lastUpdated=gt2000-01-01T00:00:00Z&_count=100",
        }
        out: dict[str, dict[str, float]] = {}
        for name, url in views.items():
            out[name] = await timed(rounds, partial(self.http.get, url, headers=self.coord))
        for name, url in searches.items():
            out[name] = await timed(rounds, partial(self.http.get, url, headers=self.provider))
        nxt = await self.next_page(searches["fhir: requested Tasks"])
        if nxt:
            out["fhir: next page (cursor)"] = await timed(
                rounds, partial(self.http.get, nxt, headers=self.provider))
        self.figures["latency_ms"] = out
        for name, stats in out.items():
            print(f"{name}: p50 {stats['p50']} ms, p95 {stats['p95']} ms", flush=True)

    async def next_page(self, url: str) -> str | None:
        bundle = (await self.http.get(url, headers=self.provider)).json()
        for link in bundle.get("link", []):
            if link["relation"] == "next":
                return str(link["url"]).removeprefix(self.cluster.settings.base_url)
        return None

    # 5b. the burst ---------------------------------------------------------------------------
    async def wait_burst(self, at: datetime | None) -> None:
        if at is None:
            return
        store = self.cluster.store
        burst = set(self.burst)
        left = (at - datetime.now(UTC)).total_seconds()
        if left < 0:
            warning = f"the measurements before the burst ended {-left:.0f} s after T"
            print(f"WARNING: {warning}", flush=True)
            self.figures.setdefault("warnings", []).append(warning)
        await asyncio.sleep(max(0.0, left))

        def alerted() -> dict[str, datetime]:
            """When each burst pathway's alert was recorded: its second escalation event (the
            reminder's rung records the first, a second earlier)."""
            query = (
                select(event_rows.c.pathway_id, func.max(event_rows.c.at))
                .where(event_rows.c.kind == "escalated", event_rows.c.definition_id == BURST)
                .group_by(event_rows.c.pathway_id)
                .having(func.count() >= 2)
            )
            with store.engine.connect() as conn:
                return {p: t for p, t in conn.execute(query) if p in burst}

        def reminded() -> dict[str, float]:
            first = self.cluster.receiver.first_accepted()
            return {key.split(".", 1)[0]: t for key, t in first.items()
                    if key.endswith(".reminder") and key.split(".", 1)[0] in burst}

        t0 = at.timestamp()
        recorded_s = notified_s = None
        deadline = time.monotonic() + self.args.burst_timeout
        while (recorded_s is None or notified_s is None) and time.monotonic() < deadline:
            now = time.time()
            if recorded_s is None and len(await asyncio.to_thread(alerted)) >= len(burst):
                recorded_s = now - t0
            if notified_s is None and len(reminded()) >= len(burst):
                notified_s = now - (t0 - 1)
            await asyncio.sleep(0.25)
        fired = [(t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() - t0
                 for t in alerted().values()]
        told = [t - (t0 - 1) for t in reminded().values()]  # its rung is at T - 1 s
        self.figures["burst_result"] = {
            "pathways": len(burst),
            "alerts_recorded": len(fired), "reminders_accepted": len(told),
            "all_recorded_s": round(recorded_s, 1) if recorded_s is not None else None,
            "all_notified_s": round(notified_s, 1) if notified_s is not None else None,
            "fired_lag_p50_s": round(statistics.median(fired), 1) if fired else None,
            "fired_lag_max_s": round(max(fired), 1) if fired else None,
            "notify_lag_p50_s": round(statistics.median(told), 1) if told else None,
            "notify_lag_p95_s": round(pct(told, 95), 1) if told else None,
        }
        print(f"burst: {self.figures['burst_result']}", flush=True)

    # 6. the escalation inbox -------------------------------------------------------------------
    async def inbox(self) -> None:
        rounds = max(3, self.args.rounds // 3)
        response = await self.http.get("/api/escalations", headers=self.coord)
        response.raise_for_status()
        self.figures["open_escalations"] = len(response.json()["items"])
        cookie = {"Cookie": f"pathways_console={self.coordinator}"}
        out = {
            "api: /api/escalations": await timed(
                rounds, lambda: self.http.get("/api/escalations", headers=self.coord)),
            "console: /escalations": await timed(
                rounds, lambda: self.http.get("/escalations", headers=cookie)),
        }
        self.figures["inbox_latency_ms"] = out
        for name, stats in out.items():
            print(f"{name}: p50 {stats['p50']} ms, p95 {stats['p95']} ms", flush=True)

    async def close(self) -> None:
        await self.http.aclose()
        await self.cluster.close()


# --- report ------------------------------------------------------------------------------------
def rows(f: dict[str, Any], command: str) -> str:
    b = f.get("burst_result", {})
    lines = [
        f"`{command}` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"2 cores shared with other helpers, load average {f['load_at_start']} at the start; "
        f"wall {f['wall_s']} s)",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| pathways open (of them burst candidates) | {f['pathways']} ({f['burst']}) |",
        f"| start of the steady {f['pathways'] - f['burst']}: all 201 | {f['start_s']} s "
        f"({f['start_per_s']}/s) |",
        f"| start of the steady {f['pathways'] - f['burst']}: every first Task at its provider | "
        f"{f['all_dispatched_s']} s ({f['dispatched_per_s']}/s) |",
        f"| then the {f['burst']} burst candidates: started and dispatched | "
        f"{f['burst_started_and_dispatched_s']} s |",
        f"| CPU s until every Task dispatched: worker / dev server / API / bench client | "
        f"{' / '.join(str(v) for v in f['start_cpu_s'].values())} |",
        f"| worker RSS: idle / all started / end | {f['rss_worker_idle_mb']} / "
        f"{f['rss_worker_started_mb']} / {f['rss_worker_end_mb']} MiB |",
        f"| dev server RSS: all started / end | {f['rss_server_started_mb']} / "
        f"{f['rss_server_end_mb']} MiB |",
        f"| history events: at start (1 handover dispatched) | {f.get('history_at_start')} |",
        f"| history events per completed handover (sample of {f.get('history_sample')}) | "
        f"{f.get('history_per_completed_handover')} |",
    ]
    for name, stats in {**f.get("latency_ms", {}), **f.get("inbox_latency_ms", {})}.items():
        lines.append(f"| {name} p50 / p95 (first call) | {stats['p50']} / {stats['p95']} ms "
                     f"({stats['first']} ms) |")
    lines += [
        f"| open escalations in the inbox | {f.get('open_escalations')} |",
        f"| burst: pathways falling due at T | {b.get('pathways')} |",
        f"| burst: every alert recorded in the event store | {b.get('all_recorded_s')} s after T"
        f" (fired: p50 {b.get('fired_lag_p50_s')} s, last {b.get('fired_lag_max_s')} s) |",
        f"| burst: every reminder accepted by the webhook receiver | "
        f"{b.get('all_notified_s')} s after T - 1 s, its due time (p50 {b.get('notify_lag_p50_s')} s, "
        f"p95 {b.get('notify_lag_p95_s')} s) |",
        f"| API answers while starting | {f['http_statuses']} |",
    ]
    lines += [f"| warning | {w} |" for w in f.get("warnings", [])]
    return "\n".join(lines) + "\n"


def write_results(text: str) -> None:
    """Append under this benchmark's own section (created once)."""
    current = RESULTS.read_text()
    if SECTION not in current:
        current = current.rstrip("\n") + f"\n\n{SECTION}\n\n"
    RESULTS.write_text(current.rstrip("\n") + "\n\n" + text)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--pathways", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="200 pathways, fewer rounds")
    parser.add_argument("--burst", type=int, default=None,
                        help="pathways falling due together (default: one in ten)")
    parser.add_argument("--burst-within", type=int, default=None,
                        help="a burst pathway's due time after its start, seconds "
                        "(default: enough to start and extend them all first)")
    parser.add_argument("--burst-margin", type=int, default=5)
    parser.add_argument("--burst-timeout", type=float, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--window", type=int, default=200,
                        help="at most this many started and not yet at their provider")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.pathways, args.rounds = 200, 10
    if args.burst is None:
        args.burst = args.pathways // 10
    if args.burst_within is None:  # start and extend them at >= 4/s each, then some slack
        args.burst_within = 30 + math.ceil(args.burst * 0.6)
    args.sample = min(args.sample, args.pathways - args.burst)
    return args


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    bench = Bench(args, data_dir)
    current = asyncio.current_task()
    assert current is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, current.cancel)  # SIGTERM: stop what we started
    try:
        figures = await bench.run()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await bench.close()
        if args.keep:
            print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    command = "python -m bench.scale " + (
        "--quick" if args.quick else f"--pathways {args.pathways}")
    print("SCALE " + json.dumps(figures), flush=True)
    if not args.no_write:
        write_results(rows(figures, command))
    return figures


if __name__ == "__main__":
    asyncio.run(main())
