"""`pathways simulate` as the real console script: text and JSON answers, refusals (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.ops.processes import PATHWAYS
from tests.simulation.support import definition_text, scenario, write


def _simulate(tmp_path: Path, *args: str, event_store: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir(exist_ok=True)
    (catalogue / "home-visit.yaml").write_text(definition_text(), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]),
               PATHWAYS_DATA_DIR=str(tmp_path / "data"))
    if event_store:
        env["PATHWAYS_EVENT_STORE_URL"] = event_store
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
    verdict = next(ln for ln in text.splitlines() if ln.strip().startswith("verdict"))
    assert verdict.split()[1:] == ["met", "missed"]
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


def test_fit_from_a_real_event_store(tmp_path: Path) -> None:
    """History written to a SQLite event store the way the worker writes it; `--fit` reads it,
    reports the fit, writes the fitted scenario and simulates with it."""
    from itertools import groupby

    from activities.store import EventStore
    from pathways.events import PathwayRow, RecordBatch
    from pathways.simulation.loop import Replication
    from pathways.simulation.scenario import load_scenario
    from tests.simulation.support import resolve

    data = scenario(horizon="P5D", warm_up="PT0S", arrivals={"per_day": 20})
    replication = Replication(resolve(data)[0], 0, seed=3, keep_events=True)
    replication.run()
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    store.migrate()
    events = sorted(replication.events, key=lambda e: (e.pathway_id, e.seq))
    for pathway_id, group in groupby(events, key=lambda e: e.pathway_id):
        batch = list(group)
        row = PathwayRow(pathway_id=pathway_id, definition_id="home-visit", definition_version=1,
                         lead_provider="lead", status="completed", sla_state="on-track",
                         open_steps=[], open_providers=[], open_step_titles=[],
                         started_at=batch[0].at, updated_at=batch[-1].at)
        store.record(RecordBatch(events=batch, pathway=row))
    store.close()

    fitted = tmp_path / "fitted.yaml"
    done = _simulate(tmp_path, str(write(tmp_path, data)), "--fit", "--since", "2026-01-01",
                     "--fitted", str(fitted), "--validate", "--replications", "2",
                     "--format", "json",
                     "--workers", "1", event_store=url)
    assert done.returncode == 0, done.stderr
    assert "fit: arrivals:" in done.stderr and "fit: team-a:" in done.stderr
    assert "validation: fitted on pathways started before" in done.stderr
    assert "visit: n " in done.stderr and "lead W1" in done.stderr
    assert json.loads(done.stdout)["variants"][0]["name"] == "baseline"
    team_a = load_scenario(fitted).providers["team-a"]
    assert team_a.accept.kind == "empirical" and team_a.capacity is None

    empty = _simulate(tmp_path, str(write(tmp_path, data)), "--fit", "--since", "2030-01-01",
                      event_store=url)
    assert empty.returncode == 2 and "no events of home-visit" in empty.stderr
