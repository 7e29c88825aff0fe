"""POST /api/simulations: a what-if answered by the simulator (pathways.simulation), baseline
and changes side by side with 95% confidence intervals. Bounded so one request stays within
seconds; larger studies (a year of 10,000 patients, 30 replications) belong to
`pathways simulate`."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api import context
from api.auth import Coordinator
from api.problems import ApiError, api_errors
from pathways.simulation.runner import compare
from pathways.simulation.scenario import Scenario, ScenarioError, parse_scenario, variants

router = APIRouter(prefix="/api", tags=["Simulation"])

MAX_PATHWAYS = 20_000
"""Simulated pathways one request may ask for (every replication of every variant): some 20
seconds of one core on this project's reference machine."""


class SimulationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: dict[str, Any] = Field(
        description="the scenario as in its YAML file (see examples/scenarios)")
    replications: int = Field(default=10, ge=1, le=100)
    seed: int = Field(default=0, ge=0, le=2**62)


class Measure(BaseModel):
    mean: float | None
    low: float | None
    high: float | None
    n: int


class VariantAnswer(BaseModel):
    name: str
    description: str
    measures: dict[str, Measure] = Field(description="section|subject|measure: estimate")
    difference_from_baseline: dict[str, Measure] = Field(
        description="paired differences (empty for the baseline)")
    weekly: dict[str, list[float]] = Field(description="weekly means of daily WIP snapshots")


class SimulationAnswer(BaseModel):
    scenario: str
    replications: int
    seed: int
    confidence: float
    targets_pct: dict[str, float]
    variants: list[VariantAnswer]


def expected_pathways(question: Scenario, replications: int, columns: int) -> int:
    arrivals = question.arrivals
    per_day = (86_400 / arrivals.every.total_seconds() if arrivals.every is not None
               else arrivals.per_day)
    days = question.horizon.total_seconds() / 86_400
    return round(per_day * days * replications * columns)


@router.post("/simulations", response_model=SimulationAnswer,
             responses=api_errors(408, 413, 415))
async def simulate(
    body: SimulationRequest, principal: Coordinator, request: Request
) -> SimulationAnswer:
    """Simulate a scenario on the real engine; 422 lists every problem with it."""
    try:
        question = parse_scenario(body.scenario, "scenario")
        columns = variants(question, context.catalogue(request))
    except ScenarioError as error:
        raise ApiError(422, error.problems) from None
    size = expected_pathways(question, body.replications, len(columns))
    if size > MAX_PATHWAYS:
        raise ApiError(422, [
            f"about {size:,} simulated pathways; this endpoint runs at most {MAX_PATHWAYS:,} "
            "(fewer replications, a shorter horizon), or use `pathways simulate`"])
    # One process: forking the API (threads, a Temporal client) for worker processes is unsafe.
    answer = await asyncio.to_thread(
        compare, question.name, columns, body.replications, body.seed, 1)
    return SimulationAnswer.model_validate(answer.as_dict())
