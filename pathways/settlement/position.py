"""A pathway's payment position: what each handover has earned, what is still at risk and why.

Pure, from the same events and rules as the ledger; what the console and the API show a
coordinator or a provider before the money moves.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import Field

from pathways.events import EventKind, PathwayEvent
from pathways.model import PathwayDefinition
from pathways.settlement.model import LedgerInput
from pathways.settlement.money import percent_of
from pathways.settlement.periods import Period
from pathways.settlement.rules import (
    Completions,
    HandoverFacts,
    completions,
    criterion_holds,
    deadline,
    handover_facts,
    is_complete_breach,
)
from pathways.settlement.terms import Contract, Contracts
from pathways.state import Model


class HandoverPosition(Model):
    handover_id: str
    step_id: str
    provider_id: str | None
    status: str = Field(description="completed or open")
    base: int
    top_up: int = Field(description="top-up earned (0 when missed or not offered)")
    top_up_at_risk: int = Field(description="top-up still to be earned (open handovers)")
    top_up_missed: list[str] = Field(description="why the top-up is or will be lost")
    withheld: int
    released: int | None = Field(description="None while waiting for the outcome")


class PaymentPosition(Model):
    pathway_id: str
    contract: str
    currency: str
    outcome: str | None
    outcome_deadline: datetime | None
    handovers: list[HandoverPosition]


def position(
    events: list[PathwayEvent], outcome: LedgerInput | None, now: datetime,
    contract: Contract, definition: PathwayDefinition,
) -> PaymentPosition:
    facts = handover_facts(events)
    steps = completions(facts)
    due = deadline(contract, events)
    answer = outcome.outcome if outcome and outcome.outcome else None
    if answer is None and due is not None and now >= due:
        answer = contract.outcome.default
    rows = []
    for hid, step_id, provider in _handovers(events):
        price = contract.price(definition.step(step_id).role)
        if price is None:
            continue
        f = facts.get(hid)
        withheld = percent_of(price.base, price.withhold_percent)
        missed, earned = _top_up(price.top_up.criteria if price.top_up else (), f, steps,
                                 _breached(events, hid), _refused(events, hid))
        amount = price.top_up.amount if price.top_up else 0
        released = (percent_of(withheld, contract.outcome.release[answer])
                    if f is not None and answer is not None and due is not None else None)
        rows.append(HandoverPosition(
            handover_id=hid, step_id=step_id, provider_id=f.provider_id if f else provider,
            status="completed" if f else "open", base=price.base,
            top_up=amount if f and earned else 0,
            top_up_at_risk=amount if not f and not missed else 0,
            top_up_missed=missed if amount else [], withheld=withheld, released=released))
    return PaymentPosition(
        pathway_id=events[0].pathway_id if events else "", contract=contract.key,
        currency=contract.currency, outcome=answer.value if answer else None,
        outcome_deadline=due, handovers=rows)


def _handovers(events: list[PathwayEvent]) -> list[tuple[str, str, str | None]]:
    seen: dict[str, tuple[str, str, str | None]] = {}
    for e in events:
        if e.kind is EventKind.READY and e.handover_id and e.step_id:
            seen[e.handover_id] = (e.handover_id, e.step_id, e.provider_id)
        elif e.handover_id in seen and e.kind is EventKind.REASSIGNED:
            hid, step, _ = seen[e.handover_id]
            seen[hid] = (hid, step, e.provider_id)
        elif e.handover_id in seen and e.kind is EventKind.CANCELLED:
            seen.pop(e.handover_id)
    return list(seen.values())


def _breached(events: list[PathwayEvent], hid: str) -> bool:
    state = False
    for e in events:
        if e.handover_id == hid:
            if is_complete_breach(e):
                state = True
            elif e.kind is EventKind.DUE_EXTENDED:
                state = False
    return state


def _refused(events: list[PathwayEvent], hid: str) -> bool:
    return any(e.handover_id == hid and e.kind is EventKind.REFUSED_DELIVERY for e in events)


def _top_up(criteria: tuple[object, ...], f: HandoverFacts | None,
            steps: Completions, breached: bool, refused: bool
            ) -> tuple[list[str], bool]:
    """(reasons the top-up is lost, earned) for a completed or an open handover."""
    if f is not None:
        results = [criterion_holds(c, f, steps) for c in criteria]  # type: ignore[arg-type]
        return [why for ok, _, why in results if not ok], all(ok for ok, _, _ in results)
    missed = []
    if breached and "on-time" in [str(c) for c in criteria]:
        missed.append("late: patient's clock breached")
    if refused and "first-time-right" in [str(c) for c in criteria]:
        missed.append("delivery refused at the door")
    return missed, False


class MissedTopUp(Model):
    """A best-practice top-up a provider did not earn, and the events that decided it."""

    pathway_id: str
    handover_id: str
    step_id: str
    amount: int
    reasons: list[str]
    caused_by: list[str]


def missed_top_ups(
    events: Iterable[PathwayEvent], contracts: Contracts, provider_id: str, period: Period
) -> list[MissedTopUp]:
    """Top-ups the provider missed on handovers it completed in the period (why not paid in
    full), in completion order."""
    by_pathway: dict[str, list[PathwayEvent]] = {}
    for event in events:
        by_pathway.setdefault(event.pathway_id, []).append(event)
    missed = []
    for pid, evs in sorted(by_pathway.items()):
        evs.sort(key=lambda e: e.seq)
        contract = contracts.for_pathway(f"{evs[0].definition_id}@{evs[0].definition_version}",
                                         evs[0].at)
        if contract is None:
            continue
        definition = contracts.definition(contract)
        facts = handover_facts(evs)
        steps = completions(facts)
        for f in sorted(facts.values(), key=lambda f: f.completed.seq):
            price = contract.price(definition.step(f.step_id).role)
            if (f.provider_id != provider_id or price is None or price.top_up is None
                    or Period.containing(f.completed.at) != period):
                continue
            results = [criterion_holds(c, f, steps) for c in price.top_up.criteria]
            failing = [(ids, why) for ok, ids, why in results if not ok]
            if failing:
                missed.append(MissedTopUp(
                    pathway_id=pid, handover_id=f.handover_id, step_id=f.step_id,
                    amount=price.top_up.amount, reasons=[why for _, why in failing],
                    caused_by=[f.completed.event_id, *(i for ids, _ in failing for i in ids)]))
    return missed
