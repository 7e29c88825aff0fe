"""Money: integer pence, never floats, with the two rounding rules every amount goes through.

- A percentage of an amount is computed exactly (as a fraction) and rounded to the nearest penny,
  halves away from zero (ROUND_HALF_UP on the magnitude): 10% of 1,005p is 101p (100.5 -> 101),
  10% of -1,005p is -101p. Percentages are whole numbers in the contract terms.
- A split of an amount by weights (the alliance share) uses the largest-remainder method: each
  part is floored, then the pennies left over go one each to the largest remainders (ties to the
  provider id first in order), so the parts always add up to the whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction


def round_half_away(value: Fraction) -> int:
    """Nearest integer; a half goes away from zero (the stated rounding rule for pence)."""
    magnitude = abs(value)
    whole = int(magnitude)
    if magnitude - whole >= Fraction(1, 2):
        whole += 1
    return whole if value >= 0 else -whole


def percent_of(amount: int, percent: int | Fraction) -> int:
    """`percent`% of `amount` pence, rounded to the penny by `round_half_away`."""
    if isinstance(percent, int):  # the common case, in integers only (no Fraction objects)
        quotient, remainder = divmod(abs(amount) * abs(percent), 100)
        magnitude = quotient + (2 * remainder >= 100)
        return magnitude if (amount >= 0) == (percent >= 0) else -magnitude
    return round_half_away(Fraction(amount) * percent / 100)


def split(amount: int, weights: Mapping[str, int]) -> dict[str, int]:
    """`amount` pence split in proportion to positive integer `weights`; the parts sum to it."""
    total = sum(weights.values())
    if total <= 0 or any(w <= 0 for w in weights.values()):
        raise ValueError("weights must be positive")
    sign = -1 if amount < 0 else 1
    exact = {key: Fraction(abs(amount) * w, total) for key, w in weights.items()}
    parts = {key: int(share) for key, share in exact.items()}
    left = abs(amount) - sum(parts.values())
    by_remainder = sorted(exact, key=lambda key: (-(exact[key] - parts[key]), key))
    for key in by_remainder[:left]:
        parts[key] += 1
    return {key: sign * part for key, part in sorted(parts.items())}


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def format_pence(amount: int, currency: str) -> str:
    """'GBP 1,234.56' / 'GBP -0.05': for statements, never parsed back."""
    sign = "-" if amount < 0 else ""
    pounds, pence = divmod(abs(amount), 100)
    return f"{currency} {sign}{pounds:,}.{pence:02d}"
