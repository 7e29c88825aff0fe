"""POST /api/simulations on the real API: the side-by-side answer, refusals with every problem,
the size bound, and coordinators only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.conftest import RunningApi

pytestmark = pytest.mark.devserver


def _fixed(text: str) -> dict[str, str]:
    return {"kind": "fixed", "value": text}


def _ucr(**overrides: Any) -> dict[str, Any]:
    """Urgent responses every 2 hours for a day; Central answers in 10 minutes and is at the
    home 50 minutes later: every response within the 2-hour standard. The change leaves
    Central one response at a time with 3-hour visits: the engine's ladder breaches them."""
    data: dict[str, Any] = {
        "name": "ucr-api", "definition": "urgent-community-response",
        "horizon": "P1D", "warm_up": "PT0S", "drain": "P5D", "arrivals": {"every": "PT2H"},
        "default": {"accept": _fixed("PT10M"), "complete": _fixed("PT50M")},
        "standards": [{"name": "UCR 2-hour", "step": "urgent-response", "within": "PT2H",
                       "target": 0.7}],
        "changes": [{"name": "slow-central", "providers": {"elmshire-ucr-central": {
            "capacity": 1, "complete": _fixed("PT3H")}}}],
    }
    data.update(overrides)
    return data


async def test_simulation_answer_side_by_side(
    http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    response = await http.post("/api/simulations", headers=coordinator,
                               json={"scenario": _ucr(), "replications": 2, "seed": 3})
    assert response.status_code == 200, response.text
    answer = response.json()
    baseline, slow = answer["variants"]
    assert (baseline["name"], slow["name"]) == ("baseline", "slow-central")
    assert baseline["measures"]["standard|UCR 2-hour|attainment_pct"]["mean"] == 100
    assert baseline["measures"]["step|urgent-response|handovers"]["mean"] == 12
    assert slow["measures"]["step|urgent-response|breaches_per_100"]["mean"] > 0
    assert slow["difference_from_baseline"]["step|urgent-response|sla_pct"]["mean"] < 0
    assert answer["targets_pct"] == {"UCR 2-hour": 70.0}


async def test_bad_or_oversized_scenarios_are_refused(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str]
) -> None:
    bad = await http.post("/api/simulations", headers=coordinator,
                          json={"scenario": _ucr(providers={"nobody": {}}, definition="nope")})
    assert bad.status_code == 422
    assert "no pathway 'nope'" in bad.text
    huge = await http.post("/api/simulations", headers=coordinator, json={
        "scenario": _ucr(arrivals={"per_day": 1000}, horizon="P365D"), "replications": 30})
    assert huge.status_code == 422 and "pathways simulate" in huge.text
    provider = {"Authorization": f"Bearer {api.provider_token('elmshire-ucr-central')}"}
    refused = await http.post("/api/simulations", headers=provider, json={"scenario": _ucr()})
    assert refused.status_code == 403
