"""A one-activity workflow that runs the real `notify_provider` activity with a fast retry policy,
so tests see Temporal itself retry a delivery."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pathways.events import Notification


@workflow.defn(name="test-deliver-notification", sandboxed=False)
class DeliverNotification:
    @workflow.run
    async def run(self, notification: Notification) -> int:
        result: int = await workflow.execute_activity(
            "notify_provider",
            notification,
            result_type=int,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=200),
                backoff_coefficient=1.0,
                maximum_attempts=6,
            ),
        )
        return result
