"""A one-step pathway and scenarios small enough to work out by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pathways.catalogue import Catalogue, parse_definition
from pathways.simulation.scenario import Variant, parse_scenario, variants

VISIT = """
id: home-visit
version: 1
title: Urgent home visit
lead_provider: {id: lead, name: Lead provider}
roles:
  - id: team
    title: Response team
    providers:
      - {id: team-a, name: Team A}
      - {id: team-b, name: Team B}
steps:
  - id: visit
    title: Visit at home
    role: team
    sla: {accept_within: PT30M, complete_within: PT2H%s}
    escalation:
      - {clock: accept, at: PT0S, action: alert-coordinator}
      - {clock: accept, at: PT15M, action: %s}
      - {clock: complete, at: PT0S, action: mark-breached}
    handover:
      - {name: outcome, type: coded, codes: [home, bed]}
  - id: follow-up
    title: Follow-up
    role: team
    after: [visit]
    when: {step: visit, field: outcome, equals: bed}
    sla: {accept_within: PT1H, complete_within: PT8H}
"""


def definition_text(third_rung: str = "reassign", complete_clock: str | None = None) -> str:
    clock = "" if complete_clock is None else f", complete_clock: {complete_clock}"
    return VISIT % (clock, third_rung)


def catalogue(third_rung: str = "reassign", complete_clock: str | None = None) -> Catalogue:
    return Catalogue([parse_definition(definition_text(third_rung, complete_clock), "test")])


def fixed(text: str) -> dict[str, str]:
    return {"kind": "fixed", "value": text}


def scenario(**overrides: Any) -> dict[str, Any]:
    """Ten arrivals, one every 30 minutes; Team A answers in 10 minutes and works 45."""
    data: dict[str, Any] = {
        "name": "hand-worked",
        "definition": "home-visit",
        "horizon": "PT5H",
        "warm_up": "PT0S",
        "drain": "P1D",
        "arrivals": {"every": "PT30M"},
        "providers": {
            "team-a": {"accept": fixed("PT10M"), "complete": fixed("PT45M")},
            "team-b": {"accept": fixed("PT10M"), "complete": fixed("PT45M")},
        },
    }
    data.update(overrides)
    return data


def resolve(data: dict[str, Any], **kwargs: Any) -> list[Variant]:
    return variants(parse_scenario(data), catalogue(**kwargs))


def write(tmp_path: Path, data: dict[str, Any], name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
