"""Scenario: the what-if question as YAML, validated with pydantic and against the definition.

A scenario names one pathway definition from the catalogue, the arrivals, how each provider
behaves and the changes to compare with the baseline. `variants` resolves it into one
`Variant` per column of the answer (baseline first): the definition as changed (a provider
removed, a ladder replaced) and every provider's behaviour as changed (capacity, times).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from pathways.catalogue import Catalogue
from pathways.model import (
    DefinitionError,
    Duration,
    EscalationRung,
    FieldType,
    PathwayDefinition,
    SignedDuration,
    Strict,
)
from pathways.simulation.distributions import Distribution, fixed
from pathways.validation import authoring_problems

WEEKDAYS = 7


class ScenarioError(ValueError):
    """A scenario that cannot be run; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


Share = float


class Arrivals(Strict):
    """New pathways per day, shaped by day of week and (optionally) hours of the day; or one
    every fixed interval from the start (`every`, for schedules and worked examples)."""

    per_day: float = Field(default=0.0, ge=0, le=100_000)
    every: Duration | None = Field(
        default=None, description="one arrival per interval from the start instead (weekly and "
        "hours are then not used)")
    weekly: tuple[float, ...] = Field(
        default=(1.0,) * WEEKDAYS,
        description="relative volume Monday..Sunday (normalised to a mean of 1)",
    )
    hours: tuple[int, int] | None = Field(
        default=None, description="arrivals only between these hours (UTC), e.g. [8, 20]"
    )

    @model_validator(mode="after")
    def _shape(self) -> Arrivals:
        if (self.every is None) == (self.per_day <= 0):
            raise ValueError("give exactly one of per_day (> 0) or every")
        if len(self.weekly) != WEEKDAYS or any(w < 0 for w in self.weekly) or not any(self.weekly):
            raise ValueError("weekly needs 7 non-negative factors, Monday first, not all zero")
        if self.hours is not None and not 0 <= self.hours[0] < self.hours[1] <= 24:
            raise ValueError("hours must be [start, end] with 0 <= start < end <= 24")
        return self

    def rate_on(self, weekday: int) -> float:
        """Expected arrivals on that weekday (0 = Monday)."""
        mean = sum(self.weekly) / WEEKDAYS
        return self.per_day * self.weekly[weekday] / mean


class StepTimes(Strict):
    """A provider's times for one step, where they differ from its usual ones."""

    accept: Distribution | None = None
    complete: Distribution | None = None


class Behaviour(Strict):
    """How one provider handles the handovers it is offered."""

    capacity: int | None = Field(
        default=None, ge=1, le=100_000,
        description="handovers it works on at once (accepting or doing); more wait in its "
        "queue; none: unlimited",
    )
    hours: tuple[int, int] | None = Field(
        default=None, description="picks up new work only between these hours (UTC)"
    )
    slots_per_day: int | None = Field(
        default=None, ge=1, le=100_000,
        description="handovers it picks up a day at most (appointment slots); none: no limit",
    )
    accept: Distribution = Field(
        default_factory=lambda: fixed(timedelta(0)),
        description="from picking a handover up to accepting or rejecting it",
    )
    complete: Distribution = Field(
        default_factory=lambda: fixed(timedelta(0)),
        description="from accepting to completing (or failing)",
    )
    reject: Share = Field(default=0.0, ge=0, le=1, description="probability of rejecting")
    fail: Share = Field(default=0.0, ge=0, le=1, description="probability of failing after work")
    non_conforming: Share = Field(
        default=0.0, ge=0, le=1,
        description="probability that a delivery breaks the step's contract (refused at the "
        "door, resent after `rework`)",
    )
    rework: Distribution = Field(default_factory=lambda: fixed(timedelta(hours=1)))
    steps: dict[str, StepTimes] = Field(
        default_factory=dict, description="times per step id, where they differ (fitted ones)"
    )

    def accept_for(self, step_id: str) -> Distribution:
        times = self.steps.get(step_id)
        return times.accept if times is not None and times.accept is not None else self.accept

    def complete_for(self, step_id: str) -> Distribution:
        times = self.steps.get(step_id)
        return (times.complete if times is not None and times.complete is not None
                else self.complete)

    @model_validator(mode="after")
    def _hours(self) -> Behaviour:
        if self.hours is not None and not 0 <= self.hours[0] < self.hours[1] <= 24:
            raise ValueError("hours must be [start, end] with 0 <= start < end <= 24")
        return self


class Coordinator(Strict):
    """The coordinator re-offers a handover no provider is left for, after `respond`."""

    respond: Distribution = Field(default_factory=lambda: fixed(timedelta(hours=1)))


class Standard(Strict):
    """A national standard measured on one step, e.g. UCR: at home within 2 hours for 70%."""

    name: str = Field(min_length=1, max_length=100)
    step: str
    within: Duration
    target: Share = Field(gt=0, le=1)


class Outcome(Strict):
    """Shares of the values a step delivers in one field (what its conditions test)."""

    step: str
    field: str
    shares: dict[str, float] = Field(min_length=1)

    @field_validator("shares", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        """YAML reads `0:` as a number and `true:` as a boolean: shares are keyed by text."""
        if isinstance(value, dict):
            return {(str(k).lower() if isinstance(k, bool) else str(k)): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _shares(self) -> Outcome:
        total = sum(self.shares.values())
        if any(v < 0 for v in self.shares.values()) or abs(total - 1.0) > 0.01:
            raise ValueError(f"shares of {self.step}.{self.field} must be >= 0 and sum to 1")
        return self


class Change(Strict):
    """One what-if to compare with the baseline."""

    name: str = Field(min_length=1, max_length=60)
    description: str = ""
    providers: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="behaviour overrides per provider, e.g. capacity"
    )
    remove_providers: tuple[str, ...] = ()
    escalation: dict[str, tuple[EscalationRung, ...]] = Field(
        default_factory=dict, description="new ladder per step id ('default': the pathway's)"
    )
    arrivals: dict[str, Any] = Field(default_factory=dict, description="arrival overrides")


class Scenario(Strict):
    """The question: a definition, its population's arrivals, provider behaviour, changes."""

    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    definition: str = Field(description="catalogue reference: id or id@version")
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    horizon: Duration = timedelta(days=365)
    warm_up: SignedDuration = Field(
        default=timedelta(days=28), description="arrivals before this are not measured"
    )
    drain: Duration = Field(
        default=timedelta(days=90),
        description="after the horizon no one new arrives; pathways still open may finish",
    )
    arrivals: Arrivals
    default: Behaviour = Field(default_factory=Behaviour, description="unlisted providers")
    providers: dict[str, Behaviour] = Field(default_factory=dict)
    coordinator: Coordinator = Field(default_factory=Coordinator)
    outcomes: tuple[Outcome, ...] = ()
    standards: tuple[Standard, ...] = ()
    changes: tuple[Change, ...] = ()

    @model_validator(mode="after")
    def _times(self) -> Scenario:
        if self.start.tzinfo is None:
            raise ValueError("start needs a time zone")
        if not timedelta(0) <= self.warm_up < self.horizon:
            raise ValueError("warm_up must be at least 0 and shorter than the horizon")
        names = [c.name for c in self.changes]
        if "baseline" in names or len(set(names)) != len(names):
            raise ValueError("change names must be unique and not 'baseline'")
        return self


@dataclass(frozen=True)
class Variant:
    """One column of the answer, resolved and picklable (sent to worker processes)."""

    name: str
    definition: PathwayDefinition
    arrivals: Arrivals
    behaviours: dict[str, Behaviour]
    coordinator: Coordinator
    outcomes: dict[str, dict[str, tuple[tuple[Any, ...], tuple[float, ...]]]]
    standards: tuple[Standard, ...]
    start: datetime
    horizon: float
    warm_up: float
    drain: float
    description: str = ""
    removed: tuple[str, ...] = field(default=())


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; ScenarioError lists every problem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ScenarioError([f"{path}: cannot read scenario: {error}"]) from None
    return parse_scenario(data, str(path))


def dump_scenario(scenario: Scenario) -> str:
    """The scenario as YAML (durations in ISO 8601), e.g. a fitted one to edit and rerun."""
    data = scenario.model_dump(mode="json", by_alias=True, exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def parse_scenario(data: Any, where: str = "scenario") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError([f"{where}: expected a mapping with name, definition and arrivals"])
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError([
            f"{where}: {'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}"
            for e in error.errors()
        ]) from None


def variants(scenario: Scenario, catalogue: Catalogue) -> list[Variant]:
    """Baseline then each change, each checked against the definition it runs."""
    try:
        definition = catalogue.resolve(scenario.definition)
    except LookupError as error:
        raise ScenarioError([str(error)]) from None
    result = [_variant(scenario, definition, None)]
    result.extend(_variant(scenario, definition, change) for change in scenario.changes)
    return result


def _variant(
    scenario: Scenario, definition: PathwayDefinition, change: Change | None
) -> Variant:
    problems: list[str] = []
    label = "baseline" if change is None else change.name
    if change is not None:
        definition = _changed_definition(definition, change, problems)
    known = {p.id for r in definition.roles for p in r.providers}
    behaviours = _behaviours(scenario, change, known, problems)
    arrivals = scenario.arrivals
    if change is not None and change.arrivals:
        try:
            arrivals = Arrivals.model_validate({**scenario.arrivals.model_dump(), **change.arrivals})
        except ValidationError as error:
            problems.extend(f"{label}: arrivals: {e['msg']}" for e in error.errors())
    outcomes = _outcomes(scenario, definition, problems)
    steps = {s.id for s in definition.steps}
    problems.extend(
        f"standard {s.name!r}: no step {s.step!r} in {definition.key}"
        for s in scenario.standards if s.step not in steps
    )
    if problems:
        raise ScenarioError([f"{label}: {p}" for p in problems])
    return Variant(
        name=label,
        description=scenario.description if change is None else change.description,
        definition=definition,
        arrivals=arrivals,
        behaviours=behaviours,
        coordinator=scenario.coordinator,
        outcomes=outcomes,
        standards=scenario.standards,
        start=scenario.start,
        horizon=scenario.horizon.total_seconds(),
        warm_up=scenario.warm_up.total_seconds(),
        drain=scenario.drain.total_seconds(),
        removed=() if change is None else change.remove_providers,
    )


def _changed_definition(
    definition: PathwayDefinition, change: Change, problems: list[str]
) -> PathwayDefinition:
    """The definition with providers removed and ladders replaced, validated as a whole."""
    data = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
    known = {p.id for r in definition.roles for p in r.providers}
    problems.extend(
        f"cannot remove unknown provider {p!r}" for p in change.remove_providers if p not in known
    )
    for role in data["roles"]:
        role["providers"] = [p for p in role["providers"] if p["id"] not in change.remove_providers]
        if not role["providers"]:
            problems.append(f"removing {', '.join(change.remove_providers)} leaves role "
                            f"{role['id']!r} with no provider")
    steps = {s["id"]: s for s in data["steps"]}
    for step_id, ladder in change.escalation.items():
        rungs = [r.model_dump(mode="json") for r in ladder]
        if step_id == "default":
            data["escalation"] = rungs
        elif step_id in steps:
            steps[step_id]["escalation"] = rungs
        else:
            problems.append(f"escalation for unknown step {step_id!r}")
    if problems:
        return definition
    try:
        changed = PathwayDefinition.model_validate(data)
    except (ValidationError, DefinitionError) as error:
        problems.append(f"the changed definition is invalid: {error}")
        return definition
    # the catalogue's authoring rules too (e.g. no reassign rung taking accepted work)
    problems.extend(f"the changed definition is invalid: {p}"
                    for p in authoring_problems(changed))
    return changed


def _behaviours(
    scenario: Scenario, change: Change | None, known: set[str], problems: list[str]
) -> dict[str, Behaviour]:
    listed = set(scenario.providers) | (set(change.providers) if change else set())
    removed = set(change.remove_providers) if change else set()
    problems.extend(
        f"provider {p!r} is not in the definition" for p in sorted(listed - known - removed)
    )
    result: dict[str, Behaviour] = {}
    for provider_id in sorted(known):
        base = scenario.providers.get(provider_id, scenario.default)
        override = change.providers.get(provider_id) if change else None
        if override:
            try:
                base = Behaviour.model_validate({**base.model_dump(), **override})
            except ValidationError as error:
                problems.extend(f"provider {provider_id}: {e['msg']}" for e in error.errors())
        result[provider_id] = base
    return result


def _outcomes(
    scenario: Scenario, definition: PathwayDefinition, problems: list[str]
) -> dict[str, dict[str, tuple[tuple[Any, ...], tuple[float, ...]]]]:
    """Shares per step and field, with values converted to the field's type."""
    result: dict[str, dict[str, tuple[tuple[Any, ...], tuple[float, ...]]]] = {}
    steps = {s.id: s for s in definition.steps}
    for outcome in scenario.outcomes:
        step = steps.get(outcome.step)
        handover_field = step.field(outcome.field) if step else None
        if handover_field is None:
            problems.append(f"outcome: no field {outcome.field!r} in step {outcome.step!r}")
            continue
        values: list[Any] = []
        for text in outcome.shares:
            value = _typed(handover_field.type, text, handover_field.codes)
            if value is None:
                problems.append(f"outcome {outcome.step}.{outcome.field}: {text!r} is not a "
                                f"valid {handover_field.type.value} value")
            values.append(value)
        cumulative, total = [], 0.0
        for share in outcome.shares.values():
            total += share
            cumulative.append(total)
        cumulative[-1] = 1.0
        result.setdefault(outcome.step, {})[outcome.field] = (tuple(values), tuple(cumulative))
    return result


def _typed(kind: FieldType, text: str, codes: tuple[str, ...]) -> Any:
    if kind is FieldType.CODED:
        return text if text in codes else None
    if kind is FieldType.BOOLEAN:
        return {"true": True, "false": False}.get(str(text).lower())
    if kind is FieldType.INTEGER:
        return int(text) if str(text).lstrip("-").isdigit() else None
    if kind is FieldType.TEXT:
        return str(text)
    return None
