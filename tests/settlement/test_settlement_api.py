"""The settlement JSON API over real HTTP (uvicorn, SQLite event store holding real engine runs;
no engine needed): statements, a pathway's payment position, an outcome recorded, coordinator
tokens only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from activities.store import EventStore
from api.tokens import TokenStore
from pathways.settings import Settings
from tests.api.conftest import free_port, serve_in_thread
from tests.conftest import make_settings
from tests.settlement.support import DAY, HOUR, MINUTE, Scenario, record

Q3 = datetime(2026, 7, 6, 9, 0, tzinfo=UTC)
UCR, GP = "elmshire-ucr-central", "elmshire-central-pcn"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    settings = make_settings(tmp_path, "127.0.0.1:1", api_port=free_port(),
                             update_timeout_seconds=1.0,
                             event_store_url=f"sqlite:///{tmp_path / 'pathways.db'}")
    store = EventStore(settings.event_store)
    store.migrate()
    done = Scenario("pw-1", start=Q3).simple()
    open_one = Scenario("pw-2", start=Q3 + DAY)
    open_one.accept("urgent-response", Q3 + DAY + 5 * MINUTE)
    open_one.tick(Q3 + DAY + 3 * HOUR)  # breached, still open
    for s in (done, open_one):
        for batch in s.batches:
            record(store, s, batch)
    store.close()
    server = serve_in_thread(settings)
    yield next(server), settings
    server.close()


def test_statements_position_and_outcome(served: tuple[str, Settings]) -> None:
    base_url, settings = served
    tokens = TokenStore(settings.event_store)
    coordinator = {"Authorization": f"Bearer {tokens.issue_coordinator('finance-lead')}"}
    provider = {"Authorization": f"Bearer {tokens.issue_provider(UCR)}"}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        assert http.get("/api/settlement/statements?period=2026-Q3",
                        headers=provider).status_code == 403
        assert http.get("/api/settlement/statements?period=2026-Q3").status_code == 401
        for bad in ("2026-Q5", "0000-Q1"):
            refused = http.get("/api/settlement/statements", headers=coordinator,
                               params={"period": bad})
            assert refused.status_code in (400, 422), refused.text

        recorded = http.post("/api/settlement/outcomes", headers=coordinator,
                             json={"pathway_id": "pw-1", "score": "poor"})
        assert recorded.status_code == 201, recorded.text
        assert recorded.json()["actor"] == "coordinator:finance-lead"
        unknown = http.post("/api/settlement/outcomes", headers=coordinator,
                            json={"pathway_id": "pw-x", "score": "good"})
        assert unknown.status_code == 404

        answer = http.get("/api/settlement/statements", headers=coordinator,
                          params={"period": "2026-Q3", "provider": UCR})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["period"] == "2026-Q3" and body["closed"] is False
        (ucr,) = body["statements"]
        # on time, first time right; no answer by the July deadline: 50% released
        assert ucr["totals"] == {"base": 18000, "top-up": 2500, "withhold": -1800,
                                 "withhold-release": 900}
        assert all(line["caused_by"] for line in ucr["lines"])
        assert ucr["missed_top_ups"] == []  # pw-2's late response is not completed yet

        now = http.get("/api/settlement/pathways/pw-1", headers=coordinator).json()
        poor = [e for e in now["entries"] if e["adjusts"] == "2026-Q3"]
        assert {(e["provider_id"], e["amount"]) for e in poor} == {(UCR, -900), (GP, -350)}
        assert now["position"]["outcome"] == "poor"

        share = http.get("/api/settlement/alliance", headers=coordinator,
                         params={"period": "2026-Q3"}).json()
        (alliance,) = share["alliances"]
        # pw-1 paid 23,750 then trued down 1,250 by the 'poor' answer: net 30,000 - 22,500
        assert (alliance["pathways"], alliance["target"], alliance["actual"], alliance["net"]) \
            == (1, 30000, 22500, 7500)
        ucr_share = next(m for m in alliance["members"] if m["provider_id"] == UCR)
        assert (ucr_share["share"], ucr_share["quality_points"], ucr_share["adjusted"],
                ucr_share["amount"], ucr_share["capped"]) == (3000, "+10.0", 3300, 2400, True)

        risky = http.get("/api/settlement/pathways/pw-2", headers=coordinator).json()
        (response,) = risky["position"]["handovers"]
        assert response["status"] == "open" and response["top_up_at_risk"] == 0
        assert response["top_up_missed"] == ["late: patient's clock breached"]
        assert http.get("/api/settlement/pathways/pw-none",
                        headers=coordinator).status_code == 404
