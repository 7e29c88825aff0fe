"""Making Data Count XmR rules on series built to trigger each rule, and on one that triggers none."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

import pytest

from pathways.analytics.spc import Direction, Rule, svg, xmr


def flagged(values: Sequence[float]) -> dict[int, list[Rule]]:
    chart = xmr(values)
    assert chart is not None
    return {i: p.rules for i, p in enumerate(chart.points) if p.rules}


def test_limits_are_mean_plus_minus_2_66_mean_moving_range() -> None:
    chart = xmr([10, 12, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12])
    assert chart is not None
    assert chart.mean == 11 and chart.mr_bar == 2
    assert chart.upper_limit == pytest.approx(11 + 5.32)
    assert chart.lower_limit == pytest.approx(11 - 5.32)
    assert chart.special == []


def test_common_cause_series_triggers_no_rule() -> None:
    assert flagged([10, 12, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12]) == {}
    assert flagged([3, 5, 4, 6, 5, 4, 5, 3, 6, 4]) == {}


def test_a_point_outside_the_limits() -> None:
    # mean 14.58, mR-bar 180/11 = 16.36, upper limit 58.11: 60 lies above it
    assert flagged([5, 15, 5, 15, 5, 15, 60, 15, 5, 15, 5, 15]) == {6: [Rule.OUTSIDE_LIMITS]}


def test_a_run_of_seven_on_one_side_of_the_mean() -> None:
    # mean 9.71: the seven 11s lie above it, then the points alternate
    assert flagged([11] * 7 + [5, 13, 5, 13, 5, 13, 5]) == {i: [Rule.RUN] for i in range(7)}


def test_six_on_one_side_is_not_a_run() -> None:
    assert Rule.RUN not in sum(flagged([11] * 6 + [5, 13, 5, 13, 5, 13, 5]).values(), [])


def test_a_trend_of_seven_rising_points() -> None:
    values = [2, 6, 2, 6, 2, 6, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 2, 6, 2, 6]
    assert flagged(values) == {i: [Rule.TREND] for i in range(6, 13)}
    falling = [2, 6, 2, 6, 2, 6, 5.5, 5, 4.5, 4, 3.5, 3, 2.5, 2, 6, 2, 6]
    # 6 (index 5), 5.5, ..., 2.5, 2 (index 13): nine falling points
    assert flagged(falling) == {i: [Rule.TREND] for i in range(5, 14)}


def test_two_of_three_beyond_two_sigma_on_the_same_side() -> None:
    # mean 10.48, sigma = mR-bar/1.128 = 2.34: 15.5 is beyond 2 sigma (4.67), inside 3 sigma
    values = [9, 11] * 8 + [15.5, 10, 15.5] + [9, 11] * 2
    assert flagged(values) == {16: [Rule.NEAR_LIMIT], 18: [Rule.NEAR_LIMIT]}


def test_special_cause_reads_as_concern_or_improvement_by_direction() -> None:
    values = [5, 15, 5, 15, 5, 15, 60, 15, 5, 15, 5, 15]
    up = xmr(values, direction=Direction.DOWN)
    assert up is not None and up.points[6].variation == "concern"
    down = xmr(values, direction=Direction.UP)
    assert down is not None and down.points[6].variation == "improvement"
    assert up.points[0].variation == "common"


def test_fewer_than_two_points_has_no_chart() -> None:
    assert xmr([3.0]) is None


def test_svg_is_well_formed_and_marks_special_points() -> None:
    chart = xmr([5, 15, 5, 15, 5, 15, 60, 15, 5, 15, 5, 15], direction=Direction.DOWN)
    assert chart is not None
    root = ET.fromstring(svg(chart, "Weekly lead time <hours>"))
    circles = root.findall("{http://www.w3.org/2000/svg}circle")
    assert len(circles) == 12
    assert [c.get("data-rules") for c in circles].count("outside-limits") == 1
    assert circles[6].get("fill") == "#ed8b00"
