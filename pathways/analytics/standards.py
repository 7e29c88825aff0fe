"""National standards a shipped definition encodes, and attainment against them.

Urgent community response: a response at home within 2 hours of referral for at least 70% of
referrals (NHS England, 2-hour urgent community response standard). Discharge summary to the GP
within 24 hours (NHS Standard Contract). The patient's clock (from ready) is what they measure.
"""

from __future__ import annotations

from pathways.analytics.measures import Frozen


class Standard(Frozen):
    """A national standard: `step_id` of `definition_id` done within `within_seconds` of
    becoming ready, for at least `threshold` of handovers."""

    key: str
    title: str
    definition_id: str
    step_id: str
    within_seconds: float
    threshold: float


class Attainment(Frozen):
    standard: Standard
    handovers: int
    within: int
    attainment: float | None
    met: bool | None


STANDARDS: tuple[Standard, ...] = (
    Standard(key="ucr-2h", title="Urgent community response at home within 2 hours (70%)",
             definition_id="urgent-community-response", step_id="urgent-response",
             within_seconds=2 * 3600, threshold=0.70),
    *(
        Standard(key="discharge-summary-24h",
                 title="Discharge summary to the GP within 24 hours (NHS Standard Contract)",
                 definition_id=definition, step_id="discharge-summary",
                 within_seconds=24 * 3600, threshold=1.0)
        for definition in ("hip-replacement-d2a", "cardiac-surgery-recovery")
    ),
)
"""Standards per shipped definition. Measured at the step's completion, from when it became ready
(the patient's clock): for the 2-hour response that is an upper bound on the arrival time. The
contract's discharge summary rule has no percentage: every discharge (threshold 100%)."""


def standards_for(definition_id: str | None) -> list[Standard]:
    return [s for s in STANDARDS if definition_id is None or s.definition_id == definition_id]


def attainment(standard: Standard, handovers: int, within: int) -> Attainment:
    """Share of finished handovers done within the standard's time; None with none finished."""
    share = None if handovers <= 0 else within / handovers
    met = None if share is None else share >= standard.threshold
    return Attainment(standard=standard, handovers=handovers, within=within, attainment=share,
                      met=met)
