"""The product's handover path side by side with bare Temporal, on one dev server, in one run.

    python -m bench.vs_bare --pathways 80 --rounds 2  # 1,120 handovers measured per side

Starts one Temporal dev server on a SQLite file and, alternating rounds on it:
- product: `pathways worker` and `pathways api` processes; provider clients PUT each Task
  completed (with data) over FHIR as soon as its webhook arrives; measured from the PUT being
  sent to the next provider's webhook receiving its Task;
- bare: a worker process with a minimal workflow that accepts an Update and runs one activity
  POSTing to the same receiver; clients call the Update as soon as the POST arrives; measured
  from the Update being sent to the next POST being received.
Both: 8-step pathways, all concurrently (throughput: handovers per second from the first start
to the last completion, and latency under that load), then rounds of 8 pathways at once
(latency at light load). p50/p95/p99 of each; appends the table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from pathways import fhir
from pathways.demo import example_output
from pathways.model import PathwayDefinition
from pathways.nhs_number import check_digit
from pathways.state import parse_task_id
from worker.binaries import installed_binary
from workflows import search
from workflows.codec import new_key_line

RESULTS = Path(__file__).parent / "RESULTS.md"
STEPS = 8
LIGHT = 8
"""Pathways at once in the light-load rounds: latency without queueing behind other work (under
full load a closed loop's latency is concurrency / throughput, by Little's law)."""
PATHWAYS_EXE = str(Path(sys.executable).parent / "pathways")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the receiver both sides POST to ---------------------------------------------------------
class Receiver:
    """Webhook endpoint on 127.0.0.1: hands each new webhook-id's body to `on_post` with the
    time it arrived."""

    def __init__(self, on_post: Callable[[str, bytes, float], object]) -> None:
        seen: set[str] = set()
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                arrived = time.perf_counter()
                key = self.headers.get("webhook-id", "")
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with lock:
                    new = key not in seen
                    seen.add(key)
                if new:
                    on_post(key, body, arrived)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- bare Temporal ---------------------------------------------------------------------------
@dataclass
class BareInput:
    url: str
    steps: int


SHARED: list[httpx.AsyncClient] = []
"""With --bare-shared-client: the bare worker's one HTTP client, as the product's worker keeps
one. By default each bare activity builds its own client, as in the earlier rows of
RESULTS.md; building one costs about 18 ms of CPU (its TLS context), which the product does not
pay, so the default flatters the product's throughput ratio when the machine is CPU-bound."""


@activity.defn(name="bare_post")
async def bare_post(url: str, key: str) -> int:
    if SHARED:
        response = await SHARED[0].post(url, json={"key": key}, headers={"webhook-id": key})
        response.raise_for_status()
        return response.status_code
    async with httpx.AsyncClient() as http:
        response = await http.post(url, json={"key": key}, headers={"webhook-id": key})
        response.raise_for_status()
        return response.status_code


@workflow.defn(name="BareHandover")
class BareHandover:
    """Accept an Update per step; dispatch the next step with one activity POST."""

    def __init__(self) -> None:
        self.done = 0

    @workflow.run
    async def run(self, input: BareInput) -> int:
        for step in range(input.steps):
            await workflow.execute_activity(
                bare_post, args=[input.url, f"{workflow.info().workflow_id}.{step}"],
                start_to_close_timeout=timedelta(seconds=30),
            )
            await workflow.wait_condition(lambda s=step: self.done > s)  # type: ignore[misc]
        return self.done

    @workflow.update
    def complete(self, step: int) -> int:
        self.done = max(self.done, step + 1)
        return self.done


async def bare_worker(address: str, task_queue: str, shared_client: bool = False) -> None:
    # by its module name, not __main__, so the sandbox can import the workflow's module
    from bench.vs_bare import SHARED, BareHandover, bare_post

    if shared_client:
        SHARED.append(httpx.AsyncClient())

    client = await Client.connect(address)
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("bench")
    )
    worker = Worker(client, task_queue=task_queue, workflows=[BareHandover],
                    activities=[bare_post], workflow_runner=runner)
    await worker.run()


# --- measurement -----------------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")
ROLES = (("--bare-worker", "bare worker"), ("temporal", "dev server"), ("worker", "worker"),
         ("api", "api"))


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) so far of this process ("bench client") and of each child
    process by role: the load-independent cost of a round, where wall time depends on what
    else the machine runs."""
    used: dict[str, float] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        pid, parent = int(entry.name), int(fields[1])
        if pid == me:
            role = "bench client"
        elif parent == me:
            words = [a.decode(errors="replace") for a in argv]
            role = next((name for flag, name in ROLES if any(flag == Path(w).name or flag == w
                                                              for w in words)), "other")
        else:
            continue
        used[role] = used.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return used


@dataclass
class Round:
    latencies: list[float] = field(default_factory=list)
    sent: dict[tuple[str, int], float] = field(default_factory=dict)
    done: int = 0
    began: float = 0.0
    ended: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds each process used during the round."""

    def arrived(self, flow: str, step: int, at: float) -> None:
        before = self.sent.get((flow, step - 1))
        if before is not None:
            self.latencies.append(at - before)


def definition(url: str) -> dict[str, Any]:
    sla = {"accept_within": "P1D", "complete_within": "P2D"}
    roles, steps = [], []
    for n in range(STEPS):
        roles.append({"id": f"r{n}", "title": f"Role {n}", "providers": [
            {"id": f"p{n}", "name": f"Provider {n}", "webhook": f"{url}/p{n}"}]})
        step: dict[str, Any] = {"id": f"s{n}", "title": f"Step {n}", "role": f"r{n}", "sla": sla,
                                "handover": [{"name": "note", "type": "text"}]}
        if n:
            step["after"] = [f"s{n - 1}"]
        steps.append(step)
    return {"id": "bench-eight", "version": 1, "title": "Eight handovers",
            "lead_provider": {"id": "lead", "name": "Lead"}, "roles": roles, "steps": steps}


def nhs_number(n: int) -> str:
    for k in range(13):
        nine = f"{900_000_000 + 13 * n + k:09d}"
        digit = check_digit(nine)
        if digit is not None:
            return nine + str(digit)
    raise AssertionError("unreachable")


class Product:
    """`pathways worker` + `pathways api` processes and FHIR provider clients."""

    def __init__(self, data_dir: Path, address: str, receiver_url: str) -> None:
        self.data_dir = data_dir
        catalogue = data_dir / "catalogue"
        catalogue.mkdir(parents=True)
        raw = definition(receiver_url)
        (catalogue / "bench-eight.yaml").write_text(yaml.safe_dump(raw))
        self.definition = PathwayDefinition.model_validate(raw)
        (data_dir / "encryption.keys").write_text(new_key_line("bench") + "\n")
        (data_dir / "encryption.keys").chmod(0o600)
        self.port = free_port()
        self.env = {**os.environ, "PATHWAYS_TEMPORAL_ADDRESS": address,
                    "PATHWAYS_DATA_DIR": str(data_dir), "PATHWAYS_SECRET_KEY": "bench",
                    "PATHWAYS_CATALOGUE_DIR": str(catalogue), "PATHWAYS_API_PORT": str(self.port),
                    "PATHWAYS_TASK_QUEUE": "bench-product", "PATHWAYS_METRICS_PORT": "0",
                    "PATHWAYS_HEALTH_PORT": "0", "PATHWAYS_LOG_LEVEL": "WARNING",
                    "PATHWAYS_LOG_FORMAT": "json"}
        self.base = f"http://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.tokens: dict[str, str] = {}
        self.started = 0

    async def start(self) -> None:
        subprocess.run([PATHWAYS_EXE, "setup"], env=self.env, check=True, capture_output=True)
        from api.tokens import TokenStore  # the store URL comes from the data dir

        store = TokenStore(f"sqlite:///{self.data_dir / 'pathways.db'}")
        self.coordinator = store.issue_coordinator("bench")
        self.tokens = {f"p{n}": store.issue_provider(f"p{n}") for n in range(STEPS)}
        log = (self.data_dir / "processes.log").open("ab")
        for command in ("worker", "api"):
            self.processes.append(subprocess.Popen([PATHWAYS_EXE, command], env=self.env,
                                                   stdout=log, stderr=log))
        async with httpx.AsyncClient() as http:
            for _ in range(240):
                try:
                    if (await http.get(f"{self.base}/fhir/metadata")).is_success:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.25)
        raise RuntimeError("the API did not start")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=60)

    @staticmethod
    def parse(key: str) -> tuple[str, int]:
        pathway_id, handover_id = parse_task_id(key.rsplit(".", 2)[0])
        return pathway_id, int(handover_id.split(".")[0][1:])

    async def launch(self, http: httpx.AsyncClient, count: int) -> None:
        semaphore = asyncio.Semaphore(8)

        async def one(n: int) -> None:
            body = {"definition": "bench-eight", "patient": {"nhs_number": nhs_number(n)}}
            async with semaphore:
                response = await http.post(f"{self.base}/api/pathways", json=body, headers={
                    "Authorization": f"Bearer {self.coordinator}"})
            response.raise_for_status()

        first = self.started
        self.started += count
        await asyncio.gather(*(one(n) for n in range(first, self.started)))

    async def complete(self, http: httpx.AsyncClient, body: bytes, rnd: Round) -> None:
        task = json.loads(body)
        pathway_id, step = self.parse(f"{task['id']}.v0.dispatched")
        provider = f"p{step}"
        field_ = self.definition.steps[step].handover[0]
        output = [{"type": {"text": field_.name},
                   **fhir.field_value(field_, example_output(self.definition.steps[step])[
                       field_.name])}]
        headers = {"Authorization": f"Bearer {self.tokens[provider]}",
                   "If-Match": f'W/"{task["meta"]["versionId"]}"'}
        put = {**task, "status": "completed", "output": output}
        rnd.sent[(pathway_id, step)] = time.perf_counter()
        for _ in range(100):
            response = await http.put(f"{self.base}/fhir/Task/{task['id']}", json=put,
                                      headers=headers)
            if response.status_code != 503:
                break
            await asyncio.sleep(0.2)
        if response.status_code in (200, 412):
            rnd.done += 1


async def run_round(
    name: str, count: int, receiver_queue: asyncio.Queue[tuple[str, bytes, float]],
    launch: Callable[[], Any], act: Callable[[str, bytes, Round], Any],
    parse: Callable[[str], tuple[str, int]], clients: int = 32,
) -> Round:
    """Start `count` flows; clients act on each arriving POST until every step is done."""
    rnd = Round()
    target = count * STEPS
    finished = asyncio.Event()

    async def client() -> None:
        while True:
            key, body, at = await receiver_queue.get()
            flow, step = parse(key)
            rnd.arrived(flow, step, at)
            await act(key, body, rnd)
            if rnd.done >= target:
                finished.set()

    tasks = [asyncio.ensure_future(client()) for _ in range(clients)]
    before = cpu_seconds()
    rnd.began = time.perf_counter()
    await launch()
    await asyncio.wait_for(finished.wait(), timeout=1800)
    rnd.ended = time.perf_counter()
    after = cpu_seconds()
    rnd.cpu = {role: after[role] - before.get(role, 0.0) for role in after}
    for task in tasks:
        task.cancel()
    print(f"  {name}: {len(rnd.latencies)} handovers measured, "
          f"{target / (rnd.ended - rnd.began):.1f}/s, CPU ms per handover: "
          f"{cpu_text(rnd.cpu, target, name)}", flush=True)
    return rnd


SIDES = {"product": ("worker", "api"), "bare": ("bare worker",)}
SHARED_ROLES = ("dev server", "bench client")


def cpu_text(cpu: dict[str, float], handovers: int, name: str) -> str:
    """e.g. "61 (worker 25, api 9, dev server 23, bench client 4)": only the processes that
    serve this side (the other side's processes idle, but are not counted)."""
    roles = [*SIDES[name.removesuffix("-light")], *SHARED_ROLES]
    each = {role: cpu.get(role, 0.0) * 1000 / handovers for role in roles}
    parts = ", ".join(f"{role} {ms:.0f}" for role, ms in each.items())
    return f"{sum(each.values()):.0f} ({parts})"


def stats(rounds: list[Round], count: int) -> dict[str, float]:
    latencies = sorted(x for r in rounds for x in r.latencies)
    seconds = sum(r.ended - r.began for r in rounds)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    cpu: dict[str, float] = {}
    for r in rounds:
        for role, used in r.cpu.items():
            cpu[role] = cpu.get(role, 0.0) + used
    return {"n": len(latencies), "p50": statistics.median(latencies) * 1000, "p95": pct(0.95),
            "p99": pct(0.99), "per_s": count * STEPS * len(rounds) / seconds,
            "handovers": count * STEPS * len(rounds), **{f"cpu {k}": v for k, v in cpu.items()}}


async def main_async(
    pathways: int, rounds: int, light_rounds: int, shared_client: bool = False
) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        env = await WorkflowEnvironment.start_local(
            search_attributes=search.ALL_KEYS,
            dev_server_existing_path=installed_binary("temporal"),
            dev_server_database_filename=str(data_dir / "temporal.db"),
            dev_server_log_level="error",
        )
        async with env:
            address = env.client.service_client.config.target_host
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[tuple[str, bytes, float]] = asyncio.Queue()
            receiver = Receiver(lambda k, b, t: loop.call_soon_threadsafe(
                queue.put_nowait, (k, b, t)))
            product = Product(data_dir / "product", address, receiver.url)
            await product.start()
            bare = subprocess.Popen([sys.executable, "-m", "bench.vs_bare", "--bare-worker",
                                     address] + (["--bare-shared-client"] if shared_client else []))
            results: dict[str, list[Round]] = {
                "product": [], "bare": [], "product-light": [], "bare-light": []}
            wid = 0
            try:
                async with httpx.AsyncClient(timeout=60) as http:
                    async def product_act(key: str, body: bytes, rnd: Round) -> None:
                        await product.complete(http, body, rnd)

                    async def bare_act(key: str, body: bytes, rnd: Round) -> None:
                        flow, step = key.rsplit(".", 1)
                        rnd.sent[(flow, int(step))] = time.perf_counter()
                        await env.client.get_workflow_handle(flow).execute_update(
                            BareHandover.complete, int(step))
                        rnd.done += 1

                    def bare_parse(key: str) -> tuple[str, int]:
                        flow, step = key.rsplit(".", 1)
                        return flow, int(step)

                    async def bare_launch(count: int) -> None:
                        nonlocal wid
                        first, wid = wid, wid + count
                        await asyncio.gather(*(env.client.start_workflow(
                            BareHandover.run, BareInput(f"{receiver.url}/bare", STEPS),
                            id=f"bare-{n}", task_queue="bench-bare") for n in range(first, wid)))

                    async def one_round(name: str, count: int) -> Round:
                        if name == "product":
                            return await run_round(name, count, queue,
                                                   lambda: product.launch(http, count),
                                                   product_act, product.parse)
                        return await run_round(name, count, queue, lambda: bare_launch(count),
                                               bare_act, bare_parse)

                    for n in range(rounds + 1):  # round 0 of each warms up, not counted
                        for name in ("product", "bare"):
                            print(f"round {n} {name}", flush=True)
                            heavy = await one_round(name, pathways)
                            lights = [await one_round(name, LIGHT) for _ in range(light_rounds)]
                            if n:
                                results[name].append(heavy)
                                results[f"{name}-light"] += lights
            finally:
                bare.terminate()
                bare.wait(timeout=30)
                product.stop()
                receiver.close()
    return {name: stats(r, LIGHT if name.endswith("light") else pathways)
            for name, r in results.items()}


def record(result: dict[str, dict[str, float]], command: str) -> str:
    lines = [
        "",
        f"## Product vs bare Temporal ({datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        f"{os.cpu_count()} cores, shared machine)",
        "",
        f"`{command}`: one dev server (SQLite file), alternating rounds of 8-step pathways. "
        "Product: PUT Task completed (FHIR API process) -> next provider's webhook received "
        "(worker process). Bare: Update -> next activity POST received (minimal worker "
        "process). Throughput: handovers/s from the first start to the last completion.",
        "",
        "| | handovers | p50 ms | p95 ms | p99 ms | handovers/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, key in (("under load", ""), (f"light load ({LIGHT} at once)", "-light")):
        p, b = result[f"product{key}"], result[f"bare{key}"]
        for name, r in (("product", p), ("bare", b)):
            lines.append(f"| {name}, {label} | {r['n']:.0f} | {r['p50']:.0f} | {r['p95']:.0f} "
                         f"| {r['p99']:.0f} | {r['per_s']:.1f} |")
        lines.append(f"| ratio, {label} | | {p['p50'] / b['p50']:.2f}x "
                     f"| {p['p95'] / b['p95']:.2f}x | {p['p99'] / b['p99']:.2f}x "
                     f"| {p['per_s'] / b['per_s']:.2f}x |")
    lines.append("")
    lines.append("CPU ms per handover, under load (each process's user + system time over the "
                 "measured rounds, divided by their handovers; the dev server and the bench "
                 "client serve both sides, so only the rounds of that side count):")
    for name in ("product", "bare"):
        r = result[name]
        cpu = {k.removeprefix("cpu "): v for k, v in r.items() if k.startswith("cpu ")}
        lines.append(f"- {name}: {cpu_text(cpu, int(r['handovers']), name)}")
    lines.append("")
    lines.append("Targets: latency <= 1.3x bare at p50 and p99, throughput >= 0.8x bare.")
    text = "\n".join(lines) + "\n"
    with RESULTS.open("a") as results:
        results.write(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pathways", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--light-rounds", type=int, default=9,
                        help=f"light-load launches of {LIGHT} pathways per round and side")
    parser.add_argument("--bare-shared-client", action="store_true",
                        help="bare activities share one HTTP client (see SHARED)")
    parser.add_argument("--bare-worker", metavar="ADDRESS")
    args = parser.parse_args()
    if args.bare_worker:
        asyncio.run(bare_worker(args.bare_worker, "bench-bare", args.bare_shared_client))
        os._exit(0)
    result = asyncio.run(main_async(args.pathways, args.rounds, args.light_rounds,
                                    args.bare_shared_client))
    command = (f"python -m bench.vs_bare --pathways {args.pathways} --rounds {args.rounds} "
               f"--light-rounds {args.light_rounds}"
               + (" --bare-shared-client" if args.bare_shared_client else ""))
    print(record(result, command))
    os._exit(0)  # the SDK's runtime can crash the interpreter at exit (sdk-python issue 300)


if __name__ == "__main__":
    main()
