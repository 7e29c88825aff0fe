"""PathwayWorkflow: one patient's pathway as a durable Temporal workflow.

A thin durable shell around `pathways.engine.PathwayRun`: Updates (with validators) apply provider
and coordinator commands, a durable timer wakes the run at its next SLA point, and the effects the
run emits go to activities (a batched local activity writes the event log and read model; provider
webhooks are ordinary activities with retries, started without blocking the loop). The whole state is
one model carried across continue-as-new.

Update handlers never await, so they run atomically between workflow tasks and need no lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

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
    )
    from pathways.model import PathwayDefinition
    from pathways.state import (
        RULES_LATEST,
        RULES_ORIGINAL,
        Escalation,
        Handover,
        Note,
        PathwayState,
        PathwayStatus,
        Patient,
        task_id,
    )
    from workflows import search

C = TypeVar("C")
R = TypeVar("R")

REFUSAL = "Refusal"
"""ApplicationError type of a refused command; details[0] = {"kind": ..., "problems": [...]}."""

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


class PathwayInput(BaseModel):
    """Start (or continue-as-new) input: the pinned definition, the patient, and carried state."""

    model_config = ConfigDict(extra="forbid")

    definition: PathwayDefinition
    patient: Patient
    patient_key: str | None = None
    public_base_url: str = ""
    search_attributes: bool = True
    state: PathwayState | None = None
    max_history_events: int | None = None


class PathwayResult(BaseModel):
    pathway_id: str
    status: PathwayStatus
    ended_at: datetime | None
    handovers: int
    refused_deliveries: int
    escalations: int


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

    @workflow.run
    async def run(self, input: PathwayInput) -> PathwayResult:
        try:
            await self._run_until_finished()
        except asyncio.CancelledError:
            await self._cancelled_from_temporal()
            raise
        await self._drain()
        state = self._run.state
        return PathwayResult(
            pathway_id=state.pathway_id,
            status=state.status,
            ended_at=state.ended_at,
            handovers=len(state.handovers),
            refused_deliveries=state.refused_deliveries,
            escalations=len(state.escalations),
        )

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
        self._check(self._run.check_extend, command)

    @workflow.update
    def hold(self, command: cmd.HoldPathway) -> PathwayState:
        return self._apply(self._run.apply_hold, command)

    @hold.validator
    def _check_hold(self, command: cmd.HoldPathway) -> None:
        self._check(self._run.check_hold, command)

    @workflow.update
    def resume(self, command: cmd.ResumePathway) -> PathwayState:
        return self._apply(self._run.apply_resume, command)

    @resume.validator
    def _check_resume(self, command: cmd.ResumePathway) -> None:
        self._check(self._run.check_resume, command)

    @workflow.update
    def cancel(self, command: cmd.CancelPathway) -> PathwayState:
        return self._apply(self._run.apply_cancel, command)

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
        keeps what the run recorded (the refused-delivery count) and fails the Update."""
        try:
            return apply(command, workflow.now())
        except cmd.Refusal as refusal:
            raise _refused(refusal) from None

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
        await workflow.wait_condition(
            lambda: bool(self._run.outbox)
            or self._run.state.is_finished
            or (timer is not None and timer.done())
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
