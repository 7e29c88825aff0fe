"""The pathway workflow's side effects as Temporal activities: record events, notify a provider.

Both are safe to retry: the store write is idempotent and the webhook carries an idempotency
key. Counters go through the SDK's metric meter so they share the worker's Prometheus endpoint;
their labels are event kinds and outcomes, never ids.
"""

from __future__ import annotations

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notify import deliver
from activities.store import EventStore
from pathways.events import Notification, RecordBatch
from pathways.settings import Settings

log = structlog.get_logger("pathways.activities")


class PathwayActivities:
    """Activity implementations bound to one worker's settings, event store and HTTP client."""

    def __init__(self, settings: Settings, store: EventStore, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._store = store
        self._http = http

    @activity.defn(name="record_events")
    def record_events(self, batch: RecordBatch) -> None:
        """Write a batch to the event store (sync: runs on the worker's thread pool)."""
        try:
            self._store.record(batch)
        except ValueError as error:
            raise ApplicationError(
                str(error), type="InvalidRecordBatch", non_retryable=True
            ) from None
        counter = activity.metric_meter().create_counter(
            "pathways_events_recorded_total", "Pathway events written to the event store"
        )
        for event in batch.events:
            counter.add(1, {"kind": event.kind.value})
        log.debug("events recorded", pathway_id=batch.pathway.pathway_id, events=len(batch.events))

    @activity.defn(name="notify_provider")
    async def notify_provider(self, notification: Notification) -> int:
        """Deliver the signed Task webhook; return the provider's 2xx status."""
        bound = log.bind(
            pathway_id=notification.pathway_id,
            handover_id=notification.handover_id,
            provider_id=notification.provider_id,
        )
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

    @staticmethod
    def _count_notification(notification: Notification, outcome: str) -> None:
        counter = activity.metric_meter().create_counter(
            "pathways_notifications_total", "Provider webhook deliveries by outcome"
        )
        counter.add(1, {"outcome": outcome, "kind": notification.kind.value})
