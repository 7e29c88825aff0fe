"""Statistical process control as NHS England's "Making Data Count" recommends: XmR charts.

An XmR (individuals and moving range) chart takes the mean of a series and the mean moving
range (mR-bar, the mean absolute difference of consecutive points); the process limits are
mean +/- 2.66 x mR-bar (3 sigma, with sigma = mR-bar / 1.128). Special-cause variation is
flagged by four rules, each on its own so a reader sees why a point is special:

- a point outside the process limits;
- a run of 7 or more consecutive points on one side of the mean (a point on the mean breaks it);
- a trend of 7 or more consecutive points each higher (or each lower) than the one before;
- two of three consecutive points near a limit, beyond 2 sigma on the same side of the mean.

With the improvement direction given, each special cause reads as improvement or concern.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pathways.analytics.measures import Frozen

LIMIT_FACTOR = 2.66
"""3 / d2 with d2 = 1.128 for moving ranges of two points."""
SIGMA_FACTOR = 1 / 1.128
RUN = 7
TREND = 7


class Rule(StrEnum):
    OUTSIDE_LIMITS = "outside-limits"
    RUN = "run"
    TREND = "trend"
    NEAR_LIMIT = "two-of-three-near-limit"


class Direction(StrEnum):
    """Which way is better: lead time and breach rate improve going down."""

    UP = "up"
    DOWN = "down"


class Point(Frozen):
    label: str
    value: float
    moving_range: float | None
    rules: list[Rule]
    side: int  # +1 above the mean, -1 below, 0 on it
    variation: str  # common | improvement | concern | special (no direction)


class XmrChart(Frozen):
    mean: float
    mr_bar: float
    upper_limit: float
    lower_limit: float
    points: list[Point]
    direction: Direction | None

    @property
    def special(self) -> list[Point]:
        return [p for p in self.points if p.rules]


def xmr(
    values: Sequence[float], labels: Sequence[str] | None = None,
    direction: Direction | None = None,
) -> XmrChart | None:
    """The chart of a series; None with fewer than two points (no moving range)."""
    if len(values) < 2:
        return None
    names = list(labels) if labels is not None else [str(i + 1) for i in range(len(values))]
    mean = sum(values) / len(values)
    ranges = [abs(b - a) for a, b in zip(values, values[1:], strict=False)]
    mr_bar = sum(ranges) / len(ranges)
    upper, lower = mean + LIMIT_FACTOR * mr_bar, mean - LIMIT_FACTOR * mr_bar
    flags = special_causes(values, mean, mr_bar)
    points = []
    for i, value in enumerate(values):
        side = _side(value, mean)
        rules = flags[i]
        points.append(Point(
            label=names[i], value=value, moving_range=ranges[i - 1] if i else None,
            rules=rules, side=side, variation=_variation(rules, side, direction),
        ))
    return XmrChart(mean=mean, mr_bar=mr_bar, upper_limit=upper, lower_limit=lower,
                    points=points, direction=direction)


def special_causes(values: Sequence[float], mean: float, mr_bar: float) -> list[list[Rule]]:
    """The rules each point triggers, in Rule order."""
    flags: list[set[Rule]] = [set() for _ in values]
    limit = LIMIT_FACTOR * mr_bar
    for i, value in enumerate(values):
        if abs(value - mean) > limit:
            flags[i].add(Rule.OUTSIDE_LIMITS)
    for i in _runs(values, mean):
        flags[i].add(Rule.RUN)
    for i in _trends(values):
        flags[i].add(Rule.TREND)
    for i in _near_limit(values, mean, 2 * SIGMA_FACTOR * mr_bar):
        flags[i].add(Rule.NEAR_LIMIT)
    return [[rule for rule in Rule if rule in found] for found in flags]


def _side(value: float, mean: float) -> int:
    return (value > mean) - (value < mean)


def _runs(values: Sequence[float], mean: float) -> set[int]:
    """Indexes in runs of RUN or more points on one side of the mean."""
    flagged: set[int] = set()
    start = 0
    for i in range(1, len(values) + 1):
        same = i < len(values) and _side(values[i], mean) == _side(values[start], mean)
        if not same:
            if _side(values[start], mean) != 0 and i - start >= RUN:
                flagged.update(range(start, i))
            start = i
    return flagged


def _trends(values: Sequence[float]) -> set[int]:
    """Indexes in TREND or more consecutive points each strictly higher (or lower)."""
    flagged: set[int] = set()
    for sign in (1, -1):
        start = 0
        for i in range(1, len(values) + 1):
            rising = i < len(values) and sign * (values[i] - values[i - 1]) > 0
            if not rising:
                if i - start >= TREND:
                    flagged.update(range(start, i))
                start = i
    return flagged


def _near_limit(values: Sequence[float], mean: float, two_sigma: float) -> set[int]:
    """Points beyond 2 sigma in any window of three holding two or more such points on the
    same side (only the near points are flagged)."""
    flagged: set[int] = set()
    if two_sigma <= 0:
        return flagged
    for start in range(len(values) - 2):
        window = range(start, start + 3)
        for sign in (1, -1):
            near = [i for i in window if sign * (values[i] - mean) > two_sigma]
            if len(near) >= 2:
                flagged.update(near)
    return flagged


def _variation(rules: list[Rule], side: int, direction: Direction | None) -> str:
    if not rules:
        return "common"
    if direction is None or side == 0:
        return "special"
    better = side > 0 if direction is Direction.UP else side < 0
    if Rule.TREND in rules and len(rules) == 1:
        return "special"  # a trend's direction is its slope, not its side; left to the reader
    return "improvement" if better else "concern"


def svg(chart: XmrChart, title: str, width: int = 640, height: int = 240) -> str:
    """A self-contained SVG of the chart: points, mean, limits, special causes highlighted
    (orange for concern, blue for improvement, as Making Data Count colours them)."""
    pad = 36
    values = [p.value for p in chart.points]
    top = max([*values, chart.upper_limit])
    bottom = min([*values, chart.lower_limit])
    span = (top - bottom) or 1.0
    n = len(chart.points)

    def x(i: int) -> float:
        return pad + i * (width - 2 * pad) / max(n - 1, 1)

    def y(v: float) -> float:
        return pad + (top - v) * (height - 2 * pad) / span

    colour = {"concern": "#ed8b00", "improvement": "#41b6e6", "special": "#8a1538"}
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_escape(title)}">',
        f'<title>{_escape(title)}</title>',
        f'<text x="{pad}" y="16" font-size="12">{_escape(title)}</text>',
    ]
    for value, dash, name in ((chart.upper_limit, "4 3", "upper"), (chart.mean, "", "mean"),
                              (chart.lower_limit, "4 3", "lower")):
        lines.append(
            f'<line class="{name}" x1="{pad}" x2="{width - pad}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}" stroke="#768692" stroke-dasharray="{dash}"/>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    lines.append(f'<path d="{path}" fill="none" stroke="#425563"/>')
    for i, point in enumerate(chart.points):
        fill = colour.get(point.variation, "#425563")
        rules = " ".join(r.value for r in point.rules)
        lines.append(
            f'<circle cx="{x(i):.1f}" cy="{y(point.value):.1f}" r="4" fill="{fill}" '
            f'data-rules="{rules}"><title>{_escape(point.label)}: {point.value:.4g}'
            f'{" (" + rules + ")" if rules else ""}</title></circle>')
    lines.append("</svg>")
    return "\n".join(lines)


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))
