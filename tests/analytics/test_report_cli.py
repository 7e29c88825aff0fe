"""`pathways report` as the real console script on the hand-worked log: text, json and csv."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from activities.store import EventStore
from tests.analytics.eventlog import DEFINITION, write_log
from tests.ops.processes import PATHWAYS

PERIOD = ["--definition", DEFINITION, "--since", "2026-01-05", "--until", "2026-01-19"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("report-cli")
    store = EventStore(f"sqlite:///{directory / 'pathways.db'}")
    store.migrate()
    write_log(store)
    store.close()
    return directory


def pathways(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATHWAYS_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    return subprocess.run([PATHWAYS, "report", "--data-dir", str(data_dir), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_text_report_names_the_bottleneck_and_the_standard(data_dir: Path) -> None:
    done = pathways(data_dir, *PERIOD)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "Handovers 5 (3 completed in the period, 2 open at its end)" in text
    assert "Lead time p50 5h 00m, p90 7h 00m, max 7h 00m" in text
    assert "flow efficiency 44%" in text
    steps = text.split("Steps")[1].splitlines()
    assert steps[2].split()[0] == "gp-follow-up" and steps[2].split()[-1] == "96%"
    assert "2 hours (70%): 50% of 2 (threshold 70%): NOT met" in text


def test_json_report_is_the_api_shape(data_dir: Path) -> None:
    done = pathways(data_dir, *PERIOD, "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["overall"]["lead"]["p50"] == pytest.approx(5 * 3600, abs=0.01)
    assert [r["key"] for r in data["bottlenecks"]["providers"]] == ["C", "A", "B"]


def test_csv_report_has_a_row_per_group(data_dir: Path) -> None:
    done = pathways(data_dir, *PERIOD, "--format", "csv")
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0].split(",")
    assert len(set(header)) == len(header)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["level"], r["key"]) for r in rows] == [
        ("all", "all"), ("step", "gp-follow-up"), ("step", "urgent-response"),
        ("provider", "A"), ("provider", "B"), ("provider", "C")]
    assert rows[0]["lead_p90_s"] == str(7 * 3600) and rows[0]["breach_rate"] == "0.6"


def test_bad_period_is_a_usage_error(data_dir: Path) -> None:
    done = pathways(data_dir, "--since", "2026-02-01", "--until", "2026-01-01")
    assert done.returncode == 2 and "since must be before until" in done.stderr
    done = pathways(data_dir, "--since", "last tuesday")
    assert done.returncode == 2
