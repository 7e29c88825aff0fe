"""The ledger: every entry derived from the event log by replaying it in time order (pure).

At each moment something is learnt about a pathway (its events at that instant, an outcome
recorded, its outcome deadline passing) the pathway's obligations are recomputed
(rules.obligations) and the difference from what was booked before is booked, in the period of
that moment. A fact learnt after a period closed therefore lands in the next open period as an
adjusting entry (`adjusts` names the earlier period it trues up); closed periods are never
edited. Closing a period books its alliance shares (alliance.reconcile) into it.

The same events, inputs and contracts give the same entries, ids and order: `derive` is what the
stored ledger is checked against. `Replay` is the same replay kept open: facts timed after the
horizon it reached are added and it advances again, giving exactly the entries one `derive` over
all of them gives (what incremental posting, activities/ledger.py, relies on).
"""

from __future__ import annotations

import heapq
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


@dataclass
class _Pathway:
    pathway_id: str
    events: list[PathwayEvent]
    outcomes: list[LedgerInput]
    contract: Contract
    due: datetime | None = None


EVENTS, OUTCOMES, DEADLINE, CLOSE = range(4)
"""What is learnt at one instant, in this order: the engine's events, then outcomes recorded,
then a deadline passing, then a period closing (each sees what came before it)."""


class LateFact(ValueError):
    """A fact timed at or before the replay's horizon: resuming cannot place it (replay from
    the start instead)."""


class Replay:
    """The ledger replay, resumable: facts are added, then the replay advances to a horizon,
    settling every moment up to it in time order. Advancing in steps over facts that each come
    after the horizon reached gives exactly the entries of one replay over all of them."""

    def __init__(self, contracts: Contracts) -> None:
        self.contracts = contracts
        self.books = _Books()
        self.pathways: dict[str, _Pathway] = {}
        self.horizon: datetime | None = None
        self._skipped: set[str] = set()
        self._closes: dict[str, LedgerInput] = {}
        self._pending: list[tuple[datetime, int, str]] = []
        self._scheduled: set[tuple[datetime, int, str]] = set()

    @property
    def entries(self) -> list[LedgerEntry]:
        return self.books.entries

    def events(self) -> list[PathwayEvent]:
        """The events of the pathways settled (under a contract), by pathway and seq."""
        return [e for pid in sorted(self.pathways) for e in self.pathways[pid].events]

    def add(self, events: Iterable[PathwayEvent], inputs: Iterable[LedgerInput]) -> None:
        """Take facts not seen before; LateFact (nothing taken) when one is timed at or before
        the horizon, except a close exactly at it (closes come last at an instant)."""
        by_id: dict[str, list[PathwayEvent]] = defaultdict(list)
        for event in events:
            self._check(event.at, event.event_id, strict=True)
            by_id[event.pathway_id].append(event)
        items = sorted(inputs, key=lambda i: (i.at, i.input_id))
        for item in items:
            self._check(item.at, item.input_id, strict=item.kind is not InputKind.CLOSE)
        for pid, evs in sorted(by_id.items()):
            self._add_events(pid, sorted(evs, key=lambda e: e.seq))
        for item in items:
            if item.kind is InputKind.CLOSE:
                self._closes[item.input_id] = item
                self._schedule(item.at, CLOSE, item.input_id)
            elif item.kind is InputKind.OUTCOME and item.pathway_id in self.pathways:
                p = self.pathways[item.pathway_id]
                p.outcomes.append(item)
                p.outcomes.sort(key=lambda i: (i.at, i.input_id))
                self._schedule(item.at, OUTCOMES, p.pathway_id)

    def _check(self, at: datetime, what: str, strict: bool) -> None:
        if self.horizon is not None and (at <= self.horizon if strict else at < self.horizon):
            raise LateFact(f"{what} at {at.isoformat()} is not after {self.horizon.isoformat()}")

    def _add_events(self, pid: str, evs: list[PathwayEvent]) -> None:
        if pid in self._skipped:
            return
        p = self.pathways.get(pid)
        if p is None:
            first = evs[0]
            contract = self.contracts.for_pathway(
                f"{first.definition_id}@{first.definition_version}", first.at)
            if contract is None:
                self._skipped.add(pid)
                return
            p = self.pathways[pid] = _Pathway(pid, [], [], contract)
        p.events.extend(evs)
        for e in evs:
            self._schedule(e.at, EVENTS, pid)
        if p.due is None and (due := deadline(p.contract, p.events)) is not None:
            p.due = due
            self._schedule(due, DEADLINE, pid)

    def _schedule(self, at: datetime, kind: int, subject: str) -> None:
        point = (at, kind, subject)
        if point not in self._scheduled:
            self._scheduled.add(point)
            heapq.heappush(self._pending, point)

    def advance(self, as_of: datetime) -> list[LedgerEntry]:
        """Settle every moment up to `as_of`, in time order; return the entries booked."""
        before = len(self.books.entries)
        while self._pending and self._pending[0][0] <= as_of:
            point = heapq.heappop(self._pending)
            self._scheduled.discard(point)
            at, kind, subject = point
            if kind == CLOSE:
                _close(self.books, self._closes[subject], self.pathways, self.contracts)
            else:
                _settle(self.books, self.pathways[subject], at, kind, self.contracts)
        self.horizon = as_of if self.horizon is None else max(as_of, self.horizon)
        return self.books.entries[before:]


def derive(
    events: Iterable[PathwayEvent],
    inputs: Iterable[LedgerInput],
    contracts: Contracts,
    as_of: datetime,
) -> list[LedgerEntry]:
    """The whole ledger as of `as_of`, from the event log and the settlement inputs."""
    replay = Replay(contracts)
    replay.add(events, inputs)
    replay.advance(as_of)
    return replay.entries


def _pathways(events: Iterable[PathwayEvent], inputs: Iterable[LedgerInput],
              contracts: Contracts) -> dict[str, _Pathway]:
    replay = Replay(contracts)
    replay.add(events, inputs)
    return replay.pathways


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
