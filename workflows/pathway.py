"""PathwayWorkflow: one patient's pathway as a durable Temporal workflow.

A thin durable shell around `pathways.engine.PathwayRun`: Updates (with validators) apply provider
and coordinator commands, a durable timer wakes the run at its next SLA point, and the effects the
run emits go to activities. The whole state is one model carried across continue-as-new.

Effects (runs started with EFFECTS_PATCH; older runs keep the v1 path until they continue):
- after every engine step the shell takes the effects and renders each changed handover's Task
  at its version; a background writer records the batches in order with a local activity (its
  input is not kept in history) and, if the store is down, keeps them and retries on a timer;
- a written batch releases its webhooks into one chain per (handover, provider), delivered in
  order by the notify_provider activity, which loads the body from the store by version (history
  holds ids only); a delivery given up after `notify_give_up_after` goes to the engine's
  `notification_failed`;
- nothing of this blocks the SLA loop; continue-as-new carries unwritten batches and undelivered
  webhooks (same idempotency keys), and completion or a Temporal cancellation waits for them.

Update handlers never await, so they run atomically between workflow tasks and need no lock; an
unexpected exception in one fails that Update and leaves the state as it was (`apply_atomically`).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    TemporalError,
)

with workflow.unsafe.imports_passed_through():
    from pathways import commands as cmd
    from pathways import fhir
    from pathways.engine import PathwayRun
    from pathways.events import (
        Effects,
        EventKind,
        HandoverRow,
        Notification,
        NotificationKind,
        PathwayRow,
        RecordBatch,
        TaskVersion,
    )
    from pathways.state import (
        RULES_LATEST,
        RULES_ORIGINAL,
        Escalation,
        Handover,
        Note,
        PathwayState,
        PathwaySummary,
        task_id,
    )
    from workflows import search

    # passed through: built once, not per workflow instance (re-exported from here)
    from workflows.messages import Outgoing as Outgoing
    from workflows.messages import PathwayInput as PathwayInput
    from workflows.messages import PathwayResult as PathwayResult
    from workflows.messages import ProviderAnswer as ProviderAnswer

C = TypeVar("C")
R = TypeVar("R")

REFUSAL = "Refusal"
"""ApplicationError type of a refused command; details[0] = {"kind": ..., "problems": [...]}."""

INTERNAL_ERROR = "CommandFailed"
"""ApplicationError type of a command the engine could not apply (a bug): nothing changed."""

EFFECTS_PATCH = "effects-carried-v2"
"""Runs started on this code: effects never block the loop (a background event-store writer
and per-provider webhook chains), are carried across continue-as-new, and a failing command
becomes a failed Update. Runs started before keep the v1 path until their next run."""

WRITE_ATTEMPT = timedelta(seconds=10)
WRITE_BACKOFF = (timedelta(seconds=2), timedelta(minutes=5))
"""One event-store write attempt, then the workflow retries it on a timer (first, longest
pause), so an outage never blocks the SLA loop and is visible as failed attempts."""

RECORD_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
)
"""Webhook retries back off to every 10 minutes; a provider's 4xx refusal is not retried."""

WATCHED = frozenset({EventKind.ESCALATED, EventKind.BREACHED, EventKind.REFUSED_DELIVERY})

CANCELLED_IN_TEMPORAL = cmd.CancelPathway(
    reason="workflow cancellation requested in Temporal", actor="ops:temporal"
)


def _refused(refusal: cmd.Refusal) -> ApplicationError:
    return ApplicationError(
        str(refusal),
        {"kind": refusal.kind, "problems": refusal.problems},
        type=REFUSAL,
        non_retryable=True,
    )


@workflow.defn(name="PathwayWorkflow")
class PathwayWorkflow:
    @workflow.init
    def __init__(self, input: PathwayInput) -> None:
        self._input = input
        if input.state is not None:
            self._run = PathwayRun(input.state)
        else:
            # Runs started before the patient's clock shipped replay on the original rules.
            rules = RULES_LATEST if workflow.patched("patient-clock") else RULES_ORIGINAL
            self._run = PathwayRun.begin(
                workflow.info().workflow_id, input.definition, input.patient, workflow.now(),
                rules_version=rules,
            )
        self._search = search.current_values(workflow.info().typed_search_attributes)
        self._notifications: set[asyncio.Task[object]] = set()
        self._timer: asyncio.Future[None] | None = None
        self._timer_at: datetime | None = None
        self._attention = workflow.metric_meter().create_counter(
            "pathways_attention_events_total", "escalations, breaches and refused deliveries"
        )
        self._v2 = workflow.patched(EFFECTS_PATCH)
        if self._v2:
            self._run = RenderingRun.adopt(self._run, input.public_base_url)
        self._unwritten: list[Outgoing] = list(input.unwritten)
        self._queues: dict[tuple[str, str], list[Notification]] = {}
        self._chains: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._changed = False
        self._store_down_since: datetime | None = None
        self._writer: asyncio.Task[None] | None = None

    @workflow.run
    async def run(self, input: PathwayInput) -> PathwayResult:
        if self._v2:
            await self._run_v2()
        else:
            await self._run_v1()
        state = self._run.state
        return PathwayResult(
            pathway_id=state.pathway_id,
            status=state.status,
            ended_at=state.ended_at,
            handovers=len(state.handovers),
            refused_deliveries=state.refused_deliveries,
            escalations=len(state.escalations),
        )

    async def _run_v1(self) -> None:
        """Runs started before EFFECTS_PATCH: effects flushed inline, drained before closing."""
        try:
            await self._run_until_finished()
        except asyncio.CancelledError:
            await self._cancelled_from_temporal()
            raise
        await self._drain()

    async def _run_v2(self) -> None:
        """The loop never waits for the outside world: a background writer records batches in
        order and webhook chains deliver; both are carried across continue-as-new."""
        self._writer = asyncio.ensure_future(self._write_loop())
        for notification in self._input.undelivered:
            self._release(notification)
        try:
            while True:
                self._collect()
                self._refresh()
                if self._run.state.is_finished:
                    break
                if self._history_is_long():
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    self._collect()
                    if not self._run.state.is_finished:
                        workflow.continue_as_new(self._continued())
                    break
                await self._wait_for_work()
                self._run.tick(workflow.now())
            await self._settle()
        except asyncio.CancelledError:  # ops cancelled in Temporal (also while settling)
            if not self._run.state.is_finished:
                self._run.apply_cancel(CANCELLED_IN_TEMPORAL, workflow.now())
            self._collect()
            await self._settle()
            raise

    def _continued(self) -> PathwayInput:
        """The next run's input: state plus every effect not yet done, in order."""
        undelivered = [n for queue in self._queues.values() for n in queue]
        return self._input.model_copy(
            update={
                "state": self._run.state,
                "unwritten": compact(self._unwritten),
                "undelivered": undelivered,
            }
        )

    async def _settle(self) -> None:
        """Before closing: every handler done, every batch written, every webhook settled."""
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished()
            and not self._run.outbox
            and not self._unwritten
            and not self._chains
        )
        self._refresh()

    async def _run_until_finished(self) -> None:
        while True:
            await self._flush()
            if self._run.state.is_finished:
                return
            if self._history_is_long():
                await self._drain()
                workflow.continue_as_new(self._input.model_copy(update={"state": self._run.state}))
            await self._wait_for_work()
            self._run.tick(workflow.now())

    async def _cancelled_from_temporal(self) -> None:
        """Ops cancelled the workflow (Temporal UI or CLI): cancel the pathway properly, so its
        open handovers are closed, providers told and the event log complete."""
        if not self._run.state.is_finished:
            self._run.apply_cancel(CANCELLED_IN_TEMPORAL, workflow.now())
        await self._flush()

    # --- queries --------------------------------------------------------------------------
    @workflow.query
    def state(self) -> PathwayState:
        return self._run.state

    # --- provider -------------------------------------------------------------------------
    @workflow.update
    def provider_update(self, command: cmd.ProviderCommand) -> Handover:
        return self._apply(self._run.apply_provider, command)

    @provider_update.validator
    def _check_provider(self, command: cmd.ProviderCommand) -> None:
        self._check(self._run.check_provider, command)

    @workflow.update
    def provider_put(self, command: cmd.ProviderCommand) -> ProviderAnswer:
        """A provider's move answered with its Task as the provider now sees it, so a FHIR
        PUT is one Update: no Query before it for the Task, none after it for the answer."""
        handover = self._apply(self._run.apply_provider, command)
        seen = fhir.as_seen_by(handover, command.provider_id, command.status, command.reason)
        return ProviderAnswer(handover=seen, task=self._task_now(seen))

    @provider_put.validator
    def _check_put(self, command: cmd.ProviderCommand) -> None:
        self._check(self._run.check_provider, command)

    # --- coordinator ----------------------------------------------------------------------
    @workflow.update
    def reassign(self, command: cmd.Reassign) -> Handover:
        return self._apply(self._run.apply_reassign, command)

    @reassign.validator
    def _check_reassign(self, command: cmd.Reassign) -> None:
        self._check(self._run.check_reassign, command)

    @workflow.update
    def extend_due(self, command: cmd.ExtendDue) -> Handover:
        return self._apply(self._run.apply_extend, command)

    @extend_due.validator
    def _check_extend(self, command: cmd.ExtendDue) -> None:
        """With the workflow's clock, so an `until` already past is refused before history."""
        self._check(lambda c: self._run.check_extend(c, workflow.now()), command)

    @workflow.update
    def hold(self, command: cmd.HoldPathway) -> PathwaySummary:
        return PathwaySummary.of(self._apply(self._run.apply_hold, command))

    @hold.validator
    def _check_hold(self, command: cmd.HoldPathway) -> None:
        self._check(self._run.check_hold, command)

    @workflow.update
    def resume(self, command: cmd.ResumePathway) -> PathwaySummary:
        return PathwaySummary.of(self._apply(self._run.apply_resume, command))

    @resume.validator
    def _check_resume(self, command: cmd.ResumePathway) -> None:
        self._check(self._run.check_resume, command)

    @workflow.update
    def cancel(self, command: cmd.CancelPathway) -> PathwaySummary:
        return PathwaySummary.of(self._apply(self._run.apply_cancel, command))

    @cancel.validator
    def _check_cancel(self, command: cmd.CancelPathway) -> None:
        self._check(self._run.check_cancel, command)

    @workflow.update
    def add_note(self, command: cmd.AddNote) -> Note:
        return self._apply(self._run.apply_note, command)

    @add_note.validator
    def _check_note(self, command: cmd.AddNote) -> None:
        self._check(self._run.check_note, command)

    @workflow.update
    def acknowledge_escalation(self, command: cmd.EscalationAction) -> Escalation:
        return self._apply(self._run.apply_acknowledge, command)

    @acknowledge_escalation.validator
    def _check_acknowledge(self, command: cmd.EscalationAction) -> None:
        self._check(self._run.check_acknowledge, command)

    @workflow.update
    def resolve_escalation(self, command: cmd.EscalationAction) -> Escalation:
        return self._apply(self._run.apply_resolve, command)

    @resolve_escalation.validator
    def _check_resolve(self, command: cmd.EscalationAction) -> None:
        self._check(self._run.check_resolve, command)

    # --- shell ----------------------------------------------------------------------------
    @staticmethod
    def _check(check: Callable[[C], None], command: C) -> None:
        try:
            check(command)
        except cmd.Refusal as refusal:
            raise _refused(refusal) from None

    def _apply(self, apply: Callable[[C, datetime], R], command: C) -> R:
        """Apply a checked command; a refusal found while applying (a non-conforming delivery)
        keeps what the run recorded (the refused-delivery count) and fails the Update.

        Any other exception (an engine bug) fails the Update, not the workflow task, and leaves
        the pathway exactly as it was (see `apply_atomically`). This holds for v1 runs too: it
        adds no command when nothing fails, and a v1 run frozen by a failing handler (its task
        retrying) moves on once this code is deployed. v2 runs take the effects after each step.
        """
        if self._v2:
            self._collect()
        try:
            result = apply_atomically(self._run, lambda: apply(command, workflow.now()))
        except cmd.Refusal as refusal:
            if self._v2:
                self._collect()
            raise _refused(refusal) from None
        except CommandFailed as failure:
            self._run = failure.restored
            workflow.logger.error(
                "command failed in the engine; nothing changed",
                extra={"command": type(command).__name__, "error": failure.error},
            )
            raise ApplicationError(
                str(failure), {"error": failure.error}, type=INTERNAL_ERROR, non_retryable=True
            ) from None
        if self._v2:
            self._collect()
        return result

    def _task_now(self, handover: Handover) -> dict[str, Any] | None:
        """The handover's Task at its version: the one just rendered for the event store when
        there is one (the same body at the same version), else rendered now."""
        state = self._run.state
        if handover is state.handovers.get(handover.id) and self._unwritten:
            key = (task_id(state.pathway_id, handover.id), handover.version)
            for version in self._unwritten[-1].batch.tasks:
                if (version.task_id, version.version) == key:
                    return version.task
        return render(state, handover, self._input.public_base_url)

    async def _wait_for_work(self) -> None:
        """Sleep until a command produced effects or the next SLA point is due.

        The SLA timer outlives loop iterations: it is replaced only when the next SLA point
        moves, so most commands cost no timer events in the history.
        """
        wakeup = self._run.next_wakeup()
        if wakeup != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = None, wakeup
            if wakeup is not None:
                delay = max(wakeup - workflow.now(), timedelta(milliseconds=1))
                self._timer = asyncio.ensure_future(
                    workflow.sleep(delay, summary="next SLA point")
                )
        timer = self._timer
        self._changed = False
        await workflow.wait_condition(
            lambda: bool(self._run.outbox)
            or self._changed
            or self._run.state.is_finished
            or (timer is not None and timer.done())
            or (self._v2 and self._history_is_long())
        )
        if timer is not None and timer.done():
            self._timer, self._timer_at = None, None

    async def _flush(self) -> None:
        """Hand the run's effects to activities and refresh search attributes."""
        effects = self._run.take_effects()
        if not effects:
            return
        for notification in effects.notifications:
            self._notify(notification)
        self._observe(effects)
        await workflow.execute_local_activity(
            "record_events",
            self._batch(effects),
            schedule_to_close_timeout=timedelta(days=1),
            start_to_close_timeout=RECORD_TIMEOUT,
        )
        self._upsert_search_attributes()
        self._describe()

    # --- v2 effects: collected after every engine step, written and delivered behind ------
    def _collect(self) -> None:
        """Take the run's effects now, while the state is as they describe it: the batch
        carries each changed handover's Task rendered at its current version (the webhook
        body), and waits in order for the background writer."""
        effects = self._run.take_effects()
        if not effects:
            return
        self._observe(effects)
        batch = self._batch(effects)
        state = self._run.state
        renders = self._run.take_renders() if isinstance(self._run, RenderingRun) else {}
        touched = {e.handover_id for e in effects.events if e.handover_id}
        touched |= {n.handover_id for n in effects.notifications}
        for h in sorted(touched):
            handover = state.handovers.get(h)
            if handover is not None and (h, handover.version) not in renders:
                renders[h, handover.version] = render(
                    state, handover, self._input.public_base_url
                )
        batch.tasks = [
            TaskVersion(task_id=task_id(state.pathway_id, h), version=version, task=task)
            for (h, version), task in sorted(renders.items())
            if task is not None
        ]
        self._unwritten.append(Outgoing(batch=batch, notifications=effects.notifications))
        self._changed = True

    def _refresh(self) -> None:
        """Search attributes and the UI summary follow the state (no I/O: history commands)."""
        self._upsert_search_attributes()
        self._describe()

    async def _write_loop(self) -> None:
        """Write unwritten batches in order, merged into one local activity; on failure keep
        them, say so, and retry on a timer. Written batches release their notifications."""
        pause = WRITE_BACKOFF[0]
        while True:
            await workflow.wait_condition(lambda: bool(self._unwritten))
            taken = list(self._unwritten)
            try:
                await workflow.execute_local_activity(
                    "record_events",
                    merge_batches([o.batch for o in taken]),
                    start_to_close_timeout=WRITE_ATTEMPT,
                    schedule_to_close_timeout=WRITE_ATTEMPT,
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
            except TemporalError as error:  # activity failed or timed out: keep, retry later
                self._store_failed(error, len(taken))
                await workflow.sleep(pause, summary="event store retry")
                pause = min(pause * 2, WRITE_BACKOFF[1])
                continue
            pause = WRITE_BACKOFF[0]
            del self._unwritten[: len(taken)]
            if self._store_down_since is not None:
                workflow.logger.warning(
                    "event store back: kept batches written",
                    extra={"batches": len(taken), "since": self._store_down_since.isoformat()},
                )
                self._store_down_since = None
            for outgoing in taken:
                for notification in outgoing.notifications:
                    self._release(notification)

    def _store_failed(self, error: TemporalError, batches: int) -> None:
        if self._store_down_since is None:
            self._store_down_since = workflow.now()
        cause = error.cause if isinstance(error, ActivityError) else error
        workflow.logger.warning(
            "event store write failed: batches kept, retrying",
            extra={
                "batches": batches,
                "error": getattr(cause, "type", None) or type(cause).__name__,
                "since": self._store_down_since.isoformat(),
            },
        )

    def _release(self, notification: Notification) -> None:
        """Queue a webhook behind the earlier ones to the same provider about the same
        handover, so a provider never gets an older version after a newer one."""
        key = (notification.handover_id, notification.provider_id)
        self._queues.setdefault(key, []).append(notification)
        if key not in self._chains:
            self._chains[key] = asyncio.ensure_future(self._deliver_chain(key))

    async def _deliver_chain(self, key: tuple[str, str]) -> None:
        queue = self._queues[key]
        while queue:
            notification = queue[0]
            try:
                await workflow.execute_activity(
                    "notify_provider",
                    notification,
                    start_to_close_timeout=timedelta(seconds=30),
                    schedule_to_close_timeout=self._input.notify_give_up_after,
                    retry_policy=NOTIFY_RETRY,
                )
            except TemporalError as error:  # retries given up (or refused for good)
                self._notification_failed(notification, error)
            queue.pop(0)
        del self._queues[key]
        del self._chains[key]

    def _notification_failed(self, notification: Notification, error: TemporalError) -> None:
        """Delivery given up: the engine records it and escalates to the coordinator."""
        cause = error.cause if isinstance(error, ActivityError) else error
        reason = cause.message if isinstance(cause, FailureError) else str(cause)
        workflow.logger.warning(
            "webhook delivery given up",
            extra={"provider": notification.provider_id, "kind": notification.kind.value},
        )
        self._run.notification_failed(
            notification.handover_id,
            notification.provider_id,
            notification.kind,
            notification.version,
            reason,
            workflow.now(),
        )
        self._collect()

    def _observe(self, effects: Effects) -> None:
        """Count and log what needs attention: escalations, breaches, refused deliveries.

        Labels and log fields are definition, step and provider ids only, never patient data;
        the SDK's workflow meter and logger skip replays, so nothing is counted twice.
        """
        definition = self._run.state.definition.id
        for event in effects.events:
            if event.kind not in WATCHED:
                continue
            labels = {"kind": event.kind.value, "definition": definition}
            if "level" in event.detail:
                labels["level"] = str(event.detail["level"])
            self._attention.add(1, labels)
            workflow.logger.info(
                "handover needs attention",
                extra={"kind": event.kind.value, "step": event.step_id,
                       "provider": event.provider_id, **labels},
            )

    def _notify(self, notification: Notification) -> None:
        state = self._run.state
        handover = state.handovers[notification.handover_id]
        body = fhir.task_resource(state, handover, self._input.public_base_url)
        if notification.kind is NotificationKind.CANCELLED:
            body = fhir.withdrawn_task(body, notification.provider_id)
        task = asyncio.ensure_future(
            workflow.execute_activity(
                "notify_provider",
                notification.model_copy(update={"task": body}),
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(days=1),
                retry_policy=NOTIFY_RETRY,
            )
        )
        self._notifications.add(task)
        task.add_done_callback(self._notifications.discard)

    async def _drain(self) -> None:
        """Before completing or continuing as new: let handlers and webhook deliveries finish."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._flush()
        if self._notifications:
            await asyncio.gather(*self._notifications, return_exceptions=True)

    def _batch(self, effects: Effects) -> RecordBatch:
        state = self._run.state
        changed = sorted({e.handover_id for e in effects.events if e.handover_id})
        rows = [self._handover_row(state.handovers[h]) for h in changed if h in state.handovers]
        return RecordBatch(events=effects.events, handovers=rows, pathway=self._pathway_row())

    def _handover_row(self, handover: Handover) -> HandoverRow:
        state = self._run.state
        return HandoverRow(
            task_id=task_id(state.pathway_id, handover.id),
            pathway_id=state.pathway_id,
            definition_id=state.definition.id,
            handover_id=handover.id,
            step_id=handover.step_id,
            occurrence=handover.occurrence,
            provider_id=handover.provider_id,
            status=handover.status.value,
            business_status=handover.business_status.value,
            version=handover.version,
            ready_at=handover.ready_at,
            complete_by=handover.complete_by,
            updated_at=handover.updated_at,
        )

    def _pathway_row(self) -> PathwayRow:
        state = self._run.state
        definition = state.definition
        steps = search.open_steps(state)
        return PathwayRow(
            pathway_id=state.pathway_id,
            definition_id=definition.id,
            definition_version=definition.version,
            lead_provider=definition.lead_provider.id,
            status=state.status.value,
            sla_state=state.sla_state.value,
            open_steps=steps,
            open_providers=search.open_providers(state),
            open_step_titles=[definition.step(s).title for s in steps],
            patient_key=self._input.patient_key,
            started_at=state.started_at,
            updated_at=state.updated_at,
            ended_at=state.ended_at,
        )

    def _upsert_search_attributes(self) -> None:
        if not self._input.search_attributes:
            return
        updates = search.updates_for(self._run.state, self._search)
        if updates:
            workflow.upsert_search_attributes(updates)
            self._search = search.dynamic_values(self._run.state)

    def _describe(self) -> None:
        """Markdown shown in the Temporal UI: where the pathway is, without patient data."""
        state = self._run.state
        lines = [f"**{state.definition.title}** ({state.definition.key}): {state.status.value}"]
        for handover in sorted(state.open_handovers, key=lambda h: h.complete_by):
            accept = (
                f", accept by {handover.accept_by:%Y-%m-%d %H:%M} UTC"
                if handover.is_open and handover.accepted_at is None else ""
            )
            lines.append(
                f"- `{handover.id}` at `{handover.provider_id}`: {handover.status.value}, "
                f"{handover.business_status.value}, patient due "
                f"{handover.complete_by:%Y-%m-%d %H:%M} UTC{accept}"
            )
        workflow.set_current_details("\n".join(lines))

    def _history_is_long(self) -> bool:
        info = workflow.info()
        limit = self._input.max_history_events
        if limit is not None and info.get_current_history_length() >= limit:
            return True
        return info.is_continue_as_new_suggested()


Renders = dict[tuple[str, int], dict[str, Any] | None]
"""Task bodies by (handover id, version); None where rendering failed."""


def render(state: PathwayState, handover: Handover, base_url: str) -> dict[str, Any] | None:
    """The handover's FHIR Task now; None (logged) if rendering fails, so that a rendering bug
    never fails a command or a workflow task: the webhook then carries the nearest earlier
    recorded version."""
    try:
        return fhir.task_resource(state, handover, base_url)
    except Exception as error:
        workflow.logger.error(
            "task rendering failed", extra={"handover": handover.id, "error": type(error).__name__}
        )
        return None


class RenderingRun(PathwayRun):
    """A PathwayRun that renders a handover's FHIR Task the moment the engine asks for a
    webhook about it: the body is the Task as it was then, even when the same engine step
    changes the handover again (a reminder, then a reassignment, in one tick)."""

    def __init__(self, state: PathwayState) -> None:
        super().__init__(state)
        self.base_url: str | None = None
        self.renders: Renders = {}

    @classmethod
    def adopt(cls, run: PathwayRun, base_url: str) -> RenderingRun:
        adopted = cls(run.state)
        adopted.outbox, adopted.base_url = run.outbox, base_url
        return adopted

    def notify(
        self, handover: Handover, kind: NotificationKind, provider_id: str | None = None
    ) -> None:
        super().notify(handover, kind, provider_id)
        key = (handover.id, handover.version)
        if self.base_url is not None and key not in self.renders:
            self.renders[key] = render(self.state, handover, self.base_url)

    def take_renders(self) -> Renders:
        renders, self.renders = self.renders, {}
        return renders

    def restored(self, state: PathwayState, outbox: Effects, renders: Renders) -> RenderingRun:
        run = RenderingRun(state)
        run.outbox, run.base_url, run.renders = outbox, self.base_url, renders
        return run


class CommandFailed(Exception):
    """The engine raised something other than a Refusal while applying a command; `restored`
    is the run as it was before (use it instead of the one that failed)."""

    def __init__(self, error: BaseException, restored: PathwayRun) -> None:
        super().__init__("the pathway could not apply this command; nothing changed")
        self.error = type(error).__name__
        self.restored = restored


def apply_atomically(run: PathwayRun, apply: Callable[[], R]) -> R:
    """Apply a command to a run all or nothing.

    A Refusal keeps what the run recorded before refusing (the engine's contract: a refused
    delivery is counted). Any other exception restores the state and outbox from before, and
    raises CommandFailed. The snapshot shares the definition, which no command changes.
    """
    state = run.state
    snapshot = copy.deepcopy(state, {id(state.definition): state.definition})
    outbox = run.outbox.model_copy(deep=True)
    renders = dict(run.renders) if isinstance(run, RenderingRun) else {}
    try:
        return apply()
    except cmd.Refusal:
        raise
    except Exception as error:  # an engine bug: the Update fails, the pathway lives on
        if isinstance(run, RenderingRun):
            raise CommandFailed(error, run.restored(snapshot, outbox, renders)) from error
        restored = PathwayRun(snapshot)
        restored.outbox = outbox
        raise CommandFailed(error, restored) from error


def merge_batches(batches: list[RecordBatch]) -> RecordBatch:
    """One store write for several batches: events in order, the newest row per handover and
    pathway, every rendered Task version."""
    rows: dict[str, HandoverRow] = {}
    tasks: dict[tuple[str, int], TaskVersion] = {}
    for batch in batches:
        rows.update({row.task_id: row for row in batch.handovers})
        tasks.update({(t.task_id, t.version): t for t in batch.tasks})
    return RecordBatch(
        events=[event for batch in batches for event in batch.events],
        handovers=list(rows.values()),
        pathway=batches[-1].pathway,
        tasks=list(tasks.values()),
    )


def compact(unwritten: list[Outgoing]) -> list[Outgoing]:
    """What continue-as-new carries of unwritten batches: one merged batch keeping only the
    Task renders still needed (those its webhooks name, and each handover's latest), so a long
    event-store outage does not grow the next run's input with every intermediate version."""
    if len(unwritten) <= 1:
        return list(unwritten)
    batch = merge_batches([o.batch for o in unwritten])
    notifications = [n for o in unwritten for n in o.notifications]
    named = {(task_id(n.pathway_id, n.handover_id), n.version) for n in notifications}
    latest = {(row.task_id, row.version) for row in batch.handovers}
    batch.tasks = [t for t in batch.tasks if (t.task_id, t.version) in named | latest]
    return [Outgoing(batch=batch, notifications=notifications)]
