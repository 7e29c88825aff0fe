"""Money rules: integer percentages round like the exact fraction; splits always add up."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from pathways.settlement.money import format_pence, percent_of, round_half_away, split


@given(st.integers(-10**9, 10**9), st.integers(-100, 100))
def test_integer_percent_equals_the_exact_fraction_rounded(amount: int, percent: int) -> None:
    assert percent_of(amount, percent) == round_half_away(Fraction(amount * percent, 100))
    assert percent_of(amount, percent) == percent_of(amount, Fraction(percent))


@given(st.integers(-10**9, 10**9),
       st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.integers(1, 1000),
                       min_size=1, max_size=6))
def test_split_adds_up_and_is_within_a_penny_of_exact(amount: int, weights: dict[str, int]
                                                      ) -> None:
    parts = split(amount, weights)
    assert sum(parts.values()) == amount
    total = sum(weights.values())
    for key, part in parts.items():
        assert abs(Fraction(part) - Fraction(amount * weights[key], total)) < 1


def test_formatting() -> None:
    assert format_pence(123456, "GBP") == "GBP 1,234.56"
    assert format_pence(-5, "GBP") == "GBP -0.05"
