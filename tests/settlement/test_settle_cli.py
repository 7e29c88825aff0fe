"""`pathways settle` run as the real console script on a SQLite event store holding real engine
runs: statements in text, JSON and CSV, one provider, an outcome recorded, a quarter closed
(alliance shares booked), refusals, and the replay check."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities.store import EventStore
from pathways.settlement import Period
from tests.ops.processes import PATHWAYS
from tests.settlement.support import DAY, HOUR, MINUTE, Scenario, record, response_output

Q3 = datetime(2026, 7, 6, 9, 0, tzinfo=UTC)  # a Monday in 2026-Q3, long over
UCR, GP = "elmshire-ucr-central", "elmshire-central-pcn"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'pathways.db'}"
    store = EventStore(url)
    store.migrate()
    one = Scenario("pw-1", start=Q3).simple()
    two = Scenario("pw-2", start=Q3 + DAY)
    two.accept("urgent-response", Q3 + DAY + 5 * MINUTE)
    late = Q3 + DAY + 3 * HOUR
    two.complete("urgent-response", late, response_output(late))
    for s in (one, two):
        for batch in s.batches:
            record(store, s, batch)
    store.close()
    return {**os.environ, "PATHWAYS_EVENT_STORE_URL": url,
            "PATHWAYS_DATA_DIR": str(tmp_path), "PATHWAYS_LOG_FORMAT": "json"}


def settle(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PATHWAYS, "settle", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_statements_outcome_close_and_verify(env: dict[str, str]) -> None:
    done = settle(env, "outcome", "pw-1", "--score", "very-good", "--as", "finance-lead")
    assert done.returncode == 0, done.stderr
    assert "outcome:pw-1:1" in done.stdout

    text = settle(env, "--period", "2026-Q3", "--provider", UCR)
    assert text.returncode == 0, text.stderr
    assert f"Statement 2026-Q3 for {UCR} (open (provisional))" in text.stdout
    assert "GBP 180.00" in text.stdout and "top-up" in text.stdout
    # pw-1: 18,000 + 2,500 - 1,800 + 900 (no answer by its deadline in July: the default,
    # 50%); pw-2 late and still open: 18,000 - 1,800. The 'very good' recorded today releases
    # the other 900 in today's quarter, as a true-up of 2026-Q3.
    assert "TOTAL" in text.stdout and "GBP 358.00" in text.stdout
    assert ("not paid: top-up GBP 25.00 on pw-2 urgent-response.1: late: patient's clock "
            "breached <- pw-2:") in text.stdout
    today = settle(env, "--period", str(Period.containing(datetime.now(UTC))), "--provider", UCR)
    assert "[true-up of 2026-Q3]" in today.stdout and "GBP 9.00" in today.stdout

    closed = settle(env, "close", "--period", "2026-Q3", "--as", "finance-lead")
    assert closed.returncode == 0, closed.stderr
    assert "alliance shares" in closed.stdout

    data = json.loads(settle(env, "--period", "2026-Q3", "--format", "json").stdout)
    by_provider = {s["provider_id"]: s for s in data}
    assert set(by_provider) >= {UCR, GP}
    assert all(s["closed"] for s in data)
    ucr = by_provider[UCR]
    assert ucr["totals"]["base"] == 36000 and ucr["totals"]["top-up"] == 2500
    assert "alliance-share" in ucr["totals"]
    assert all(line["caused_by"] for line in ucr["lines"])

    rows = list(csv.DictReader(io.StringIO(
        settle(env, "--period", "2026-Q3", "--provider", GP, "--format", "csv").stdout)))
    assert {r["rule"] for r in rows} >= {"base", "top-up", "withhold", "withhold-release"}
    assert all(r["provider_id"] == GP and r["caused_by"] for r in rows)

    shared = settle(env, "alliance", "--period", "2026-Q3")
    assert shared.returncode == 0, shared.stderr
    # pw-1 paid 23,750 + 1,250 released by 'very good': net 30,000 - 25,000 = 5,000
    assert "Alliance ucr-alliance-subcontract@1 2026-Q3 (closed): 1 pathways" in shared.stdout
    assert "net GBP 50.00" in shared.stdout

    again = settle(env, "close", "--period", "2026-Q3")
    assert again.returncode == 1 and "already closed" in again.stderr
    assert settle(env, "close", "--period", "2999-Q1").returncode == 1
    assert settle(env, "outcome", "pw-nope", "--score", "good").returncode == 1
    assert settle(env, "--period", "2026-Q5").returncode == 2
    assert settle(env, "--period", "2026-Q3", "--provider", "nobody").returncode == 1

    linked = settle(env, "link", "pw-1")  # past its deadline: none by itself, a new one
    assert linked.returncode == 0, linked.stderr
    assert "/questionnaire/" in linked.stdout and "works once" in linked.stderr
    assert settle(env, "link", "pw-1").stdout == linked.stdout  # the one that still works
    assert settle(env, "link", "pw-1", "--new").stdout != linked.stdout
    assert settle(env, "link", "pw-nope").returncode == 1

    verified = settle(env, "verify")
    assert verified.returncode == 0, verified.stderr
    assert "matches its replay line for line" in verified.stdout
