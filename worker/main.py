"""`pathways worker`: the process ops run, many per task queue.

Connects by settings, registers the pathway workflow and its activities, exposes Prometheus metrics
(Temporal SDK runtime metrics plus the activities' domain counters) and a health endpoint, and shuts
down gracefully on SIGTERM/SIGINT: no new tasks are polled, running ones finish.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import httpx
import structlog
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime
from temporalio.worker import Worker

from activities.flow_summary import catch_up
from activities.pathway_activities import PathwayActivities, StoreStatus
from activities.store import EventStore
from pathways.patient_search import PatientIndex, task_patient
from pathways.settings import Settings
from worker.connection import connect_or_fail
from worker.health import HealthServer, serve_health
from worker.metrics import refresh_forever
from worker.reconcile import reconcile_forever
from worker.subscriptions import deliver_forever
from worker.telemetry import logging_runtime, structured_sdk_logs, telemetry
from workflows.pathway import PathwayWorkflow
from workflows.sandbox import RUNNER, precompile

log = structlog.get_logger("pathways.worker")


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A runtime exporting SDK and domain metrics to Prometheus, or None when disabled.

    A port already in use does not stop the worker: pathways matter more than their metrics,
    so it says which port and variable, and runs on without the endpoint.
    """
    if not settings.metrics_port:
        return None
    bind = f"{settings.metrics_host}:{settings.metrics_port}"
    try:
        return Runtime(telemetry=telemetry(settings, PrometheusConfig(bind_address=bind)))
    except ValueError as error:  # "Failed starting Prometheus exporter: Address already in use"
        _port_unavailable("metrics", bind, "PATHWAYS_METRICS_PORT", error)
        return None


async def health_endpoint(
    settings: Settings, client: Client, store: StoreStatus | None = None
) -> HealthServer:
    """The /healthz endpoint, or none (said loudly) when its port cannot be bound."""
    try:
        return await serve_health(settings, client, store)
    except OSError as error:
        bind = f"{settings.metrics_host}:{settings.health_port}"
        _port_unavailable("health", bind, "PATHWAYS_HEALTH_PORT", error)
        return HealthServer(None)


def _port_unavailable(endpoint: str, bind: str, variable: str, error: Exception) -> None:
    reason = getattr(error, "strerror", None) or str(error).rpartition(": ")[2]
    log.warning(
        f"{endpoint} port {bind} cannot be bound ({reason}); the worker runs on without it: "
        f"set {variable} to a free port (0 turns it off)",
        endpoint=endpoint,
        bind=bind,
        variable=variable,
    )


def build_worker(
    client: Client, settings: Settings, activities: PathwayActivities, executor: ThreadPoolExecutor
) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[PathwayWorkflow],
        workflow_runner=RUNNER,
        activities=[activities.record_events, activities.notify_provider],
        activity_executor=executor,
        max_cached_workflows=settings.max_cached_workflows,
        graceful_shutdown_timeout=settings.shutdown_grace,
    )


@asynccontextmanager
async def running_worker(
    client: Client, settings: Settings, store_status: StoreStatus | None = None
) -> AsyncIterator[Worker]:
    """A worker polling the task queue for as long as the context is open."""
    precompile(settings.data_dir / "pycache")
    store = EventStore(settings.event_store)
    async with httpx.AsyncClient() as http:
        activities = PathwayActivities(settings, store, http, store_status)
        with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
            worker = build_worker(client, settings, activities, executor)
            async with worker:
                yield worker


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set or SIGTERM/SIGINT arrives."""
    stop = stop or _stop_on_signals()
    structured_sdk_logs()
    metered = metrics_runtime(settings)
    runtime = metered or logging_runtime(settings)
    client = await connect_or_fail(settings, runtime=runtime)
    store_status = StoreStatus()
    async with running_worker(client, settings, store_status):
        health = await health_endpoint(settings, client, store_status)
        reconcile_store = EventStore(settings.event_store)
        reconciler = asyncio.ensure_future(reconcile_forever(client, reconcile_store))
        deliveries_stop = asyncio.Event()  # FHIR Subscription notifications, from the store
        deliveries = asyncio.ensure_future(deliver_forever(settings, deliveries_stop))
        stop_fold = threading.Event()  # the flow summary folded beside the workflows
        fold = asyncio.ensure_future(
            asyncio.to_thread(catch_up_read_models, reconcile_store, settings, stop_fold)
        )
        gauges = asyncio.ensure_future(
            refresh_forever(metered.metric_meter, reconcile_store) if metered else asyncio.sleep(0)
        )
        log.info(
            "worker started",
            task_queue=settings.task_queue,
            namespace=settings.namespace,
            metrics_port=settings.metrics_port,
            health_port=settings.health_port,
        )
        await stop.wait()
        log.info("worker stopping: finishing running tasks")
        reconciler.cancel()
        gauges.cancel()
        deliveries_stop.set()  # the notification in flight finishes; no new one starts
        await asyncio.wait([deliveries], timeout=settings.shutdown_grace.total_seconds())
        stop_fold.set()
        await asyncio.gather(fold, return_exceptions=True)
        reconcile_store.close()
        await health.shutdown()
    log.info("worker stopped")


UNINDEXED_BATCH = 1000


def catch_up_read_models(store: EventStore, settings: Settings, stop: threading.Event) -> None:
    """At start, on a thread beside the workflows: index the patients of pathways recorded
    before the blind index existed (only the worker holds its key), then fold the flow summary
    so the first report on a large store is fast. Each step is short-transactioned."""
    patients = PatientIndex.from_secret(settings.key)
    try:
        while not stop.is_set():
            found = store.unindexed_patients(UNINDEXED_BATCH)
            terms = {}
            for pathway_id, task in found:
                name, number = task_patient([task])
                terms[pathway_id] = patients.terms(name, number)
            store.index_patients(terms)
            if len(found) < UNINDEXED_BATCH or not any(terms.values()):
                break
    except Exception as error:  # the store unreachable: new batches index their own patients
        log.warning("patient index catch-up failed", error=type(error).__name__)
    catch_up(store, stop)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
