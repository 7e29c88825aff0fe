"""Alliance risk and gain share for one contract and period (pure).

For the pathways that completed in the period: target = target price x pathways; actual = what
the ledger paid for them (base, top-ups, withholds and releases booked so far); net = target -
actual (positive is a gain to share, negative a loss to bear). The net is split by the members'
weights (largest remainder), each share moved by the member's quality adjustment (its rate of
handovers completed on time and first time right in the period, minus the target rate, in
percentage points within +-max: a gain grows and a loss shrinks with good quality), then capped at
the member's stop-loss / stop-gain (percent of its weighted part of the period's target).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from pathways.events import EventKind, PathwayEvent
from pathways.settlement.model import LedgerEntry, Rule
from pathways.settlement.money import clamp, percent_of, round_half_away, split
from pathways.settlement.periods import Period
from pathways.settlement.rules import handover_facts
from pathways.settlement.terms import Alliance, Contract

PAID_RULES = (Rule.BASE, Rule.TOP_UP, Rule.WITHHOLD, Rule.RELEASE)


@dataclass(frozen=True)
class MemberShare:
    provider_id: str
    weight: int
    share: int = field(metadata={"doc": "the member's part of the net, by weight"})
    quality_percent: Fraction
    adjusted: int
    cap_low: int
    cap_high: int
    amount: int

    @property
    def capped(self) -> bool:
        return self.amount != self.adjusted


@dataclass(frozen=True)
class Reconciliation:
    contract: str
    period: str
    pathways: tuple[str, ...]
    target: int
    actual: int
    members: tuple[MemberShare, ...]
    caused_by: tuple[str, ...]

    @property
    def net(self) -> int:
        return self.target - self.actual


def completed_in(period: Period, events: Iterable[PathwayEvent]) -> PathwayEvent | None:
    """The pathway's completion event when it fell in the period."""
    return next((e for e in events if e.kind is EventKind.PATHWAY_COMPLETED
                 and Period.containing(e.at) == period), None)


def reconcile(
    contract: Contract,
    period: Period,
    pathway_events: Mapping[str, list[PathwayEvent]],
    entries: Iterable[LedgerEntry],
) -> Reconciliation | None:
    """The period's share for each member; None when the contract has no alliance terms.

    `pathway_events` are the events of the pathways settled under this contract.
    """
    terms = contract.alliance
    if terms is None:
        return None
    ends = {pid: end for pid, evs in sorted(pathway_events.items())
            if (end := completed_in(period, evs)) is not None}
    paid = sum(e.amount for e in entries if e.pathway_id in ends and e.rule in PAID_RULES)
    target = terms.target_per_pathway * len(ends)
    rates = _quality(period, pathway_events)
    members = shares(terms, target, target - paid, rates)
    causes = tuple(end.event_id for end in ends.values())
    return Reconciliation(contract.key, str(period), tuple(ends), target, paid, members, causes)


def _quality(period: Period, pathway_events: Mapping[str, list[PathwayEvent]]
             ) -> dict[str, tuple[int, int]]:
    """Per provider: (handovers completed in the period on time and first time right, all)."""
    counts: dict[str, tuple[int, int]] = {}
    for events in pathway_events.values():
        for f in handover_facts(events).values():
            if Period.containing(f.completed.at) != period:
                continue
            good, total = counts.get(f.provider_id, (0, 0))
            counts[f.provider_id] = (good + (not f.breaches and not f.refusals), total + 1)
    return counts


def shares(terms: Alliance, target: int, net: int, rates: Mapping[str, tuple[int, int]]
            ) -> tuple[MemberShare, ...]:
    weights = terms.weights
    shares = split(net, weights) if net else {m: 0 for m in sorted(weights)}
    whole = sum(weights.values())
    out = []
    for member in sorted(weights):
        good, total = rates.get(member, (0, 0))
        limit = terms.quality.max_adjust_percent
        quality = (Fraction(0) if total == 0 else
                   clamp_fraction(Fraction(100 * good, total) - terms.quality.target_percent, limit))
        share = shares[member]
        adjusted = share + percent_of(abs(share), quality)
        part = Fraction(target * weights[member], whole)
        low = -round_half_away(part * terms.stop_loss_percent / 100)
        high = round_half_away(part * terms.stop_gain_percent / 100)
        out.append(MemberShare(member, weights[member], share, quality, adjusted, low, high,
                               clamp(adjusted, low, high)))
    return tuple(out)


def clamp_fraction(value: Fraction, limit: int) -> Fraction:
    return max(Fraction(-limit), min(Fraction(limit), value))


def describe(share: MemberShare, rec: Reconciliation) -> str:
    """The statement line's why: the figures behind a member's share."""
    text = (f"{rec.period}: {len(rec.pathways)} pathways, target {rec.target} - actual "
            f"{rec.actual} = net {rec.net}; weight {share.weight} -> {share.share}; quality "
            f"{float(share.quality_percent):+.1f}% -> {share.adjusted}")
    return text + (f"; capped at {share.amount}" if share.capped else "")
