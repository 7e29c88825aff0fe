"""The example scenarios shipped in examples/scenarios resolve against the shipped catalogue
and run (a short horizon here) with no command refused by the engine."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pathways.catalogue import load_catalogue
from pathways.settings import SHIPPED_CATALOGUE
from pathways.simulation.loop import Replication
from pathways.simulation.scenario import load_scenario, variants

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_scenario_runs(path: Path) -> None:
    scenario = load_scenario(path)
    short = scenario.model_copy(update={"horizon": timedelta(days=14), "warm_up": timedelta(0)})
    columns = variants(short, load_catalogue(SHIPPED_CATALOGUE))
    assert [c.name for c in columns] == ["baseline", *(c.name for c in scenario.changes)]
    for column in columns:
        s = Replication(column, 0, seed=1).run().scalars
        assert s["pathways|all|started"] > 0
        assert s["engine|all|refused_commands"] == 0
