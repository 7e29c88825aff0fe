"""Ledger rules: pure functions from one pathway's events (and its outcome) to what it owes.

`obligations` answers "what should have been paid for this pathway, knowing what we know now":
per (handover, provider, rule) an amount and the events that justify it. The ledger (ledger.py)
books the difference from what it booked before, so a changed fact becomes an adjusting entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pathways.events import EventKind, PathwayEvent
from pathways.model import PathwayDefinition
from pathways.settlement.model import LedgerInput, Rule
from pathways.settlement.money import percent_of
from pathways.settlement.terms import AfterStep, Contract, Criterion, Outcome, RolePrice

ENDED = (EventKind.PATHWAY_COMPLETED, EventKind.PATHWAY_CANCELLED)
COMPLETE_BREACH = "from the complete due time"
"""How a mark-breached rung's reason names the patient's (complete) clock (engine/clocks.py)."""

Key = tuple[str | None, str, Rule]
"""(handover id, provider id, rule) within one pathway."""


@dataclass(frozen=True)
class Obligation:
    amount: int
    caused_by: tuple[str, ...]
    note: str


@dataclass
class HandoverFacts:
    """What settlement needs to know about one completed handover."""

    handover_id: str
    step_id: str
    provider_id: str
    completed: PathwayEvent
    breaches: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


def handover_facts(events: list[PathwayEvent]) -> dict[str, HandoverFacts]:
    """Completed handovers: the completing provider, the complete-clock breach in force at
    completion (an extension after a breach puts it back on time) and refused deliveries."""
    breaches: dict[str, list[str]] = {}
    refusals: dict[str, list[str]] = {}
    done: dict[str, HandoverFacts] = {}
    for event in events:
        hid = event.handover_id
        if hid is None:
            continue
        if is_complete_breach(event):
            breaches.setdefault(hid, []).append(event.event_id)
        elif event.kind is EventKind.DUE_EXTENDED:
            breaches.pop(hid, None)
        elif event.kind is EventKind.REFUSED_DELIVERY:
            refusals.setdefault(hid, []).append(event.event_id)
        elif event.kind is EventKind.COMPLETED and event.step_id and event.provider_id:
            done[hid] = HandoverFacts(hid, event.step_id, event.provider_id, event,
                                      list(breaches.get(hid, [])), list(refusals.get(hid, [])))
    return done


def is_complete_breach(event: PathwayEvent) -> bool:
    if event.kind is EventKind.BREACHED:
        return event.detail.get("clock") == "complete"
    return (
        event.kind is EventKind.ESCALATED
        and event.detail.get("cause") == "mark-breached"
        and str(event.detail.get("reason", "")).endswith(COMPLETE_BREACH)
    )


Completions = dict[str, list["HandoverFacts"]]
"""Each step's completed handovers (occurrences), in completion order."""


def completions(facts: dict[str, HandoverFacts]) -> Completions:
    by_step: Completions = {}
    for f in sorted(facts.values(), key=lambda f: f.completed.seq):
        by_step.setdefault(f.step_id, []).append(f)
    return by_step


def criterion_holds(
    criterion: Criterion | AfterStep, facts: HandoverFacts, steps: Completions
) -> tuple[bool, list[str], str]:
    """(holds, the events that decided it, why) for one top-up criterion."""
    if criterion is Criterion.ON_TIME:
        return not facts.breaches, facts.breaches, "late: patient's clock breached"
    if criterion is Criterion.FIRST_TIME_RIGHT:
        return not facts.refusals, facts.refusals, "delivery refused at the door"
    assert isinstance(criterion, AfterStep)
    earlier = next((e for e in reversed(steps.get(criterion.step, []))
                    if e.completed.seq < facts.completed.seq), None)
    if earlier is None:
        return False, [], f"{criterion.step} not completed"
    gap = facts.completed.at - earlier.completed.at
    hours = criterion.within.total_seconds() / 3600
    return (gap <= criterion.within, [earlier.completed.event_id],
            f"more than {hours:g} h after {criterion.step}")


def obligations(
    events: list[PathwayEvent],
    outcome: LedgerInput | None,
    now: datetime,
    contract: Contract,
    definition: PathwayDefinition,
) -> dict[Key, Obligation]:
    """What the pathway owes each provider knowing `events` and `outcome` at `now` (pure)."""
    facts = handover_facts(events)
    latest_by_step = completions(facts)
    end = next((e for e in events if e.kind in ENDED), None)
    release = _release(contract, outcome, end, now)
    owed: dict[Key, Obligation] = {}
    for f in sorted(facts.values(), key=lambda f: f.completed.seq):
        price = contract.price(definition.step(f.step_id).role)
        if price is not None:
            owed.update(_handover(f, price, latest_by_step, release))
    return {key: o for key, o in owed.items() if o.amount}


def _handover(
    f: HandoverFacts, price: RolePrice, steps: Completions,
    release: tuple[int, list[str], str] | None,
) -> dict[Key, Obligation]:
    cause = (f.completed.event_id,)
    owed: dict[Key, Obligation] = {
        (f.handover_id, f.provider_id, Rule.BASE): Obligation(price.base, cause, f"{f.step_id} completed")}
    if price.top_up is not None:
        results = [criterion_holds(c, f, steps) for c in price.top_up.criteria]
        if all(ok for ok, _, _ in results):
            owed[(f.handover_id, f.provider_id, Rule.TOP_UP)] = Obligation(
                price.top_up.amount, cause + tuple(e for _, ids, _ in results for e in ids),
                "best practice: every criterion met")
    withheld = percent_of(price.base, price.withhold_percent)
    if withheld:
        owed[(f.handover_id, f.provider_id, Rule.WITHHOLD)] = Obligation(
            -withheld, cause, f"{price.withhold_percent}% of base held for the outcome")
        if release is not None:
            percent, ids, note = release
            owed[(f.handover_id, f.provider_id, Rule.RELEASE)] = Obligation(
                percent_of(withheld, percent), cause + tuple(ids), note)
    return owed


def _release(
    contract: Contract, outcome: LedgerInput | None, end: PathwayEvent | None, now: datetime
) -> tuple[int, list[str], str] | None:
    """(percent of the withheld share released, causes, why), or None while still waiting."""
    terms = contract.outcome
    if end is None:
        return None
    if outcome is not None and outcome.outcome is not None:
        answer: Outcome = outcome.outcome
        return terms.release[answer], [end.event_id, outcome.input_id], f"outcome {answer.value}"
    if now >= end.at + terms.deadline:
        return (terms.release[terms.default], [end.event_id],
                f"no outcome by the deadline: counted as {terms.default.value}")
    return None


def deadline(contract: Contract, events: list[PathwayEvent]) -> datetime | None:
    """When an unanswered outcome counts as the default (None before the pathway ends)."""
    end = next((e for e in events if e.kind in ENDED), None)
    return None if end is None else end.at + contract.outcome.deadline
