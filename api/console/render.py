"""What the console's templates show: durations and instants for people, SLA badges, the step
graph as server-side SVG (no client-side diagram library), and the handover timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from markupsafe import Markup

from pathways.graph import critical_path, dependency_graph, planned_duration, topological_order
from pathways.model import PathwayDefinition

SLA_BADGES: dict[str, tuple[str, str]] = {
    "breached": ("✕", "Breached"),
    "at-risk": ("▲", "At risk"),
    "on-track": ("✓", "On track"),
    "escalated": ("!", "Escalated"),
    "no-due": ("–", "No due time"),
}
"""SLA state as icon and text (never colour alone); the colour comes from the CSS class."""


def duration(value: timedelta | None) -> str:
    """A duration for people: '45 s', '22 min', '3 h 5 min', '2 d 4 h'."""
    if value is None:
        return "–"
    seconds = abs(round(value.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


def due_text(value: timedelta | None) -> str:
    """Time to the next due point: 'in 1 h 20 min' or 'overdue 15 min'."""
    if value is None:
        return "no due time"
    if value.total_seconds() < 0:
        return f"overdue {duration(value)}"
    return f"in {duration(value)}"


def instant(value: datetime | None) -> str:
    """An instant in UTC, short: '23 Nov 15:04 UTC'."""
    if value is None:
        return "–"
    return value.astimezone(UTC).strftime("%d %b %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()


def output_value(value: Any) -> Markup:
    """A delivered handover value for people: documents as links (http(s) only), booleans as
    Yes/No, lists joined; everything escaped."""
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        url, title = value["url"], str(value.get("title") or value["url"])
        if url.startswith(("https://", "http://")):
            return Markup('<a href="{}" rel="noopener noreferrer">{}</a>').format(url, title)
        return Markup("{}").format(title)
    if isinstance(value, bool):
        return Markup("Yes" if value else "No")
    if isinstance(value, list):
        return Markup(", ").join(output_value(item) for item in value)
    return Markup("{}").format(value)


def status_text(value: str) -> str:
    return value.replace("-", " ").capitalize()


@dataclass
class TimelineItem:
    """One handover (or a step still to come) on the pathway's timeline."""

    key: str
    title: str
    provider: str
    status: str
    business_status: str
    ready_at: datetime | None
    accepted_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    complete_by: datetime | None
    accept_by: datetime | None
    waiting: timedelta | None
    working: timedelta | None
    planned: timedelta | None
    attempts: list[Any]
    output: dict[str, Any]
    refused: int
    live: bool
    bar: dict[str, float]


def _bar(
    start: datetime, span: float, item: dict[str, datetime | None], now: datetime
) -> dict[str, float]:
    """Percent positions on the pathway's time axis: ready, began, end and the due mark."""

    def pos(moment: datetime | None) -> float:
        if moment is None:
            return -1.0
        return max(0.0, min(100.0, (moment - start).total_seconds() / span * 100))

    ready = item["ready"]
    began = item["began"]
    end = item["end"] or now
    return {
        "ready": pos(ready),
        "began": pos(began) if began else pos(end),
        "end": pos(end),
        "due": pos(item["due"]),
    }


def timeline(state: Any, now: datetime) -> list[TimelineItem]:
    """Every handover in ready order with waiting (ready to accepted/started) and working
    (started to completed, or to now) times, then the steps not reached yet with their planned
    durations: past, current and planned steps on one axis."""
    definition = state.definition
    handovers = sorted(state.handovers.values(), key=lambda h: (h.ready_at, h.id))
    ends = [h.completed_at or h.ended_at or now for h in handovers]
    dues = [h.complete_by for h in handovers]
    start = state.started_at
    finish = max([now if not state.ended_at else state.ended_at, *ends, *dues])
    span = max((finish - start).total_seconds(), 1.0)
    items: list[TimelineItem] = []
    for h in handovers:
        began = h.started_at or h.accepted_at
        end = h.completed_at or h.ended_at
        open_ = end is None
        waiting = (began or end or now) - h.ready_at
        working = None if began is None else (end or now) - began
        step = definition.step(h.step_id) if hasattr(definition, "step") else None
        items.append(
            TimelineItem(
                key=h.id,
                title=step.title if step is not None else h.step_id,
                provider=h.provider_id,
                status=str(h.status.value if hasattr(h.status, "value") else h.status),
                business_status=str(getattr(h.business_status, "value", h.business_status)),
                ready_at=h.ready_at,
                accepted_at=h.accepted_at,
                started_at=h.started_at,
                completed_at=h.completed_at,
                complete_by=h.complete_by,
                accept_by=h.accept_by,
                waiting=waiting,
                working=working,
                planned=None,
                attempts=list(h.attempts),
                output=dict(h.output),
                refused=h.refused_deliveries,
                live=open_ and not state.is_finished,
                bar=_bar(
                    start,
                    span,
                    {"ready": h.ready_at, "began": began, "end": end, "due": h.complete_by},
                    now,
                ),
            )
        )
    reached = {h.step_id for h in handovers}
    for step_id in topological_order(definition):
        step = definition.step(step_id)
        progress = state.steps.get(step_id)
        status = getattr(progress, "status", None)
        status = str(getattr(status, "value", status or "waiting"))
        if step_id in reached or status not in ("waiting",) or state.is_finished:
            continue
        items.append(
            TimelineItem(
                key=f"{step_id}.planned",
                title=step.title,
                provider=step.role,
                status="planned",
                business_status="",
                ready_at=None,
                accepted_at=None,
                started_at=None,
                completed_at=None,
                complete_by=None,
                accept_by=None,
                waiting=None,
                working=None,
                planned=planned_duration(step),
                attempts=[],
                output={},
                refused=0,
                live=False,
                bar={"ready": -1.0, "began": -1.0, "end": -1.0, "due": -1.0},
            )
        )
    return items


STEP_STATES = {
    "done": ("✓", "Done"),
    "active": ("●", "Open"),
    "waiting": ("○", "Waiting"),
    "skipped": ("⤼", "Skipped"),
    "planned": ("○", "Planned"),
}

NODE_W, NODE_H, GAP_X, GAP_Y = 230, 64, 52, 22


def step_graph_svg(definition: PathwayDefinition, states: dict[str, str] | None = None) -> str:
    """The step graph as an accessible SVG: layered left to right by dependency depth, each
    step a box with its title, its state as icon and text (class gives the colour), arrows
    from each dependency to its dependent. Without `states`, the critical path is marked."""
    graph = dependency_graph(definition)
    order = topological_order(definition)
    layer: dict[str, int] = {}
    for node in order:
        layer[node] = max((layer[p] + 1 for p in graph.predecessors(node)), default=0)
    columns: dict[int, list[str]] = {}
    for node in order:
        columns.setdefault(layer[node], []).append(node)
    tallest = max(len(nodes) for nodes in columns.values())
    width = len(columns) * (NODE_W + GAP_X) - GAP_X + 8
    height = tallest * (NODE_H + GAP_Y) - GAP_Y + 8
    place: dict[str, tuple[float, float]] = {}
    for column, nodes in columns.items():
        offset = (tallest - len(nodes)) * (NODE_H + GAP_Y) / 2
        for row, node in enumerate(nodes):
            place[node] = (4 + column * (NODE_W + GAP_X), 4 + offset + row * (NODE_H + GAP_Y))
    critical = set(critical_path(definition).steps) if states is None else set()
    parts = [
        f'<svg class="graph" role="img" viewBox="0 0 {width} {height}" '
        f'style="width: 100%; max-width: {width}px; min-width: {min(width, 760)}px; height: auto" '
        f'xmlns="http://www.w3.org/2000/svg" aria-labelledby="graph-title">',
        f'<title id="graph-title">Steps of {escape(definition.title)}</title>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrowhead"/></marker></defs>',
    ]
    for source, target in graph.edges:
        x1, y1 = place[source]
        x2, y2 = place[target]
        sx, sy, tx, ty = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
        mid = (sx + tx) / 2
        parts.append(
            f'<path class="edge" d="M{sx},{sy} C{mid},{sy} {mid},{ty} {tx - 2},{ty}" '
            'marker-end="url(#arrow)"/>'
        )
    for node in order:
        step = definition.step(node)
        x, y = place[node]
        state = (states or {}).get(node, "planned" if states is not None else "")
        if states is None:
            label = (
                f"{'Critical path · ' if node in critical else ''}{_short(planned_duration(step))}"
            )
            css = "critical" if node in critical else "plain"
        else:
            icon, text = STEP_STATES.get(state, ("○", state.capitalize()))
            label = f"{icon} {text}"
            css = state
        dashed = " conditional" if step.when is not None else ""
        title = step.title if len(step.title) <= 27 else step.title[:26] + "…"
        parts.append(
            f'<g class="node {css}{dashed}"><title>{escape(step.title)} ({escape(node)}): '
            f"{escape(label)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="8"/>'
            f'<text x="{x + 10}" y="{y + 24}" class="node-title">{escape(title)}</text>'
            f'<text x="{x + 10}" y="{y + 46}" class="node-state">{escape(label)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _short(value: timedelta) -> str:
    return duration(value)


def now() -> datetime:
    return datetime.now(UTC)
