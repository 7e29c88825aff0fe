"""The ledger: every entry derived from the event log by replaying it in time order (pure).

At each moment something is learnt about a pathway (its events at that instant, an outcome
recorded, its outcome deadline passing) the pathway's obligations are recomputed
(rules.obligations) and the difference from what was booked before is booked, in the period of
that moment. A fact learnt after a period closed therefore lands in the next open period as an
adjusting entry (`adjusts` names the earlier period it trues up); closed periods are never
edited. Closing a period books its alliance shares (alliance.reconcile) into it.

The same events, inputs and contracts give the same entries, ids and order: `derive` is what the
stored ledger is checked against.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from pathways.events import PathwayEvent
from pathways.settlement.alliance import Reconciliation, describe, reconcile
from pathways.settlement.model import InputKind, LedgerEntry, LedgerInput, Rule
from pathways.settlement.periods import Period
from pathways.settlement.rules import Key, Obligation, deadline, obligations
from pathways.settlement.terms import Contract, Contracts

RULE_ORDER = list(Rule)


@dataclass
class _Books:
    """What has been booked so far, per pathway and key."""

    entries: list[LedgerEntry] = field(default_factory=list)
    totals: dict[tuple[str, Key], int] = field(default_factory=dict)
    keys: dict[str, set[Key]] = field(default_factory=lambda: defaultdict(set))
    first: dict[tuple[str, Key], str] = field(default_factory=dict)
    causes: dict[tuple[str, Key], tuple[str, ...]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    closed: set[Period] = field(default_factory=set)

    def open_period(self, at: datetime) -> Period:
        period = Period.containing(at)
        while period in self.closed:
            period = period.next()
        return period

    def book(self, entry: dict[str, object], stem: str | None = None) -> None:
        stem = stem or ":".join(str(entry[k] or "-") for k in
                                ("pathway_id", "handover_id", "provider_id", "rule"))
        self.counts[stem] += 1
        self.entries.append(LedgerEntry.model_validate(
            {**entry, "entry_id": f"{stem}:{self.counts[stem]}", "seq": len(self.entries) + 1}))


@dataclass(frozen=True)
class _Pathway:
    pathway_id: str
    events: list[PathwayEvent]
    outcomes: list[LedgerInput]
    contract: Contract


def derive(
    events: Iterable[PathwayEvent],
    inputs: Iterable[LedgerInput],
    contracts: Contracts,
    as_of: datetime,
) -> list[LedgerEntry]:
    """The whole ledger as of `as_of`, from the event log and the settlement inputs."""
    pathways = _pathways(events, inputs, contracts)
    books = _Books()
    for at, kind, subject in _timeline(pathways, inputs, as_of):
        if isinstance(subject, _Pathway):
            _settle(books, subject, at, kind, contracts)
        else:
            _close(books, subject, pathways, contracts)
    return books.entries


def _pathways(events: Iterable[PathwayEvent], inputs: Iterable[LedgerInput],
              contracts: Contracts) -> dict[str, _Pathway]:
    by_id: dict[str, list[PathwayEvent]] = defaultdict(list)
    for event in events:
        by_id[event.pathway_id].append(event)
    outcomes: dict[str, list[LedgerInput]] = defaultdict(list)
    for item in inputs:
        if item.kind is InputKind.OUTCOME and item.pathway_id:
            outcomes[item.pathway_id].append(item)
    found = {}
    for pid, evs in sorted(by_id.items()):
        evs.sort(key=lambda e: e.seq)
        first = evs[0]
        key = f"{first.definition_id}@{first.definition_version}"
        contract = contracts.for_pathway(key, first.at)
        if contract is not None:
            mine = sorted(outcomes[pid], key=lambda i: (i.at, i.input_id))
            found[pid] = _Pathway(pid, evs, mine, contract)
    return found


EVENTS, OUTCOMES, DEADLINE, CLOSE = range(4)
"""What is learnt at one instant, in this order: the engine's events, then outcomes recorded,
then a deadline passing, then a period closing (each sees what came before it)."""


def _timeline(pathways: dict[str, _Pathway], inputs: Iterable[LedgerInput], as_of: datetime
              ) -> list[tuple[datetime, int, _Pathway | LedgerInput]]:
    """Moments to settle at, in time order, and at one instant in the order above."""
    points: list[tuple[datetime, int, str, _Pathway | LedgerInput]] = []
    for p in pathways.values():
        moments = {(e.at, EVENTS) for e in p.events} | {(o.at, OUTCOMES) for o in p.outcomes}
        if (due := deadline(p.contract, p.events)) is not None:
            moments.add((due, DEADLINE))
        points.extend((t, kind, p.pathway_id, p) for t, kind in moments if t <= as_of)
    points.extend((i.at, CLOSE, i.input_id, i) for i in inputs
                  if i.kind is InputKind.CLOSE and i.at <= as_of)
    points.sort(key=lambda point: point[:3])
    return [(at, kind, subject) for at, kind, _, subject in points]


def _settle(books: _Books, p: _Pathway, at: datetime, kind: int, contracts: Contracts) -> None:
    events = [e for e in p.events if e.at <= at]
    outcome = next((o for o in reversed(p.outcomes)
                    if o.at < at or (o.at == at and kind >= OUTCOMES)), None)
    owed = obligations(events, outcome, at, p.contract, contracts.definition(p.contract))
    keys = sorted(set(books.keys[p.pathway_id]) | set(owed),
                  key=lambda k: (k[0] or "", k[1], RULE_ORDER.index(k[2])))
    period = books.open_period(at)
    for key in keys:
        _book_difference(books, p, key, owed.get(key), at, period)


def _book_difference(books: _Books, p: _Pathway, key: Key, owed: Obligation | None,
                     at: datetime, period: Period) -> None:
    slot = (p.pathway_id, key)
    before = books.totals.get(slot, 0)
    amount = owed.amount if owed else 0
    if amount == before:
        return
    handover_id, provider_id, rule = key
    first = books.first.setdefault(slot, str(period))
    adjusts = first if first != str(period) else None
    causes = owed.caused_by if owed else books.causes[slot]
    note = owed.note if owed else "no longer owed"
    if before:
        note = f"true-up from {before}: {note}"
    books.totals[slot] = amount
    books.keys[p.pathway_id].add(key)
    books.causes[slot] = causes
    books.book({
        "period": str(period), "at": at, "pathway_id": p.pathway_id,
        "handover_id": handover_id, "provider_id": provider_id, "contract": p.contract.key,
        "rule": rule, "amount": amount - before, "currency": p.contract.currency,
        "caused_by": list(causes), "adjusts": adjusts, "note": note,
    })


def _close(books: _Books, close: LedgerInput, pathways: dict[str, _Pathway],
           contracts: Contracts) -> None:
    """Book each alliance's shares for the period into it, then close it."""
    if close.period is None:
        return
    period = Period.parse(close.period)
    if period in books.closed:
        return
    for contract in contracts.all:
        mine = {pid: p.events for pid, p in pathways.items() if p.contract.key == contract.key}
        rec = reconcile(contract, period, {pid: [e for e in evs if e.at <= close.at]
                                           for pid, evs in mine.items()}, books.entries)
        for share in rec.members if rec else ():
            if share.amount:
                assert rec is not None
                books.book({
                    "period": str(period), "at": close.at, "pathway_id": None,
                    "handover_id": None, "provider_id": share.provider_id,
                    "contract": contract.key, "rule": Rule.ALLIANCE, "amount": share.amount,
                    "currency": contract.currency,
                    "caused_by": [close.input_id, *rec.caused_by], "note": describe(share, rec),
                }, stem=f"alliance:{contract.key}:{period}:{share.provider_id}")
    books.closed.add(period)


def alliance(
    events: Iterable[PathwayEvent],
    inputs: Iterable[LedgerInput],
    contracts: Contracts,
    period: Period,
    entries: list[LedgerEntry],
) -> list[Reconciliation]:
    """Each contract's alliance share for the period from the ledger as it stands: final once
    the period is closed (booked at the close), provisional before."""
    pathways = _pathways(events, inputs, contracts)
    found = []
    for contract in contracts.all:
        mine = {pid: p.events for pid, p in pathways.items() if p.contract.key == contract.key}
        rec = reconcile(contract, period, mine, entries)
        if rec is not None:
            found.append(rec)
    return found
