"""Statements: one provider's ledger lines for one period, totals by rule, and renderings."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from pydantic import Field

from pathways.settlement.alliance import Reconciliation
from pathways.settlement.model import LedgerEntry, Rule
from pathways.settlement.money import format_pence
from pathways.settlement.position import MissedTopUp
from pathways.state import Model


class Statement(Model):
    provider_id: str
    period: str
    currency: str
    closed: bool
    lines: list[LedgerEntry]
    totals: dict[str, int] = Field(description="pence per rule")
    true_ups: int = Field(description="pence of lines adjusting earlier periods")
    total: int
    missed_top_ups: list[MissedTopUp] = Field(
        default_factory=list, description="top-ups not earned in the period, and why")


def statement(
    entries: Iterable[LedgerEntry], provider_id: str, period: str, closed: bool,
    currency: str = "GBP", missed: Iterable[MissedTopUp] = (),
) -> Statement:
    lines = [e for e in entries if e.provider_id == provider_id and e.period == period]
    totals = {rule.value: sum(e.amount for e in lines if e.rule is rule) for rule in Rule}
    return Statement(
        provider_id=provider_id, period=period, currency=currency, closed=closed, lines=lines,
        totals={k: v for k, v in totals.items() if v or any(e.rule == k for e in lines)},
        true_ups=sum(e.amount for e in lines if e.adjusts), total=sum(e.amount for e in lines),
        missed_top_ups=list(missed),
    )


def providers_in(entries: Iterable[LedgerEntry], period: str) -> list[str]:
    return sorted({e.provider_id for e in entries if e.period == period})


CSV_COLUMNS = ["provider_id", "period", "entry_id", "at", "pathway_id", "handover_id",
               "contract", "rule", "amount_pence", "currency", "adjusts", "caused_by", "note"]


def to_csv(statements: Iterable[Statement]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in statements:
        for e in s.lines:
            writer.writerow([s.provider_id, s.period, e.entry_id, e.at.isoformat(),
                             e.pathway_id or "", e.handover_id or "", e.contract, e.rule.value,
                             e.amount, e.currency, e.adjusts or "", " ".join(e.caused_by),
                             e.note])
    return out.getvalue()


def to_json(statements: Iterable[Statement]) -> str:
    data: list[dict[str, Any]] = [s.model_dump(mode="json") for s in statements]
    return json.dumps(data, indent=2)


def to_text(statements: Iterable[Statement]) -> str:
    blocks = []
    for s in statements:
        state = "closed" if s.closed else "open (provisional)"
        lines = [f"Statement {s.period} for {s.provider_id} ({state})"]
        for e in s.lines:
            where = e.pathway_id or e.contract
            adj = f" [true-up of {e.adjusts}]" if e.adjusts else ""
            lines.append(
                f"  {e.at:%Y-%m-%d %H:%M} {where} {e.handover_id or ''} {e.rule.value:<16} "
                f"{format_pence(e.amount, e.currency):>16}{adj}  {e.note}  <- "
                f"{', '.join(e.caused_by[:6])}{' ...' if len(e.caused_by) > 6 else ''}")
        for rule, amount in s.totals.items():
            lines.append(f"  total {rule:<16} {format_pence(amount, s.currency):>16}")
        if s.true_ups:
            lines.append(f"  of which true-ups  {format_pence(s.true_ups, s.currency):>16}")
        lines.append(f"  TOTAL {'':<16} {format_pence(s.total, s.currency):>16}")
        for m in s.missed_top_ups:
            lines.append(
                f"  not paid: top-up {format_pence(m.amount, s.currency)} on {m.pathway_id} "
                f"{m.handover_id}: {'; '.join(m.reasons)} <- {', '.join(m.caused_by)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


class MemberView(Model):
    provider_id: str
    weight: int
    share: int = Field(description="pence: the member's part of the net, by weight")
    quality_points: str = Field(description="quality adjustment in percent, e.g. '+10.0'")
    adjusted: int
    stop_loss: int
    stop_gain: int
    amount: int = Field(description="pence after the caps")
    capped: bool


class AllianceView(Model):
    """The alliance's gain (positive net) or loss against target for a contract and period."""

    contract: str
    period: str
    pathways: int = Field(description="pathways completed in the period")
    target: int
    actual: int
    net: int
    members: list[MemberView]


def alliance_view(rec: Reconciliation) -> AllianceView:
    return AllianceView(
        contract=rec.contract, period=rec.period, pathways=len(rec.pathways), target=rec.target,
        actual=rec.actual, net=rec.net,
        members=[MemberView(
            provider_id=m.provider_id, weight=m.weight, share=m.share,
            quality_points=f"{float(m.quality_percent):+.1f}", adjusted=m.adjusted,
            stop_loss=m.cap_low, stop_gain=m.cap_high, amount=m.amount, capped=m.capped)
            for m in rec.members])


def alliance_text(views: Iterable[AllianceView], closed: bool) -> str:
    state = "closed" if closed else "open (provisional)"
    lines = []
    for v in views:
        lines.append(f"Alliance {v.contract} {v.period} ({state}): {v.pathways} pathways, target "
                     f"{format_pence(v.target, 'GBP')} - actual {format_pence(v.actual, 'GBP')} "
                     f"= net {format_pence(v.net, 'GBP')}")
        for m in v.members:
            cap = " (capped)" if m.capped else ""
            lines.append(f"  {m.provider_id:<32} weight {m.weight:>3} share "
                         f"{format_pence(m.share, 'GBP'):>14} quality {m.quality_points:>6}% "
                         f"-> {format_pence(m.amount, 'GBP'):>14}{cap}")
    return "\n".join(lines) + "\n" if lines else "no alliance terms\n"
