"""Fixtures for the catalogue tests: a small valid definition as YAML-shaped data, and its folder."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

BROKEN = Path(__file__).parent / "broken"

DISCHARGE: dict[str, Any] = {
    "id": "hip-fracture-discharge",
    "version": 1,
    "title": "Hip fracture to home",
    "lead_provider": {"id": "northshire-ics", "name": "Northshire Integrated Care"},
    "roles": [
        {"id": "hospital", "title": "Acute trust", "providers": [{"id": "nsh", "name": "Northshire Hospital"}]},
        {
            "id": "community",
            "title": "Community services",
            "providers": [
                {"id": "ncs", "name": "Northshire Community Services"},
                {"id": "nsh", "name": "Northshire Hospital"},
            ],
        },
    ],
    "escalation": [
        {"at": "-PT2H", "action": "remind-provider"},
        {"at": "PT0S", "action": "alert-coordinator"},
        {"at": "PT4H", "action": "mark-breached"},
    ],
    "steps": [
        {
            "id": "surgery",
            "title": "Hip surgery",
            "role": "hospital",
            "sla": {"accept_within": "PT4H", "complete_within": "P2D"},
            "handover": [
                {"name": "route", "type": "coded", "codes": ["pathway-0", "pathway-1", "pathway-2"]},
                {"name": "weight_bearing", "type": "boolean"},
            ],
        },
        {
            "id": "discharge-summary",
            "title": "Discharge summary to GP",
            "role": "hospital",
            "after": ["surgery"],
            "sla": {"accept_within": "PT1H", "complete_within": "P1D"},
        },
        {
            "id": "home-therapy",
            "title": "Home therapy",
            "role": "community",
            "after": ["surgery"],
            "when": {"step": "surgery", "field": "route", "in": ["pathway-1", "pathway-2"]},
            "sla": {"accept_within": "PT2H", "complete_within": "P3D"},
            "recurrence": {"every": "P7D", "count": 3},
        },
        {
            "id": "review",
            "title": "Six-week review",
            "role": "community",
            "after": ["discharge-summary", "home-therapy"],
            "sla": {"accept_within": "P1D", "complete_within": "P2D"},
        },
    ],
}


@pytest.fixture
def raw() -> dict[str, Any]:
    """A fresh, mutable copy of a valid definition (4 steps, a condition, a recurrence)."""
    return copy.deepcopy(DISCHARGE)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, dict[str, Any]], Path]:
    """Write definition data as YAML into tmp_path/NAME and return the file."""

    def _write(name: str, data: dict[str, Any]) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return _write
