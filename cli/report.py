"""`pathways report`: where patients wait, whose step breaches most, and is it getting better.

Reads the event store only (no Temporal needed). Text by default (a table per step and per
provider); `--format json` prints the API's /api/analytics/report shape; `--format csv` one row
per group (all, each step, each provider) with durations in seconds. Exit codes: 0 done,
1 the event store is unavailable, 2 a usage error (a bad date, since not before until).
"""

from __future__ import annotations

import csv
import io
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, load_settings
from pathways.analytics.measures import Distribution
from pathways.analytics.report import Measures, Report
from pathways.analytics.spc import XmrChart
from pathways.dates import utc_instant


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    CSV = "csv"


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return utc_instant(value)
    except ValueError:
        raise typer.BadParameter(f"{name} must be an ISO date or date-time") from None


@app.command("report")
def report(
    ctx: typer.Context,
    definition: Annotated[str | None, typer.Option(help="definition id (default: all)")] = None,
    provider: Annotated[str | None, typer.Option(help="only handovers this provider holds")] = None,
    since: Annotated[str | None, typer.Option(help="from, ISO date or date-time (default: "
                                                   "13 weeks before until)")] = None,
    until: Annotated[str | None, typer.Option(help="to, exclusive (default: now)")] = None,
    output: Annotated[Format, typer.Option("--format", help="text, json or csv")] = Format.TEXT,
    event_store_url: Annotated[
        str | None, typer.Option("--event-store-url", help="PATHWAYS_EVENT_STORE_URL")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="PATHWAYS_DATA_DIR")] = None,
) -> None:
    """Lean flow report: lead, waiting and working time, SLA, bottlenecks, WIP, SPC."""
    from sqlalchemy.exc import SQLAlchemyError

    from activities.analytics import flow_report
    from activities.store import EventStore

    settings = load_settings(ctx, event_store_url=event_store_url, data_dir=data_dir)
    if settings.event_store_url is None and not (settings.data_dir / "pathways.db").exists():
        typer.echo(f"error: no event store in {settings.data_dir}: give --data-dir or "
                   "--event-store-url of the running stack", err=True)
        raise typer.Exit(1)
    start, end = _instant(since, "--since"), _instant(until, "--until")
    store = EventStore(settings.event_store)
    try:
        data = flow_report(store, definition, provider, start, end)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except SQLAlchemyError as error:
        typer.echo(f"error: event store unavailable ({type(error).__name__})", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    if output is Format.JSON:
        sys.stdout.write(data.model_dump_json(indent=2) + "\n")
    elif output is Format.CSV:
        sys.stdout.write(to_csv(data))
    else:
        sys.stdout.write(to_text(data))


def duration(seconds: float | None) -> str:
    """Readable duration: 45s, 12m, 5h 00m, 2d 03h."""
    if seconds is None:
        return "-"
    value = int(round(seconds))
    if value < 60:
        return f"{value}s"
    minutes, hours = value // 60, value // 3600
    if value < 3600:
        return f"{minutes}m"
    if value < 86400:
        return f"{hours}h {minutes % 60:02d}m"
    return f"{value // 86400}d {hours % 24:02d}h"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                       for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def to_text(data: Report) -> str:
    o = data.overall
    scope = data.definition_id or "all definitions"
    if data.provider_id:
        scope += f", provider {data.provider_id}"
    out = [
        f"Flow report: {scope}, {data.since:%Y-%m-%d %H:%M} to {data.until:%Y-%m-%d %H:%M} UTC",
        f"Handovers {o.handovers} ({o.completed} completed in the period, {o.open} open at its "
        f"end); pathways {data.pathways.started} started, {data.pathways.completed} completed "
        f"(lead p50 {duration(data.pathways.lead.p50)})",
        f"Lead time p50 {duration(o.lead.p50)}, p90 {duration(o.lead.p90)}, max "
        f"{duration(o.lead.max)}; waiting p50 {duration(o.waiting.p50)}, working p50 "
        f"{duration(o.working.p50)}; flow efficiency {percent(o.flow_efficiency)}",
        f"Waiting by state (mean per completed handover): in transit "
        f"{duration(o.states.in_transit)}, queued {duration(o.states.queued)}, blocked on hold "
        f"{duration(o.states.blocked)}; working {duration(o.states.working)}; handover gap p50 "
        f"{duration(o.gap.p50)}",
        f"SLA attainment {percent(o.attainment)}, breach rate {percent(o.breach_rate)}, "
        f"escalations {_num(o.escalations_per_100)} per 100 handovers, reassignments "
        f"{o.reassignments}, rejections {o.rejections}, refused deliveries "
        f"{o.refused_deliveries}, first-time-right {percent(o.first_time_right)}",
        "",
        "Steps (bottleneck first: share of all waiting)",
    ]
    shares = {r.key: r.share for r in data.bottlenecks.steps}
    steps = sorted(data.steps, key=lambda m: -shares.get(m.key, 0))
    out.append(_table([
        ["step", "handovers", "done", "lead p50", "lead p90", "waiting p50", "working p50",
         "flow eff", "breach", "waiting share"],
        *([m.key, str(m.handovers), str(m.completed), duration(m.lead.p50), duration(m.lead.p90),
           duration(m.waiting.p50), duration(m.working.p50), percent(m.flow_efficiency),
           percent(m.breach_rate), percent(shares.get(m.key))] for m in steps),
    ]))
    out.append("Providers (scorecard)")
    pshares = {r.key: r.share for r in data.bottlenecks.providers}
    out.append(_table([
        ["provider", "handovers", "done", "lead p50", "attainment", "breach", "esc/100",
         "reassigned", "rejected", "refused", "first-time-right", "waiting share"],
        *([m.key, str(m.handovers), str(m.completed), duration(m.lead.p50), percent(m.attainment),
           percent(m.breach_rate), _num(m.escalations_per_100), str(m.reassignments),
           str(m.rejections), str(m.refused_deliveries), percent(m.first_time_right),
           percent(pshares.get(m.key))] for m in data.providers),
    ]))
    flow = data.flow
    line = (f"WIP now {flow.wip_now}; arrivals {_num(flow.arrivals_per_day)}/day, completions "
            f"{_num(flow.completions_per_day)}/day")
    if flow.little is not None:
        departure = flow.little.departure
        line += (f"; Little's law: WIP {flow.little.predicted_wip:.1f} expected, "
                 f"{flow.little.observed_mean_wip:.1f} observed"
                 + ("" if departure is None else f" ({departure:+.0%})"))
    out += [line, ""]
    out.append(_spc("Weekly lead time", data.spc.lead_time, duration))
    out.append(_spc("Weekly breach rate", data.spc.breach_rate, percent))
    for item in data.standards:
        verdict = "-" if item.met is None else ("met" if item.met else "NOT met")
        out.append(f"{item.standard.title}: {percent(item.attainment)} of {item.handovers} "
                   f"(threshold {percent(item.standard.threshold)}): {verdict}")
    return "\n".join(out) + "\n"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _spc(title: str, chart: XmrChart | None, show: object) -> str:
    if chart is None:
        return f"{title}: fewer than two weeks of completions, no chart"
    fmt = show if callable(show) else str
    special = [f"{p.label} {', '.join(r.value for r in p.rules)} ({p.variation})"
               for p in chart.special]
    return (f"{title}: mean {fmt(chart.mean)}, process limits {fmt(max(chart.lower_limit, 0))} to "
            f"{fmt(chart.upper_limit)}; " + ("special causes: " + "; ".join(special)
                                             if special else "common cause variation only"))


CSV_HEADER = ["level", "key", "handovers", "completed", "open",
              *(f"{name}_{stat}" for name in ("lead", "waiting", "working", "gap")
                for stat in ("mean_s", "p50_s", "p90_s", "max_s")),
              "state_in_transit_mean_s", "state_queued_mean_s", "state_working_mean_s",
              "state_blocked_mean_s",
              "flow_efficiency", "waiting_s", "waiting_share", "sla_attained", "breached",
              "attainment", "breach_rate", "escalations", "escalations_per_100",
              "reassignments", "rejections", "refused_deliveries", "first_time_right"]


def to_csv(data: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    steps = {r.key: r.share for r in data.bottlenecks.steps}
    providers = {r.key: r.share for r in data.bottlenecks.providers}
    rows = [("all", data.overall, 1.0 if data.overall.waiting_seconds else None),
            *(("step", m, steps.get(m.key)) for m in data.steps),
            *(("provider", m, providers.get(m.key)) for m in data.providers)]
    for level, m, share in rows:
        writer.writerow(_csv_row(level, m, share))
    return buffer.getvalue()


def _csv_row(level: str, m: Measures, share: float | None) -> list[object]:
    def dist(d: Distribution) -> list[object]:
        return [_cell(d.mean), _cell(d.p50), _cell(d.p90), _cell(d.max)]

    s = m.states
    return [level, m.key, m.handovers, m.completed, m.open, *dist(m.lead), *dist(m.waiting),
            *dist(m.working), *dist(m.gap), _cell(s.in_transit), _cell(s.queued),
            _cell(s.working), _cell(s.blocked), _cell(m.flow_efficiency, 4),
            _cell(m.waiting_seconds), _cell(share, 4), m.sla_attained, m.breached,
            _cell(m.attainment, 4), _cell(m.breach_rate, 4), m.escalations,
            _cell(m.escalations_per_100, 2), m.reassignments, m.rejections,
            m.refused_deliveries, _cell(m.first_time_right, 4)]


def _cell(value: float | None, digits: int = 0) -> object:
    if value is None:
        return ""
    return round(value, digits) if digits else round(value)
