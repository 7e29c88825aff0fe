"""/api/analytics over real HTTP (uvicorn, real Temporal client) on the hand-worked log:
coordinator auth, the report, value-stream map, scorecard, WIP, SPC (JSON and SVG), exports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.store import EventStore
from api.tokens import TokenStore
from pathways.settings import Settings
from tests.analytics.eventlog import DEFINITION, write_log
from tests.api.conftest import free_port, serve_in_thread

PERIOD = {"definition": DEFINITION, "since": "2026-01-05", "until": "2026-01-19"}


@pytest.fixture(scope="module")
def served(settings: Settings, dev_env: WorkflowEnvironment,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str, str]]:
    directory: Path = tmp_path_factory.mktemp("analytics-api")
    mine = settings.model_copy(update={
        "api_port": free_port(), "event_store_url": f"sqlite:///{directory / 'events.db'}"})
    store = EventStore(mine.event_store)
    store.migrate()
    write_log(store)
    tokens = TokenStore(mine.event_store)
    tokens.migrate()
    coordinator = tokens.issue_coordinator("analyst")
    provider = tokens.issue_provider("A")
    server = serve_in_thread(mine)
    base = next(server)
    yield base, coordinator, provider, mine.event_store
    server.close()


def get(served: tuple[str, str, str, str], path: str, token: str | None = None,
        **params: str) -> httpx.Response:
    base, coordinator = served[0], served[1]
    headers = {"Authorization": f"Bearer {token or coordinator}"}
    return httpx.get(f"{base}/api/analytics/{path}", params=params, headers=headers, timeout=30)


def test_only_coordinators_read_analytics(served: tuple[str, str, str, str]) -> None:
    base = served[0]
    assert httpx.get(f"{base}/api/analytics/report", timeout=30).status_code == 401
    assert get(served, "report", token=served[2]).status_code == 403


def test_report_and_scorecard(served: tuple[str, str, str, str]) -> None:
    report = get(served, "report", **PERIOD)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["overall"]["completed"] == 3
    assert body["overall"]["breach_rate"] == pytest.approx(0.6)
    scorecard = get(served, "providers", **PERIOD).json()
    assert [r["key"] for r in scorecard["ranking"]] == ["C", "A", "B"]
    c = next(p for p in scorecard["providers"] if p["key"] == "C")
    assert c["first_time_right"] == 0 and c["refused_deliveries"] == 1


def test_value_stream_in_definition_order_with_the_bottleneck(
        served: tuple[str, str, str, str]) -> None:
    stream = get(served, "value-stream", **PERIOD).json()
    ids = [s["step_id"] for s in stream["steps"]]
    assert ids[0] == "urgent-response" and "gp-follow-up" in ids
    flagged = [s["step_id"] for s in stream["steps"] if s["bottleneck"]]
    assert flagged == ["gp-follow-up"]
    assert get(served, "value-stream", definition="nope").status_code == 404


def test_wip_and_spc(served: tuple[str, str, str, str]) -> None:
    flow = get(served, "wip", **PERIOD).json()
    assert [p["wip"] for p in flow["wip"]] == [0] * 8 + [1] * 4 + [2] * 2
    chart = get(served, "spc", measure="lead_time", **PERIOD).json()
    assert [p["label"] for p in chart["points"]] == ["2026-01-05", "2026-01-12"]
    picture = get(served, "spc.svg", measure="breach_rate", **PERIOD)
    assert picture.headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(picture.text).tag == "{http://www.w3.org/2000/svg}svg"


def test_bad_dates_are_refused(served: tuple[str, str, str, str]) -> None:
    assert get(served, "report", since="soon").status_code == 400
    assert get(served, "report", since="2026-02-01", until="2026-01-01").status_code == 400
    # no report of millennia of days, no calendar overflow: refused, never a 500
    assert get(served, "report", since="1000-01-01").status_code == 400
    assert get(served, "wip", since="2001-01-01", until="2026-01-01").status_code == 400
    assert get(served, "report", since="0001-01-01T00:00:00+14:00").status_code == 400


def test_exports(served: tuple[str, str, str, str]) -> None:
    xes = get(served, "export", format="xes", definition=DEFINITION)
    assert xes.status_code == 200
    assert len(ET.fromstring(xes.text).findall("{http://www.xes-standard.org/}trace")) == 4
    ocel = json.loads(get(served, "export", format="ocel", definition=DEFINITION).text)
    assert any(o["type"] == "handover" for o in ocel["objects"])
    lines = get(served, "export", format="csv", definition=DEFINITION).text.splitlines()
    assert lines[0].startswith("case_id,event_id,activity,lifecycle")


def test_a_new_event_shows_in_the_next_report(served: tuple[str, str, str, str]) -> None:
    from tests.analytics.test_flow_summary import complete_p2_follow_up

    assert get(served, "report", **PERIOD).json()["overall"]["completed"] == 3
    complete_p2_follow_up(EventStore(served[3]))
    assert get(served, "report", **PERIOD).json()["overall"]["completed"] == 4
