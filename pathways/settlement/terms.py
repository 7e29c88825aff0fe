"""Contract terms: versioned YAML files beside the definitions (pathways/contracts/), validated
like them (pydantic for fields, cross-checks against the pinned definition, every problem named).

A contract prices one pathway definition version for its subcontractors, per role:
- `base`: pence per completed handover, paid to the provider that completed it;
- `top_up`: a best-practice payment, only when every listed criterion holds for the handover;
- `withhold_percent` (0, or 5-20): that share of the base is held back and released by the
  pathway's outcome score (`outcome.release`, percent of the withheld share per answer); an answer
  not recorded `outcome.deadline` after the pathway ended counts as `outcome.default`;
  `outcome.items` are the pathway's own questions, asked after the Friends and Family Test one.
The `alliance` section sets the per-pathway target price, the members' weights, the quality
adjustment (at most +-10%) and the stop-loss / stop-gain caps (percent of the period's target).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import networkx as nx
import yaml
from pydantic import Field, ValidationError, model_validator

from pathways.catalogue import Catalogue, UnknownDefinition, definition_files
from pathways.elements import Slug, Strict
from pathways.graph import dependency_graph
from pathways.model import PathwayDefinition
from pathways.settlement.periods import uk_date
from pathways.validation import DefinitionError, DefinitionProblem, problems_from_validation

Pence = Annotated[
    int, Field(ge=0, strict=True, description="an amount in pence (integer, no floats)")]
Percent = Annotated[int, Field(ge=0, le=100, strict=True)]


class Outcome(StrEnum):
    """NHS Friends and Family Test answers: the outcome score recorded at the pathway's end."""

    VERY_GOOD = "very-good"
    GOOD = "good"
    NEITHER = "neither-good-nor-poor"
    POOR = "poor"
    VERY_POOR = "very-poor"
    DONT_KNOW = "dont-know"


class Criterion(StrEnum):
    ON_TIME = "on-time"
    """Completed within the patient's clock: no complete-clock breach in force at completion."""
    FIRST_TIME_RIGHT = "first-time-right"
    """No delivery of this handover refused at the door (non-conforming output)."""


class AfterStep(Strict):
    """Completed within `within` of the named earlier step's completion."""

    step: str
    within: timedelta = Field(gt=timedelta(0))


class TopUp(Strict):
    amount: Pence
    criteria: tuple[Criterion | AfterStep, ...] = Field(min_length=1)


class RolePrice(Strict):
    role: str
    base: Pence
    withhold_percent: Percent = 0
    top_up: TopUp | None = None

    @model_validator(mode="after")
    def _withhold_range(self) -> RolePrice:
        if self.withhold_percent and not 5 <= self.withhold_percent <= 20:
            raise ValueError("withhold_percent must be 0 or between 5 and 20")
        return self


class QuestionItem(Strict):
    """One of the pathway's own questions, asked after the Friends and Family Test question
    (recorded with the answer; the score alone moves money)."""

    id: Slug
    text: str = Field(min_length=1, max_length=300)
    answers: tuple[str, ...] = Field(min_length=2, max_length=10)
    required: bool = False


class OutcomeTerms(Strict):
    measure: str = "friends-and-family-test"
    deadline: timedelta = Field(gt=timedelta(0), description="from the pathway's end")
    default: Outcome
    release: dict[Outcome, Percent]
    items: tuple[QuestionItem, ...] = Field(default=(), max_length=10)

    @model_validator(mode="after")
    def _every_answer(self) -> OutcomeTerms:
        missing = [o.value for o in Outcome if o not in self.release]
        if missing:
            raise ValueError(f"release must give a percent for every answer; missing {missing}")
        ids = [item.id for item in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("questionnaire item ids must be unique")
        return self


class Quality(Strict):
    """Adjustment = on-time-and-first-time-right rate minus target, in points, within +-max."""

    target_percent: Percent = 90
    max_adjust_percent: int = Field(default=10, ge=0, le=10)


class Alliance(Strict):
    target_per_pathway: Pence
    weights: dict[str, int] = Field(min_length=1, description="member provider id: weight")
    quality: Quality = Quality()
    stop_loss_percent: Percent
    stop_gain_percent: Percent

    @model_validator(mode="after")
    def _positive(self) -> Alliance:
        if any(w <= 0 for w in self.weights.values()):
            raise ValueError("weights must be positive integers")
        return self


class Contract(Strict):
    id: Slug
    version: int = Field(ge=1)
    title: str = Field(min_length=1)
    definition: str = Field(pattern=r"^[^@\s]+@[1-9]\d*$", description="pinned ID@VERSION")
    effective_from: date
    currency: Literal["GBP"] = "GBP"
    prices: tuple[RolePrice, ...] = Field(min_length=1)
    outcome: OutcomeTerms
    alliance: Alliance | None = None

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"

    def price(self, role: str) -> RolePrice | None:
        return next((p for p in self.prices if p.role == role), None)


class Contracts:
    """Contracts by pinned definition; a pathway is settled under the latest version in effect
    when it started."""

    def __init__(self, contracts: Sequence[Contract], catalogue: Catalogue) -> None:
        self.all = sorted(contracts, key=lambda c: (c.id, c.version))
        self.catalogue = catalogue

    def for_pathway(self, definition_key: str, started_at: datetime) -> Contract | None:
        candidates = [
            c for c in self.all
            if c.definition == definition_key and c.effective_from <= uk_date(started_at)
        ]
        return max(candidates, key=lambda c: (c.effective_from, c.version), default=None)

    def definition(self, contract: Contract) -> PathwayDefinition:
        return self.catalogue.resolve(contract.definition)

    def get(self, key: str) -> Contract:
        return next(c for c in self.all if c.key == key)


def check_contract(contract: Contract, catalogue: Catalogue) -> list[DefinitionProblem]:
    """Cross-checks against the pinned definition: roles, steps, members exist and are earlier."""
    try:
        definition = catalogue.resolve(contract.definition)
    except UnknownDefinition as error:
        return [DefinitionProblem(None, None, str(error))]
    return list(_against(contract, definition))


def _against(contract: Contract, definition: PathwayDefinition) -> Iterator[DefinitionProblem]:
    roles = {r.id for r in definition.roles}
    graph = dependency_graph(definition)
    seen: set[str] = set()
    for price in contract.prices:
        if price.role not in roles:
            yield DefinitionProblem(None, None, f"role {price.role!r} is not in {definition.key}")
            continue
        if price.role in seen:
            yield DefinitionProblem(None, None, f"role {price.role!r} is priced twice")
        seen.add(price.role)
        steps = [s.id for s in definition.steps if s.role == price.role]
        for criterion in price.top_up.criteria if price.top_up else ():
            if isinstance(criterion, AfterStep):
                yield from _earlier(criterion.step, steps, graph, definition)
    providers = {p.id for r in definition.roles for p in r.providers} | {
        definition.lead_provider.id}
    for member in (contract.alliance.weights if contract.alliance else {}):
        if member not in providers:
            yield DefinitionProblem(
                None, None, f"alliance member {member!r} is not a provider of {definition.key}")


def _earlier(
    named: str, steps: list[str], graph: nx.DiGraph, definition: PathwayDefinition
) -> Iterator[DefinitionProblem]:
    if named not in graph:
        yield DefinitionProblem(None, None, f"top-up names unknown step {named!r}")
        return
    for step in steps:
        if named not in nx.ancestors(graph, step):
            yield DefinitionProblem(
                None, step, f"top-up step {named!r} is not an earlier step of {step!r}")


def parse_contract(text: str, file: str, catalogue: Catalogue) -> Contract:
    """Parse and check one contract file, or DefinitionError naming the file and every reason."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DefinitionError([DefinitionProblem(file, None, f"YAML syntax error: {error}")]) from None
    if not isinstance(data, dict):
        raise DefinitionError([DefinitionProblem(file, None, "expected a mapping")])
    try:
        contract = Contract.model_validate(data)
    except ValidationError as error:
        raise DefinitionError(problems_from_validation(error, data, file)) from None
    if problems := check_contract(contract, catalogue):
        raise DefinitionError([p.in_file(file) for p in problems])
    return contract


def load_contracts(directory: Path, catalogue: Catalogue) -> Contracts:
    """Every contract under `directory`, or DefinitionError listing every problem."""
    problems: list[DefinitionProblem] = []
    contracts: list[Contract] = []
    for path in definition_files([directory]) if directory.is_dir() else []:
        try:
            contracts.append(parse_contract(path.read_text(encoding="utf-8"), str(path), catalogue))
        except DefinitionError as error:
            problems.extend(error.problems)
    keys = [c.key for c in contracts]
    problems.extend(
        DefinitionProblem(str(directory), None, f"two contracts {k}")
        for k in sorted({k for k in keys if keys.count(k) > 1})
    )
    if problems:
        raise DefinitionError(problems)
    return Contracts(contracts, catalogue)
