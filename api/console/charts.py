"""Server-side SVG charts of the console's analytics pages: value-stream map, XmR (SPC) chart, work
in progress over time. Pure functions from the report's models to SVG text; no script, no CDN.

Each chart is an image with a <title> and an aria-label that says what it shows; the pages put the
same numbers in a table next to it, so nothing is only in the picture. Special-cause points are
numbered in the chart and explained in text by the page; colour never carries meaning alone
(Making Data Count colours: orange concern, blue improvement, grey common cause).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from html import escape

from markupsafe import Markup

from api.console.render import duration
from pathways.analytics.report import Measures, WipPoint
from pathways.analytics.spc import Point, XmrChart

Format = Callable[[float], str]


def seconds(value: float | None) -> str:
    """Seconds for people ('3 h 5 min'); a dash when there is nothing to show."""
    if value is None:
        return "–"
    text = duration(timedelta(seconds=value))
    return f"−{text}" if value < 0 and text != "0 s" else text


def percent(value: float | None) -> str:
    """A share as a whole percentage ('78%'), one decimal under 10% ('2.5%'); a dash for none."""
    if value is None:
        return "–"
    share = 100 * value
    return f"{share:.1f}%" if 0 < abs(share) < 10 else f"{share:.0f}%"


def moment(value: datetime) -> str:
    """A period's bound for people: '24 Aug 2026', or '23 Nov 2026 17:52 UTC' when not midnight."""
    at = value.astimezone(UTC)
    day = f"{at.day} {at.strftime('%b %Y')}"
    return day if (at.hour, at.minute, at.second) == (0, 0, 0) else f"{day} {at:%H:%M} UTC"


def week_label(monday: str) -> str:
    """'2026-10-05' as '5 Oct'."""
    day = date.fromisoformat(monday)
    return f"{day.day} {day.strftime('%b')}"


def _text(x: float, y: float, body: str, cls: str = "", anchor: str = "start") -> str:
    klass = f' class="{cls}"' if cls else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>'
            f"{escape(body)}</text>")


def _spread(ys: Sequence[float], gap: float) -> list[float]:
    """Label positions at least `gap` apart (pushed down in order), so labels of lines that lie
    close together (a mean next to a limit) never print over each other."""
    placed = list(ys)
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    for before, after in zip(order, order[1:], strict=False):
        placed[after] = max(placed[after], placed[before] + gap)
    return placed


def _ticks(n: int, most: int) -> list[int]:
    """Indexes of at most about `most` axis labels, the last always, none crowding it."""
    step = max(1, -(-n // most))
    shown = [i for i in range(0, n, step) if n - 1 - i >= step / 2 or i == n - 1]
    return shown if n - 1 in shown else [*shown, n - 1]


def _open(cls: str, width: float, height: float, label: str, title: str,
          hatch: bool = False) -> list[str]:
    """The opening of an accessible SVG (role img, label, title), with the hatch pattern that
    marks waiting time when `hatch` (its id is the chart's class: one chart of each a page)."""
    pattern = (
        f'<defs><pattern id="hatch-{cls}" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff1cc"/>'
        '<rect width="3" height="6" fill="#b07d12"/></pattern></defs>')
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {cls}" role="img" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'aria-label="{escape(label)}"><title>{escape(title)}</title>',
        *([pattern] if hatch else []),
    ]


# --- value-stream map ---------------------------------------------------------------------------
BOX_W, BOX_H, GAP_W, TOP, ROW_H = 184.0, 132.0, 70.0, 34.0, 244.0
ONE_ROW = 5
"""Up to this many steps on one row; longer chains wrap four to a row, so the map fits a laptop
screen (arrows at a row's ends carry the flow on to the next row)."""


def _wrap(title: str, width: int = 20) -> list[str]:
    """A step title on at most two lines of about `width` characters."""
    lines: list[str] = [""]
    for word in title.split():
        if len(lines[-1]) + len(word) + 1 > width and lines[-1]:
            lines.append(word)
        else:
            lines[-1] = f"{lines[-1]} {word}".strip()
    if len(lines) > 2:
        lines = [lines[0], " ".join(lines[1:])[: width - 1] + "…"]
    return lines


def value_stream_svg(steps: Sequence[tuple[str, str, Measures | None, bool]],
                     title: str) -> Markup:
    """Steps in order as boxes (mean waiting and working time, flow efficiency, breach rate),
    the handover gap on the arrow into each step, and under each box its mean lead time split
    into waiting (hatched) and working (solid), to one scale. `steps` are (id, title, measures,
    bottleneck); the bottleneck's box is drawn heavier and labelled."""
    n = len(steps)
    per_row = n if n <= ONE_ROW else ONE_ROW - 1
    rows = -(-n // max(per_row, 1))
    margin = GAP_W if rows > 1 else 10.0
    width = 2 * margin + per_row * BOX_W + max(per_row - 1, 0) * GAP_W
    height = rows * ROW_H
    longest = max((m.lead.mean or 0.0 for _, _, m, _ in steps if m is not None), default=0.0)
    bottleneck = next((t for _, t, _, b in steps if b), None)
    label = f"{title}: {n} steps in order" + (
        f"; the bottleneck is {bottleneck}" if bottleneck else "")
    out = _open("value-stream", width, height, label, title, hatch=True)
    for i, (step_id, step_title, measures, is_bottleneck) in enumerate(steps):
        row, col = divmod(i, per_row)
        x, top = margin + col * (BOX_W + GAP_W), TOP + row * ROW_H
        klass = "vs-step" + (" bottleneck" if is_bottleneck else "") + (
            " idle" if measures is None or measures.handovers == 0 else "")
        out.append(f'<g class="{klass}" data-step="{escape(step_id)}">')
        if is_bottleneck:
            out.append(_text(x + BOX_W / 2, top - 12, "▼ Bottleneck: most waiting", "vs-flag",
                             "middle"))
        out.append(f'<rect x="{x:.1f}" y="{top}" width="{BOX_W}" height="{BOX_H}" rx="6"/>')
        for j, line in enumerate(_wrap(step_title)):
            out.append(_text(x + 10, top + 20 + j * 16, line, "vs-title"))
        if measures is None or measures.handovers == 0:
            out.append(_text(x + 10, top + 72, "No handovers", "vs-line"))
            out.append(_text(x + 10, top + 90, "in the period", "vs-line"))
        else:
            lines = [("Waiting", seconds(measures.waiting.mean)),
                     ("Working", seconds(measures.working.mean)),
                     ("Flow efficiency", percent(measures.flow_efficiency)),
                     ("Breach rate", percent(measures.breach_rate))]
            for j, (name, value) in enumerate(lines):
                y = top + 58 + j * 18
                out.append(_text(x + 10, y, name, "vs-line"))
                out.append(_text(x + BOX_W - 10, y, value, "vs-value", "end"))
            out.append(_lead_bar(x, top + BOX_H + 16, measures, longest))
        out.append("</g>")
        if i + 1 < n:
            following = steps[i + 1][2]
            if col + 1 < per_row:
                out.append(_arrow(x + BOX_W, top, following))
            else:  # the row ends: out at its right, in again at the next row's left
                out.append(_arrow(x + BOX_W, top, None, "next row"))
                out.append(_arrow(0.0, top + ROW_H, following))
    out.append("</svg>")
    return Markup("".join(out))


def _arrow(left: float, top: float, following: Measures | None, note: str = "") -> str:
    y = top + BOX_H / 2
    start, end = left + 6, left + GAP_W - 6
    gap = following.gap.mean if following is not None else None
    return "".join([
        f'<g class="vs-gap"><line x1="{start:.1f}" y1="{y:.1f}" x2="{end - 8:.1f}" y2="{y:.1f}"/>',
        f'<path d="M{end - 9:.1f},{y - 5:.1f} L{end:.1f},{y:.1f} L{end - 9:.1f},{y + 5:.1f} Z"/>',
        _text(left + GAP_W / 2, y - 10, "" if note else "gap", "vs-gap-name", "middle"),
        _text(left + GAP_W / 2, y + 20, note or seconds(gap), "vs-gap-value", "middle"),
        "</g>",
    ])


def _lead_bar(x: float, y: float, measures: Measures, longest: float) -> str:
    """Mean lead time as a bar: waiting then working, scaled to the longest step."""
    waiting, working = measures.waiting.mean or 0.0, measures.working.mean or 0.0
    total = waiting + working
    if longest <= 0 or total <= 0:
        return ""
    scale = BOX_W * min(1.0, total / longest) / total
    wait_w, work_w = waiting * scale, working * scale
    return "".join([
        f'<rect class="vs-wait" x="{x:.1f}" y="{y:.1f}" width="{wait_w:.1f}" height="14" '
        'fill="url(#hatch-value-stream)"/>',
        f'<rect class="vs-work" x="{x + wait_w:.1f}" y="{y:.1f}" width="{work_w:.1f}" '
        'height="14"/>',
        _text(x, y + 32, f"Lead {seconds(measures.lead.mean)}", "vs-lead"),
    ])


# --- XmR chart ----------------------------------------------------------------------------------
def special_points(chart: XmrChart) -> list[tuple[int, Point]]:
    """The special-cause points with their number in the chart (1, 2, ...)."""
    return [(i + 1, p) for i, p in enumerate(chart.special)]


def xmr_svg(chart: XmrChart, title: str, fmt: Format, floor: float | None = 0.0,
            width: int = 960, height: int = 300) -> Markup:
    """Weekly values joined by a line, the mean (solid) and the process limits (dashed), each
    special-cause point enlarged, coloured by its variation and numbered as in the text."""
    left, right, top, bottom = 16.0, 190.0, 20.0, 44.0
    lower = chart.lower_limit if floor is None else max(floor, chart.lower_limit)
    values = [p.value for p in chart.points]
    high = max([*values, chart.upper_limit])
    low = min([*values, lower])
    span = (high - low) or 1.0
    n = len(chart.points)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + 10 + i * (plot_w - 20) / max(n - 1, 1)

    def y(v: float) -> float:
        return top + (high - v) * plot_h / span

    flagged = special_points(chart)
    label = (f"{title}: {n} weeks, mean {fmt(chart.mean)}, process limits {fmt(lower)} to "
             f"{fmt(chart.upper_limit)}; " + (f"{len(flagged)} special-cause points"
                                              if flagged else "common-cause variation only"))
    out = _open("xmr", width, height, label, title)
    out.append(f'<rect class="plot" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}"/>')
    lines = ((chart.upper_limit, "limit", "Upper process limit"), (chart.mean, "mean", "Mean"),
             (lower, "limit", "Lower process limit"))
    labels = _spread([y(value) for value, _, _ in lines], 28)
    for (value, cls, name), at in zip(lines, labels, strict=True):
        out.append(f'<line class="{cls}" x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" '
                   f'y2="{y(value):.1f}"/>')
        out.append(_text(left + plot_w + 8, at - 2, name, "axis-name"))
        out.append(_text(left + plot_w + 8, at + 12, fmt(value), "axis-value"))
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    out.append(f'<path class="series" d="{path}"/>')
    for i in _ticks(n, 10):
        out.append(_text(x(i), height - bottom + 18, week_label(chart.points[i].label), "tick",
                         "middle"))
    numbers = {id(p): k for k, p in flagged}
    for i, point in enumerate(chart.points):
        rules = " ".join(r.value for r in point.rules)
        number = numbers.get(id(point))
        shown = f"Week of {week_label(point.label)}: {fmt(point.value)}"
        if number is None:
            out.append(f'<circle class="pt common" cx="{x(i):.1f}" cy="{y(point.value):.1f}" '
                       f'r="3.5"><title>{escape(shown)}</title></circle>')
            continue
        out.append(
            f'<g class="pt {point.variation}" data-rules="{rules}">'
            f'<circle cx="{x(i):.1f}" cy="{y(point.value):.1f}" r="7">'
            f"<title>{escape(shown)} (special cause {number})</title></circle>"
            + _text(x(i), y(point.value) - 11, str(number), "pt-number", "middle") + "</g>")
    out.append(_text(left + plot_w / 2, height - 6, "Week beginning (Monday)", "axis-name",
                     "middle"))
    out.append("</svg>")
    return Markup("".join(out))


# --- work in progress ---------------------------------------------------------------------------
def wip_svg(points: Sequence[WipPoint], predicted: float | None, title: str,
            width: int = 960, height: int = 320) -> Markup:
    """Open handovers at the end of each day (line), Little's law's predicted mean WIP (dashed),
    and under it each day's arrivals (solid bars) and completions (hatched bars)."""
    left, right, top = 16.0, 190.0, 20.0
    wip_h, bars_h, between = 150.0, 70.0, 40.0
    plot_w = width - left - right
    n = len(points)
    high = max([p.wip for p in points] + [predicted or 0.0, 1.0])
    flow_high = max([max(p.arrivals, p.completions) for p in points] + [1])

    def x(i: int) -> float:
        return left + 6 + i * (plot_w - 12) / max(n - 1, 1)

    def y(v: float) -> float:
        return top + (high - v) * wip_h / high

    observed = sum(p.wip for p in points) / n if n else 0.0
    label = (f"{title}: {n} days; open handovers from {points[0].wip if n else 0} to "
             f"{points[-1].wip if n else 0}, mean {observed:.1f}"
             + (f"; Little's law predicts {predicted:.1f}" if predicted is not None else ""))
    out = _open("wip", width, height, label, title, hatch=True)
    out.append(f'<rect class="plot" x="{left}" y="{top}" width="{plot_w}" height="{wip_h}"/>')
    if n:
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(i):.1f},{y(p.wip):.1f}"
                        for i, p in enumerate(points))
        out.append(f'<path class="series" d="{path}"/>')
    lines = [(high, "grid", f"Most {high:.0f}"),
             (observed, "mean", f"Observed mean {observed:.1f}")]
    if predicted is not None:
        lines.append((predicted, "limit", f"Little's law {predicted:.1f}"))
    labels = _spread([y(value) + 4 for value, _, _ in lines], 15)
    for (value, cls, name), at in zip(lines, labels, strict=True):
        out.append(f'<line class="{cls}" x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" '
                   f'y2="{y(value):.1f}"/>')
        out.append(_text(left + plot_w + 8, at, name, "axis-name"))
    base = top + wip_h + between + bars_h
    out.append(_text(left, top + wip_h + between - 8, "Arrivals and completions per day",
                     "axis-name"))
    bar = max(1.0, min(8.0, (plot_w - 12) / max(n, 1) / 2 - 0.5))
    for i, point in enumerate(points):
        for k, (count, cls) in enumerate(((point.arrivals, "arrivals"),
                                          (point.completions, "completions"))):
            if count:
                h = count * bars_h / flow_high
                fill = ' fill="url(#hatch-wip)"' if cls == "completions" else ""
                out.append(f'<rect class="{cls}" x="{x(i) - bar + k * bar:.1f}" '
                           f'y="{base - h:.1f}" width="{bar:.1f}" height="{h:.1f}"{fill}/>')
    out.append(f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{base}" y2="{base}"/>')
    out.append(_text(left + plot_w + 8, base - bars_h + 8, f"Most {flow_high} a day", "axis-name"))
    for i in _ticks(n, 8):
        out.append(_text(x(i), base + 18, week_label(points[i].day), "tick", "middle"))
    out.append("</svg>")
    return Markup("".join(out))
