"""Drive the shipped urgent community response through the pure engine and settle it under the
shipped contract: what the settlement tests share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from activities.store import EventStore
from pathways.catalogue import load_catalogue
from pathways.commands import ExtendDue, ProviderCommand, Refusal
from pathways.engine import PathwayRun
from pathways.events import PathwayEvent, PathwayRow, RecordBatch
from pathways.settlement.model import InputKind, LedgerInput
from pathways.settlement.terms import Contracts, Outcome, load_contracts
from pathways.state import Patient, TaskStatus

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "pathways" / "catalogue")
CONTRACTS: Contracts = load_contracts(ROOT / "pathways" / "contracts", CATALOGUE)
UCR = CATALOGUE.get("urgent-community-response", 1)
PATIENT = Patient(nhs_number="9434765919", name="Test Patient", birth_date="1950-01-01")
T0 = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
"""A Monday in 2026-Q4."""

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def response_output(at: datetime, disposition: str = "remain-at-home") -> dict[str, Any]:
    return {
        "arrived_at": at.isoformat(), "referral_reason": "fall-without-serious-injury",
        "clinical_frailty_scale": 5, "news2_score": 2, "disposition": disposition,
        "assessment_record": {"reference": "doc-1"},
    }


def gp_output(at: datetime) -> dict[str, Any]:
    return {"reviewed_at": at.isoformat(), "medication_changed": False,
            "care_plan_updated": True, "next_action": "none"}


class Scenario:
    """One pathway run, collecting every event it emits (refused deliveries included)."""

    def __init__(self, pathway_id: str = "pw-1", start: datetime = T0) -> None:
        self.run = PathwayRun.begin(pathway_id, UCR, PATIENT, start)
        self.events: list[PathwayEvent] = []
        self.batches: list[list[PathwayEvent]] = []
        self._collect()

    def handover(self, step_id: str) -> str:
        return next(h.id for h in reversed(self.run.state.handovers.values())
                    if h.step_id == step_id and h.is_open)

    def provider(self, step_id: str) -> str:
        return self.run.state.handovers[self.handover(step_id)].provider_id

    def tick(self, now: datetime) -> None:
        self.run.tick(now)
        self._collect()

    def accept(self, step_id: str, now: datetime) -> None:
        self._move(step_id, now, TaskStatus.ACCEPTED, {})

    def complete(self, step_id: str, now: datetime, output: dict[str, Any]) -> None:
        self._move(step_id, now, TaskStatus.COMPLETED, output)

    def _move(self, step_id: str, now: datetime, status: TaskStatus,
              output: dict[str, Any]) -> None:
        """Tick to `now` (as the workflow does before a command), then apply the move."""
        self.tick(now)
        handover = self.handover(step_id)
        provider = self.run.state.handovers[handover].provider_id
        command = ProviderCommand(handover_id=handover, provider_id=provider,
                                  status=status, output=output, actor=f"provider:{provider}")
        try:
            self.run.apply_provider(command, now)
        finally:
            self._collect()

    def refused(self, step_id: str, now: datetime) -> None:
        """A non-conforming delivery: refused at the door, counted in the log."""
        try:
            self.complete(step_id, now, {"referral_reason": "not-a-code"})
        except Refusal:
            return
        raise AssertionError("the delivery was not refused")

    def extend(self, step_id: str, by: timedelta, now: datetime) -> None:
        self.tick(now)
        self.run.apply_extend(ExtendDue(handover_id=self.handover(step_id), by=by,
                                        reason="agreed with the family", actor="coordinator:test"),
                              now)
        self._collect()

    def _collect(self) -> None:
        """Take the effects the engine produced: one store write each, as the workflow does."""
        events = self.run.take_effects().events
        if events:
            self.events.extend(events)
            self.batches.append(list(events))

    def simple(self, response_after: timedelta = HOUR, gp_after: timedelta = DAY) -> Scenario:
        """Response at home, then the GP follow-up: the pathway completes."""
        self.accept("urgent-response", self.run.state.started_at + 10 * MINUTE)
        done = self.run.state.started_at + response_after
        self.complete("urgent-response", done, response_output(done))
        self.accept("gp-follow-up", done + HOUR)
        self.complete("gp-follow-up", done + gp_after, gp_output(done + gp_after))
        return self


def outcome(pathway_id: str, answer: Outcome, at: datetime, n: int = 1) -> LedgerInput:
    return LedgerInput(input_id=f"outcome:{pathway_id}:{n}", kind=InputKind.OUTCOME, at=at,
                       pathway_id=pathway_id, outcome=answer, actor="coordinator:test")


def close(period: str, at: datetime) -> LedgerInput:
    return LedgerInput(input_id=f"close:{period}", kind=InputKind.CLOSE, at=at, period=period,
                       actor="coordinator:test")


def amounts(entries: list[Any]) -> list[tuple[str | None, str, str, int]]:
    """(step of the handover or None, provider, rule, pence) per entry, in ledger order."""
    return [(e.handover_id and e.handover_id.split(":")[0], e.provider_id, e.rule.value, e.amount)
            for e in entries]


def pathway_row(run: PathwayRun, at: datetime) -> PathwayRow:
    """A minimal read-model row for a store write of the run's state at `at`."""
    state = run.state
    return PathwayRow(
        pathway_id=state.pathway_id, definition_id=state.definition.id,
        definition_version=state.definition.version,
        lead_provider=state.definition.lead_provider.id, status=state.status.value,
        sla_state=state.sla_state.value, open_steps=[], open_providers=[], open_step_titles=[],
        started_at=state.started_at, updated_at=at, ended_at=state.ended_at)


def record(store: EventStore, scenario: Scenario, batch: list[PathwayEvent]) -> None:
    store.record(RecordBatch(events=batch, pathway=pathway_row(scenario.run, batch[-1].at)))
