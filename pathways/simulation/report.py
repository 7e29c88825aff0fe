"""The answer as text: baseline and changes side by side, each as `mean [95% CI]`, and each
change's paired difference from the baseline in brackets after it."""

from __future__ import annotations

import math
from collections.abc import Callable

from pathways.simulation.metrics import Estimate
from pathways.simulation.runner import Column, Comparison

STEP_MEASURES = (
    ("sla_pct", "on time (%)"),
    ("breaches_per_100", "breaches /100"),
    ("escalations_per_100", "escalations /100"),
    ("reassignments_per_100", "reassignments /100"),
    ("lead_p50_h", "lead p50 (h)"),
    ("lead_p90_h", "lead p90 (h)"),
    ("wait_p50_h", "waiting p50 (h)"),
    ("wait_p90_h", "waiting p90 (h)"),
    ("queue_p90_h", "queued p90 (h)"),
)
PROVIDER_MEASURES = (
    ("wip_mean", "WIP mean"),
    ("queue_mean", "queue mean"),
    ("queue_max", "queue max"),
    ("utilisation_pct", "utilisation (%)"),
)
PATHWAY_MEASURES = (
    ("started", "measured pathways"),
    ("lead_p50_h", "lead p50 (h)"),
    ("lead_p90_h", "lead p90 (h)"),
    ("open_mean", "open pathways (mean)"),
    ("unfinished", "unfinished at end"),
)


_NONE = Estimate(0.0, None, 0)


def render(comparison: Comparison) -> str:
    columns = comparison.columns
    lines = [
        f"Scenario {comparison.scenario}: {comparison.replications} replications, seed "
        f"{comparison.seed}; mean [95% CI]; changes: (difference from baseline, paired)",
    ]
    for column in columns[1:]:
        if column.description:
            lines.append(f"  {column.name}: {column.description}")
    rows: list[tuple[str, list[str]]] = []
    for name, target in comparison.targets.items():
        key = f"standard|{name}|attainment_pct"
        rows.append((f"{name} (target {target:g}%)", _cells(columns, key)))
        rows.append(("  verdict", [_verdict(c.estimates.get(key), target) for c in columns]))
    if rows:
        lines += ["", "National standards"] + _table(columns, rows)
    steps = sorted({k.split("|")[1] for c in columns for k in c.estimates if k.startswith("step|")},
                   key=_step_order(columns))
    for step in steps:
        if not any(c.estimates.get(f"step|{step}|handovers", _NONE).mean for c in columns):
            continue  # never ran (a condition skipped it): nothing to show
        rows = [(label, _cells(columns, f"step|{step}|{m}")) for m, label in STEP_MEASURES]
        handovers = columns[0].estimates.get(f"step|{step}|handovers")
        count = "" if handovers is None else f" ({handovers.mean:.0f} handovers a replication)"
        lines += ["", f"Step {step}{count}"] + _table(columns, rows)
    providers = sorted({k.split("|")[1] for c in columns for k in c.estimates
                        if k.startswith("provider|")})
    for provider in providers:
        rows = [(label, _cells(columns, f"provider|{provider}|{m}"))
                for m, label in PROVIDER_MEASURES
                if any(f"provider|{provider}|{m}" in c.estimates for c in columns)]
        lines += ["", f"Provider {provider}"] + _table(columns, rows)
    rows = [(label, _cells(columns, f"pathways|all|{m}")) for m, label in PATHWAY_MEASURES]
    lines += ["", "Pathways"] + _table(columns, rows)
    faults = columns[0].estimates.get("engine|all|refused_commands")
    if faults is not None and faults.mean:
        lines += ["", f"warning: the engine refused {faults.mean:g} simulated commands a "
                      "replication (a simulator fault)"]
    return "\n".join(lines) + "\n"


def verdict(value: Estimate | None, target: float) -> str | None:
    """'met' when the whole 95% interval is at or above the target, 'missed' when it is below,
    'uncertain' when it spans the target; None without an interval."""
    if value is None or value.low is None or value.high is None:
        return None
    if value.low >= target:
        return "met"
    if value.high < target:
        return "missed"
    return "uncertain"


def _verdict(value: Estimate | None, target: float) -> str:
    found = verdict(value, target)
    if found is None:
        return "-"
    return "uncertain (CI spans the target)" if found == "uncertain" else found


def _step_order(columns: list[Column]) -> Callable[[str], int]:
    order = {s: i for i, s in enumerate(
        k.split("|")[1] for k in columns[0].estimates if k.endswith("|handovers"))}
    return lambda step: order.get(step, len(order))


def _cells(columns: list[Column], key: str) -> list[str]:
    cells = []
    for column in columns:
        value = column.estimates.get(key)
        text = _estimate(value)
        difference = column.differences.get(key)
        if difference is not None and value is not None:
            text += f" ({_signed(difference)})"
        cells.append(text)
    return cells


def _estimate(value: Estimate | None) -> str:
    if value is None or math.isnan(value.mean):
        return "-"
    if value.half_width is None:
        return _num(value.mean)
    return f"{_num(value.mean)} [{_num(value.mean - value.half_width)}, " \
           f"{_num(value.mean + value.half_width)}]"


def _signed(value: Estimate) -> str:
    if math.isnan(value.mean):
        return "-"
    text = f"{'+' if value.mean >= 0 else ''}{_num(value.mean)}"
    return text if value.half_width is None else f"{text} ±{_num(value.half_width)}"


def _num(x: float) -> str:
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _table(columns: list[Column], rows: list[tuple[str, list[str]]]) -> list[str]:
    header = ["", *[c.name for c in columns]]
    body = [[label, *cells] for label, cells in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *body]]
