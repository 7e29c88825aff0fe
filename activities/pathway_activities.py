"""The pathway workflow's side effects as Temporal activities: record events, notify a provider.

Both are safe to retry: the store write is idempotent and the webhook carries an idempotency
key. Counters go through the SDK's metric meter so they share the worker's Prometheus endpoint;
their labels are event kinds and outcomes, never ids.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from datetime import UTC, datetime

import httpx
import structlog
from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notify import deliver, with_portal_link
from activities.store import EventStore
from pathways import fhir
from pathways.events import Notification, NotificationKind, RecordBatch
from pathways.patient_search import PatientIndex, task_patient
from pathways.settings import Settings
from pathways.state import task_id

log = structlog.get_logger("pathways.activities")

INDEXED_REMEMBERED = 10_000
"""Pathways whose patient a worker remembers having indexed (beyond, it indexes again)."""


class StoreStatus:
    """Whether this worker's last event-store write failed, and since when: what /healthz
    reports. Thread-safe: record_events runs on the activity thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_since: datetime | None = None
        self.last_error: str | None = None
        self.failures = 0

    def failed(self, error: str) -> bool:
        """Note a failed write; True if this starts an outage."""
        with self._lock:
            self.failures += 1
            self.last_error = error
            if self.down_since is None:
                self.down_since = datetime.now(UTC)
                return True
            return False

    def succeeded(self) -> datetime | None:
        """Note a write; the start of the outage it ends, if any."""
        with self._lock:
            since, self.down_since, self.last_error = self.down_since, None, None
            return since

    def detail(self) -> dict[str, object]:
        with self._lock:
            if self.down_since is None:
                return {"event_store": "ok"}
            return {
                "event_store": "unavailable",
                "since": self.down_since.isoformat(),
                "error": self.last_error,
                "failed_writes": self.failures,
            }


class PathwayActivities:
    """Activity implementations bound to one worker's settings, event store and HTTP client."""

    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        http: httpx.AsyncClient,
        store_status: StoreStatus | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._patients = PatientIndex.from_secret(settings.key)
        self._indexed: OrderedDict[str, None] = OrderedDict()
        self._indexed_lock = threading.Lock()
        self._http = http
        self.store_status = store_status or StoreStatus()

    @activity.defn(name="record_events")
    def record_events(self, batch: RecordBatch) -> None:
        """Write a batch to the event store (sync: runs on the worker's thread pool).

        A database error is reported by its class only: SQLAlchemy's message holds the
        statement's parameters, which may hold a rendered Task (patient data).
        """
        terms = self._patient_terms(batch)
        try:
            self._store.record(batch, patient_terms=terms)
        except ValueError as error:
            raise ApplicationError(
                str(error), type="InvalidRecordBatch", non_retryable=True
            ) from None
        except SQLAlchemyError as error:
            self._store_failed(type(error).__name__)
            raise ApplicationError(
                f"event store unavailable: {type(error).__name__}", type="EventStoreUnavailable"
            ) from None
        if terms:
            self._remember_indexed(batch.pathway.pathway_id)
        since = self.store_status.succeeded()
        if since is not None:
            log.warning("event store available again", down_seconds=round(
                (datetime.now(UTC) - since).total_seconds(), 1))
        counter = activity.metric_meter().create_counter(
            "pathways_events_recorded_total", "Pathway events written to the event store"
        )
        for event in batch.events:
            counter.add(1, {"kind": event.kind.value})
        log.debug("events recorded", pathway_id=batch.pathway.pathway_id, events=len(batch.events))

    def _store_failed(self, error: str) -> None:
        activity.metric_meter().create_counter(
            "pathways_event_store_failures_total", "Event-store writes that failed (outage)"
        ).add(1, {"error": error})
        if self.store_status.failed(error):
            log.error("event store unavailable: pathways keep running, batches kept",
                      error=error)

    def _patient_terms(self, batch: RecordBatch) -> set[str]:
        """The patient's blind-index terms, until this worker has written them once for the
        pathway: a patient never changes, so later batches need not hash and insert them again
        (after a restart they are written once more; the insert is idempotent)."""
        with self._indexed_lock:
            if batch.pathway.pathway_id in self._indexed:
                return set()
        name, number = task_patient(t.task for t in batch.tasks)
        return self._patients.terms(name, number) if number is not None else set()

    def _remember_indexed(self, pathway_id: str) -> None:
        with self._indexed_lock:
            self._indexed[pathway_id] = None
            while len(self._indexed) > INDEXED_REMEMBERED:
                self._indexed.popitem(last=False)

    @activity.defn(name="notify_provider")
    async def notify_provider(self, notification: Notification) -> int:
        """Deliver the signed Task webhook; return the provider's 2xx status.

        The body is the Task as recorded at the notification's version (loaded by id, so the
        workflow history holds ids only); a withdrawal shows it cancelled to its old owner.
        """
        bound = log.bind(
            pathway_id=notification.pathway_id,
            handover_id=notification.handover_id,
            provider_id=notification.provider_id,
        )
        if not notification.task:
            body = await asyncio.to_thread(self._body, notification)
            notification = notification.model_copy(update={"task": body})
        notification = with_portal_link(notification, self._settings)
        secrets = self._settings.webhook_secrets(notification.provider_id)
        try:
            status = await deliver(self._http, notification, secrets)
        except ApplicationError as error:
            outcome = "refused" if error.non_retryable else "retrying"
            self._count_notification(notification, outcome)
            bound.warning("webhook delivery failed", outcome=outcome, error=error.message)
            raise
        self._count_notification(notification, "delivered")
        bound.info("webhook delivered", status=status, kind=notification.kind.value)
        return status

    def _body(self, notification: Notification) -> dict[str, object]:
        tid = task_id(notification.pathway_id, notification.handover_id)
        try:
            task = self._store.task_at(tid, notification.version)
        except SQLAlchemyError as error:
            raise ApplicationError(
                f"event store unavailable: {type(error).__name__}", type="EventStoreUnavailable"
            ) from None
        if task is None:
            raise ApplicationError(
                f"no recorded Task for {tid} at version {notification.version}",
                type="TaskBodyMissing",
            )
        if notification.kind is NotificationKind.CANCELLED:
            task = fhir.withdrawn_task(task, notification.provider_id)
        return task

    @staticmethod
    def _count_notification(notification: Notification, outcome: str) -> None:
        counter = activity.metric_meter().create_counter(
            "pathways_notifications_total", "Provider webhook deliveries by outcome"
        )
        counter.add(1, {"outcome": outcome, "kind": notification.kind.value})
