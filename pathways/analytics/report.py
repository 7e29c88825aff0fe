"""The shape of a flow report: what `pathways report`, /api/analytics and the console read.

Durations are seconds. A handover belongs to the report when it became ready in the period
(its arrival); lead, waiting and working times are those of the handovers of that cohort that
completed. Time in each state is attributed to the provider holding the handover then.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from pathways.analytics.measures import Distribution, Frozen, LittleCheck, Ranked
from pathways.analytics.spc import XmrChart
from pathways.analytics.standards import Attainment


class States(Frozen):
    """Mean seconds per handover in each of the four states (completed handovers)."""

    in_transit: float | None = Field(None, description="dispatched, not yet accepted")
    queued: float | None = Field(None, description="accepted, not yet started")
    working: float | None = Field(None, description="in progress")
    blocked: float | None = Field(None, description="on hold")


class Measures(Frozen):
    """Lean measures of one group of handovers (all, one step, or one provider)."""

    key: str
    handovers: int
    completed: int
    open: int
    lead: Distribution
    waiting: Distribution
    working: Distribution
    gap: Distribution = Field(description="inputs complete to this provider being told")
    states: States
    flow_efficiency: float | None = Field(description="total working / total lead time")
    waiting_seconds: float = Field(description="total waiting (in transit, queued, blocked)")
    sla_attained: int = Field(description="completed by the patient's due time")
    breached: int = Field(description="completed after it, or still open past it")
    attainment: float | None
    breach_rate: float | None
    escalations: int = Field(description="coordinator escalations (reminders not counted)")
    escalations_per_100: float | None
    reassignments: int
    rejections: int
    refused_deliveries: int
    first_time_right: float | None = Field(
        description="completions with no delivery refused at the door / completions")


class WipPoint(Frozen):
    day: str
    wip: int
    arrivals: int
    completions: int


class Flow(Frozen):
    wip_now: int = Field(description="handovers open now (all time, not only the cohort)")
    wip: list[WipPoint] = Field(description="open handovers at the end of each day")
    arrivals_per_day: float | None
    completions_per_day: float | None
    little: LittleCheck | None


class Bottlenecks(Frozen):
    steps: list[Ranked] = Field(description="by share of all waiting")
    providers: list[Ranked] = Field(description="by share of waiting while they held handovers")
    critical_path: list[Ranked] = Field(
        description="steps by waiting of handovers on the critical path (those a later step "
                    "or the pathway's end waited for): how much each delays the chain")


class Weekly(Frozen):
    week: str = Field(description="Monday of the week (UTC)")
    completed: int
    mean_lead: float | None
    breach_rate: float | None


class Spc(Frozen):
    weeks: list[Weekly]
    lead_time: XmrChart | None
    breach_rate: XmrChart | None


class PathwayMeasures(Frozen):
    started: int
    completed: int
    lead: Distribution


class Report(Frozen):
    definition_id: str | None
    provider_id: str | None
    since: datetime
    until: datetime
    generated_at: datetime
    pathways: PathwayMeasures
    overall: Measures
    steps: list[Measures]
    providers: list[Measures]
    bottlenecks: Bottlenecks
    flow: Flow
    spc: Spc
    standards: list[Attainment]
