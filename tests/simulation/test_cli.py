"""`pathways simulate` as the real console script: text and JSON answers, refusals (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.ops.processes import PATHWAYS
from tests.simulation.support import definition_text, scenario, write


def _simulate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir(exist_ok=True)
    (catalogue / "home-visit.yaml").write_text(definition_text(), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]),
               PATHWAYS_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run(
        [PATHWAYS, "--catalogue-dir", str(catalogue), "simulate", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )


def _cut(tmp_path: Path) -> Path:
    return write(tmp_path, scenario(changes=[{
        "name": "capacity-cut", "description": "Team A alone, one at a time",
        "providers": {"team-a": {"capacity": 1}}, "remove_providers": ["team-b"],
    }], standards=[{"name": "2-hour", "step": "visit", "within": "PT2H", "target": 0.7}]))


def test_json_answer_side_by_side(tmp_path: Path) -> None:
    done = _simulate(tmp_path, str(_cut(tmp_path)), "--replications", "2", "--seed", "4",
                     "--format", "json", "--workers", "1")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["replications"] == 2 and answer["seed"] == 4
    baseline, cut = answer["variants"]
    assert (baseline["name"], cut["name"]) == ("baseline", "capacity-cut")
    assert baseline["measures"]["step|visit|sla_pct"]["mean"] == 100
    assert cut["measures"]["step|visit|sla_pct"] == {"mean": 30.0, "low": 30.0, "high": 30.0,
                                                     "n": 2}
    assert cut["difference_from_baseline"]["step|visit|breaches_per_100"]["mean"] == 70
    assert cut["measures"]["standard|2-hour|attainment_pct"]["mean"] == 30
    assert answer["targets_pct"] == {"2-hour": 70.0}
    assert "provider|team-a|wip" in cut["weekly"]


def test_text_answer_side_by_side(tmp_path: Path) -> None:
    done = _simulate(tmp_path, str(_cut(tmp_path)), "--replications", "2", "--workers", "2")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "baseline" in text and "capacity-cut" in text
    assert "2-hour (target 70%)" in text
    visit = text[text.index("Step visit"):]
    line = next(ln for ln in visit.splitlines() if ln.strip().startswith("on time (%)"))
    assert "100" in line and "30.0 [30.0, 30.0] (-70.0 ±0.00)" in line


def test_a_bad_scenario_is_refused_with_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, scenario(providers={"nobody": {"capacity": 0}}))
    done = _simulate(tmp_path, str(path))
    assert done.returncode == 2
    assert "capacity" in done.stderr and done.stdout == ""
    missing = _simulate(tmp_path, str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2 and "cannot read scenario" in missing.stderr
