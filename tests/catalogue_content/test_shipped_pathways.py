"""Clinical properties of the shipped pathways that a lead provider relies on.

The definitions are loaded through the real catalogue loader; each test states a contract term
(an NHS standard or a local SLA) and checks the YAML encodes it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pathways.catalogue import Catalogue, definition_files, load_catalogue, read_definition
from pathways.contract import check_delivery
from pathways.model import Clock, EscalationAction, FieldType, PathwayDefinition, Step
from pathways.settings import SHIPPED_CATALOGUE
from pathways.validation import rung_offset

SHIPPED = {"cardiac-surgery-recovery", "hip-replacement-d2a", "urgent-community-response",
           "ltc-annual-contract"}
FILES = definition_files([SHIPPED_CATALOGUE])


@pytest.fixture(scope="module")
def shipped() -> Catalogue:
    return load_catalogue(SHIPPED_CATALOGUE)


def _after_closure(definition: PathwayDefinition, step_id: str) -> set[str]:
    """Every step the given one waits for, directly or through others."""
    found: set[str] = set()
    pending = list(definition.step(step_id).after)
    while pending:
        current = pending.pop()
        if current not in found:
            found.add(current)
            pending.extend(definition.step(current).after)
    return found


def _dependents(definition: PathwayDefinition, step_id: str) -> list[Step]:
    return [s for s in definition.steps if step_id in s.after]


# --- the whole catalogue --------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_file_loads_and_is_named_after_its_pathway(path: Path) -> None:
    definition = read_definition(path)
    assert path.stem == definition.id
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#") and "Sources" in text, "comment header with sources missing"


def test_the_four_reference_pathways_are_shipped(shipped: Catalogue) -> None:
    assert SHIPPED <= {d.id for d in shipped}


def test_readme_lists_every_shipped_pathway(shipped: Catalogue) -> None:
    readme = (SHIPPED_CATALOGUE / "README.md").read_text(encoding="utf-8")
    assert all(f"`{d.id}`" in readme for d in shipped)


def test_every_role_can_be_filled(shipped: Catalogue) -> None:
    empty = [(d.id, r.id) for d in shipped for r in d.roles if not r.providers]
    assert empty == []


def test_every_step_has_a_ladder_that_records_the_breach_at_the_deadline(shipped: Catalogue) -> None:
    for definition in shipped:
        for step in definition.steps:
            ladder = definition.ladder(step)
            assert ladder, f"{definition.id}/{step.id} has no escalation ladder"
            last = ladder[-1]
            assert last.action is EscalationAction.MARK_BREACHED, f"{definition.id}/{step.id}"
            assert rung_offset(step, last) == step.sla.complete_within, f"{definition.id}/{step.id}"


def test_every_pathway_uses_all_four_escalation_actions(shipped: Catalogue) -> None:
    for definition in shipped:
        used = {rung.action for step in definition.steps for rung in definition.ladder(step)}
        assert used == set(EscalationAction), definition.id


def test_every_step_must_deliver_data(shipped: Catalogue) -> None:
    for definition in shipped:
        for step in definition.steps:
            assert any(f.required for f in step.handover), f"{definition.id}/{step.id}"


def test_no_handover_asks_for_patient_identifiers(shipped: Catalogue) -> None:
    """Patient identity travels with the pathway, never inside handover data or logs."""
    identifying = ("nhs", "name", "birth", "dob", "address", "postcode")
    for definition in shipped:
        for step in definition.steps:
            for field in step.handover:
                assert not any(word in field.name for word in identifying), field.name


def test_every_discharge_summary_is_due_in_24_hours_with_a_medication_list(
    shipped: Catalogue,
) -> None:
    summaries = [
        (d, s) for d in shipped for s in d.steps if s.field("discharge_summary") is not None
    ]
    assert len(summaries) >= 2
    for _, step in summaries:
        assert step.sla.complete_within == timedelta(hours=24)
        medication_list = step.field("medication_list")
        assert medication_list is not None and medication_list.required


# --- cardiac surgery to home recovery --------------------------------------------------------


def test_cardiac_discharge_summary_without_medication_list_is_refused(shipped: Catalogue) -> None:
    step = shipped.get("cardiac-surgery-recovery").step("discharge-summary")
    delivery = {
        "discharge_summary": {"url": "https://docs.example.org/ds/1", "title": "Discharge summary"},
        "allergies_and_adverse_reactions": "none known",
        "anticoagulant": "warfarin",
    }
    _, problems = check_delivery(step, delivery)
    assert problems == ["missing required field 'medication_list'"]
    _, problems = check_delivery(step, {**delivery, "medication_list": "warfarin 3 mg once daily"})
    assert problems == []


def test_cardiac_discharge_clocks_start_at_discharge(shipped: Catalogue) -> None:
    definition = shipped.get("cardiac-surgery-recovery")
    discharge = definition.step("cardiac-surgery")
    assert discharge.field("discharged_at").type is FieldType.DATE_TIME
    assert definition.step("discharge-summary").after == ("cardiac-surgery",)
    nursing = definition.step("community-nursing-first-visit")
    assert nursing.after == ("cardiac-surgery",)
    assert nursing.sla.complete_within == timedelta(hours=48)
    assert nursing.field("wound_status").required


def test_cardiac_branches_run_in_parallel_and_join(shipped: Catalogue) -> None:
    definition = shipped.get("cardiac-surgery-recovery")
    assert len(_dependents(definition, "cardiac-surgery")) >= 3
    assert len(_dependents(definition, "discharge-summary")) >= 2
    assert {"discharge-summary", "community-nursing-first-visit", "home-care-package"} <= set(
        definition.step("gp-review").after
    )
    assert len(definition.step("outpatient-review").after) >= 2


def test_cardiac_home_care_only_when_assessed_as_needed(shipped: Catalogue) -> None:
    definition = shipped.get("cardiac-surgery-recovery")
    package = definition.step("home-care-package")
    condition = package.when
    assert condition is not None
    assert condition.step in _after_closure(definition, package.id)
    assert definition.step(condition.step).field(condition.field).type is FieldType.BOOLEAN
    assert condition.holds(True) and not condition.holds(False) and not condition.holds(None)


def test_cardiac_clinic_letter_within_7_days_of_clinic(shipped: Catalogue) -> None:
    definition = shipped.get("cardiac-surgery-recovery")
    letter = definition.step("clinic-letter")
    assert letter.after == ("outpatient-review",)
    assert letter.sla.complete_within == timedelta(days=7)
    assert letter.field("clinic_letter").type is FieldType.DOCUMENT


# --- hip replacement with discharge to assess ------------------------------------------------


def _d2a_steps(definition: PathwayDefinition) -> list[Step]:
    return [
        s for s in definition.steps
        if s.when is not None and s.when.step == "discharge-assessment"
        and s.when.field == "d2a_pathway"
    ]


def test_d2a_pathway_is_a_coded_field_with_codes_0_to_3(shipped: Catalogue) -> None:
    field = shipped.get("hip-replacement-d2a").step("discharge-assessment").field("d2a_pathway")
    assert field is not None and field.required
    assert field.type is FieldType.CODED
    assert field.codes == ("0", "1", "2", "3")


def test_each_d2a_pathway_selects_exactly_one_support_step(shipped: Catalogue) -> None:
    steps = _d2a_steps(shipped.get("hip-replacement-d2a"))
    chosen = {code: [s.id for s in steps if s.when.holds(code)] for code in ("0", "1", "2", "3")}
    assert chosen == {
        "0": ["home-welfare-call"],
        "1": ["reablement-at-home"],
        "2": ["rehabilitation-bed-stay"],
        "3": ["care-home-bed"],
    }
    assert all(s.after == ("discharge-assessment",) for s in steps)


def test_d2a_branches_join_before_the_reviews(shipped: Catalogue) -> None:
    definition = shipped.get("hip-replacement-d2a")
    branches = {s.id for s in _d2a_steps(definition)}
    for review in ("physiotherapy-review", "gp-follow-up"):
        assert branches <= set(definition.step(review).after), review
    assert {"physiotherapy-review", "gp-follow-up"} <= set(
        definition.step("orthopaedic-review").after
    )
    assert definition.step("orthopaedic-review").field("oxford_hip_score").type is FieldType.INTEGER


# --- urgent community response ---------------------------------------------------------------


def test_urgent_response_is_at_home_within_two_hours(shipped: Catalogue) -> None:
    definition = shipped.get("urgent-community-response")
    response = definition.step("urgent-response")
    assert response.after == ()
    assert response.sla.accept_within == timedelta(minutes=30)
    assert response.sla.complete_within == timedelta(hours=2)
    assert response.field("arrived_at").type is FieldType.DATE_TIME


def test_urgent_response_escalates_to_another_team_well_inside_two_hours(
    shipped: Catalogue,
) -> None:
    response = shipped.get("urgent-community-response").step("urgent-response")
    ladder = response.escalation
    assert ladder is not None
    times = {rung.action: rung_offset(response, rung) for rung in ladder if rung.clock is Clock.ACCEPT}
    assert times[EscalationAction.REASSIGN] <= timedelta(hours=1)
    assert times[EscalationAction.ALERT_COORDINATOR] <= timedelta(minutes=30)
    assert all(rung_offset(response, rung) <= timedelta(hours=2) for rung in ladder)


def test_step_up_only_when_the_response_assessment_says_so(shipped: Catalogue) -> None:
    definition = shipped.get("urgent-community-response")
    step_up = definition.step("step-up-admission")
    dispositions = definition.step("urgent-response").field("disposition").codes
    stepping_up = {code for code in dispositions if step_up.when.holds(code)}
    assert stepping_up == {"step-up-intermediate-care-bed", "step-up-care-home-bed"}
    assert not step_up.when.holds(None)


def test_gp_follows_up_every_urgent_response(shipped: Catalogue) -> None:
    definition = shipped.get("urgent-community-response")
    follow_up = definition.step("gp-follow-up")
    assert follow_up.when is None
    assert set(follow_up.after) == {s.id for s in definition.steps} - {"gp-follow-up"}


# --- long-term conditions annual contract ----------------------------------------------------


def test_ltc_quarterly_review_recurs_four_times_every_three_months(shipped: Catalogue) -> None:
    recurrence = shipped.get("ltc-annual-contract").step("quarterly-review").recurrence
    assert recurrence is not None
    assert recurrence.count == 4
    assert recurrence.every == timedelta(days=90)


def test_ltc_year_starts_with_the_care_plan_and_ends_with_the_outcome_review(
    shipped: Catalogue,
) -> None:
    definition = shipped.get("ltc-annual-contract")
    starts = [s.id for s in definition.steps if not s.after]
    ends = [s.id for s in definition.steps if not _dependents(definition, s.id)]
    assert starts == ["annual-care-plan"]
    assert ends == ["annual-outcome-review"]
    review = definition.step("annual-outcome-review")
    assert "quarterly-review" in review.after
    assert review.field("patient_satisfied").type is FieldType.BOOLEAN


def test_ltc_lead_provider_subcontracts_gp_community_and_social_care(shipped: Catalogue) -> None:
    definition = shipped.get("ltc-annual-contract")
    lead = definition.lead_provider.id
    for role in ("general-practice", "community-frailty", "social-care"):
        providers = definition.role(role).providers
        assert providers and all(p.id != lead for p in providers), role
