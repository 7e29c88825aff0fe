"""Every shipped definition runs through the simulator on the real engine: rejections,
failures, refused deliveries and recurrences included, and no command the engine refuses."""

from __future__ import annotations

import pytest

from pathways.catalogue import load_catalogue
from pathways.settings import SHIPPED_CATALOGUE
from pathways.simulation.loop import Replication
from pathways.simulation.scenario import parse_scenario, variants

CATALOGUE = load_catalogue(SHIPPED_CATALOGUE)


@pytest.mark.parametrize("definition_id", [d.id for d in CATALOGUE])
def test_shipped_definition_simulates_to_the_end(definition_id: str) -> None:
    data = {
        "name": definition_id, "definition": definition_id, "horizon": "P40D",
        "warm_up": "P0D", "drain": "P400D", "arrivals": {"per_day": 3},
        "default": {
            "capacity": 2, "accept": {"kind": "exponential", "mean": "PT2H"},
            "complete": {"kind": "exponential", "mean": "P1D"},
            "reject": 0.1, "fail": 0.05, "non_conforming": 0.1,
        },
    }
    if definition_id == "hip-replacement-d2a":  # DHSC planning assumptions, ~50/45/4/1
        data["outcomes"] = [{"step": "discharge-assessment", "field": "d2a_pathway",
                             "shares": {0: 0.5, 1: 0.45, 2: 0.04, 3: 0.01}}]
    [variant] = variants(parse_scenario(data), CATALOGUE)
    s = Replication(variant, 0, seed=2).run().scalars
    assert s["pathways|all|started"] > 80
    assert s["pathways|all|unfinished"] == 0
    assert s["engine|all|refused_commands"] == 0
    assert s["handovers|all|reassignments_per_100"] > 0
    if definition_id == "hip-replacement-d2a":
        assert 35 < s["step|home-welfare-call|per_100_pathways"] < 65
        assert 30 < s["step|reablement-at-home|per_100_pathways"] < 60
    if definition_id == "ltc-annual-contract":
        assert s["step|quarterly-review|per_100_pathways"] == 400  # recurs 4 times
