"""Notice pathways whose workflow Temporal closed before the pathway finished.

Terminated (by ops, or by the server: `GrpcMessageTooLarge`), failed or timed-out workflows run
no more code, so they cannot record their own end: the read model would list them as active
forever. The worker periodically lists such closed executions (a visibility query on
ExecutionStatus) and, for each whose read-model row is still open, records a
`pathway-terminated` / `pathway-failed` event and closes the row with that status; its open
handovers are cancelled in the read model with the reason (`cancelled` events, rows and Tasks at
a new version), so the worklist, FHIR search and analytics no longer show them waiting with a
provider (EventStore.record_closed_outside). Providers are not sent a webhook: the workflow that
would send it no longer runs; they see the change in FHIR search (`_lastUpdated`).
Idempotent, so several workers may do it at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from activities.store import EventStore
from pathways.events import EventKind

log = structlog.get_logger("pathways.reconcile")

EVERY = timedelta(minutes=1)
LOOKBACK = timedelta(days=7)
"""Closed executions older than this are assumed reconciled by an earlier pass."""

KINDS = {
    WorkflowExecutionStatus.TERMINATED: EventKind.PATHWAY_TERMINATED,
    WorkflowExecutionStatus.FAILED: EventKind.PATHWAY_FAILED,
    WorkflowExecutionStatus.TIMED_OUT: EventKind.PATHWAY_FAILED,
}


def closed_query(since: datetime) -> str:
    statuses = " OR ".join(
        f"ExecutionStatus = '{s}'" for s in ("Terminated", "Failed", "TimedOut")
    )
    return (
        f"WorkflowType = 'PathwayWorkflow' AND ({statuses}) "
        f"AND CloseTime > '{since.astimezone(UTC).isoformat()}'"
    )


async def reconcile_once(client: Client, store: EventStore, lookback: timedelta = LOOKBACK) -> int:
    """One pass; returns how many pathways it closed in the read model."""
    since = datetime.now(UTC) - lookback
    closed: dict[str, WorkflowExecution] = {}
    async for execution in client.list_workflows(closed_query(since), page_size=1000):
        closed[execution.id] = execution
    if not closed:
        return 0
    still_open = await asyncio.to_thread(store.still_open, sorted(closed))
    recorded = 0
    for pathway_id in still_open:
        execution = closed[pathway_id]
        assert execution.status is not None
        kind = KINDS[execution.status]
        at = execution.close_time or datetime.now(UTC)
        detail = {"temporal_status": execution.status.name.lower(), "run_id": execution.run_id}
        if await asyncio.to_thread(store.record_closed_outside, pathway_id, kind, at, detail):
            recorded += 1
            log.warning("pathway closed outside the engine", pathway_id=pathway_id,
                        kind=kind.value)
    return recorded


async def reconcile_forever(client: Client, store: EventStore, every: timedelta = EVERY) -> None:
    """Reconcile every `every` until cancelled; a failed pass is logged and retried."""
    while True:
        try:
            await reconcile_once(client, store)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # Temporal or the store unreachable: try again later
            log.warning("reconcile pass failed", error=type(error).__name__)
        await asyncio.sleep(every.total_seconds())
