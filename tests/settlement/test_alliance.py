"""Hand-worked alliance risk/gain share: caps hit and not hit, quality adjustment, and the close
that books it from real engine runs.

Terms (shipped contract): target 30,000p per completed pathway; weights UCR central 40,
Willowbrook 20, Kestrel 20, Elmshire PCN 20; quality target 90%, at most +-10%; stop-loss and
stop-gain 20% of each member's weighted part of the target.
"""

from __future__ import annotations

from fractions import Fraction

from pathways.settlement import derive
from pathways.settlement.alliance import shares
from pathways.settlement.terms import Alliance
from tests.settlement.support import CONTRACTS, DAY, HOUR, MINUTE, T0, Scenario, close, gp_output, response_output


def _alliance() -> Alliance:
    terms = CONTRACTS.all[0].alliance
    assert terms is not None
    return terms


TERMS = _alliance()
UCR, BED, HOME, GP = ("elmshire-ucr-central", "willowbrook-community-hospital",
                      "kestrel-home-care", "elmshire-central-pcn")
RATES = {UCR: (2, 2), GP: (1, 2)}  # UCR 100% (+10 points, the most), GP 50% (-40 -> -10)


def by_member(target: int, net: int) -> dict[str, tuple[int, int, int, Fraction]]:
    return {m.provider_id: (m.share, m.adjusted, m.amount, m.quality_percent)
            for m in shares(TERMS, target, net, RATES)}


def test_gain_below_the_caps() -> None:
    """2 pathways: target 60,000, actual 55,000, net +5,000 -> 2,000 / 1,000 / 1,000 / 1,000;
    UCR +10% = 2,200, GP -10% = 900; caps (UCR 4,800, others 2,400) not hit."""
    assert by_member(60000, 5000) == {
        UCR: (2000, 2200, 2200, Fraction(10)),
        BED: (1000, 1000, 1000, Fraction(0)),
        HOME: (1000, 1000, 1000, Fraction(0)),
        GP: (1000, 900, 900, Fraction(-10)),
    }


def test_stop_gain_caps_each_share() -> None:
    """Net +50,000 -> 20,000 / 10,000 x3; after quality 22,000 / 10,000 / 10,000 / 9,000;
    capped at 20% of 24,000 = 4,800 and of 12,000 = 2,400."""
    result = by_member(60000, 50000)
    assert {m: r[:3] for m, r in result.items()} == {
        UCR: (20000, 22000, 4800), BED: (10000, 10000, 2400),
        HOME: (10000, 10000, 2400), GP: (10000, 9000, 2400)}


def test_stop_loss_caps_each_share_and_quality_shrinks_a_loss() -> None:
    """Net -40,000 -> -16,000 / -8,000 x3; UCR's quality shrinks its loss to -14,400, GP's grows
    to -8,800; capped at -4,800 and -2,400."""
    result = by_member(60000, -40000)
    assert {m: r[:3] for m, r in result.items()} == {
        UCR: (-16000, -14400, -4800), BED: (-8000, -8000, -2400),
        HOME: (-8000, -8000, -2400), GP: (-8000, -8800, -2400)}


def test_small_loss_not_capped() -> None:
    result = by_member(60000, -1000)
    assert {m: r[2] for m, r in result.items()} == {UCR: -360, BED: -200, HOME: -200, GP: -220}


def test_closing_a_quarter_books_the_alliance_share_from_real_runs() -> None:
    """Two pathways in 2026-Q4, both ended with no outcome (50% released at the deadline):
    pw-1 on time: UCR 18,000 + 2,500 - 1,800 + 900; GP 3,500 + 1,000 - 700 + 350 -> 23,750.
    pw-2 late response: UCR 18,000 - 1,800 + 900; GP as pw-1 -> 21,250.
    Target 60,000 - actual 45,000 = net 15,000 -> 6,000 / 3,000 / 3,000 / 3,000.
    Quality: UCR 1 of 2 on time (50% -> -10%) 5,400 -> capped 4,800; GP 2 of 2 (+10%) 3,300 ->
    capped 2,400; Willowbrook and Kestrel held nothing: 3,000 -> capped 2,400."""
    one = Scenario("pw-1").simple()
    two = Scenario("pw-2", start=T0 + DAY)
    two.accept("urgent-response", T0 + DAY + 10 * MINUTE)
    late = T0 + DAY + 3 * HOUR
    two.complete("urgent-response", late, response_output(late))
    two.accept("gp-follow-up", late + HOUR)
    two.complete("gp-follow-up", late + 5 * HOUR, gp_output(late + 5 * HOUR))
    closing = close("2026-Q4", T0 + 90 * DAY)
    ledger = derive([*one.events, *two.events], [closing], CONTRACTS, closing.at)
    paid = sum(e.amount for e in ledger if e.pathway_id)
    assert paid == 23750 + 21250
    alliance = {e.provider_id: e.amount for e in ledger if e.rule == "alliance-share"}
    assert alliance == {UCR: 4800, GP: 2400, BED: 2400, HOME: 2400}
    share = next(e for e in ledger if e.rule == "alliance-share" and e.provider_id == UCR)
    assert share.period == "2026-Q4" and share.caused_by[0] == "close:2026-Q4"
    assert "net 15000" in share.note and "capped" in share.note
