"""Contract terms are validated like definitions: every problem named with its file, none
skipped; the shipped contract loads and pins a definition in the shipped catalogue."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pathways.settlement.terms import load_contracts, parse_contract
from pathways.validation import DefinitionError
from tests.settlement.support import CATALOGUE, CONTRACTS, ROOT

SHIPPED = (ROOT / "pathways" / "contracts" / "urgent-community-response.yaml").read_text()


def _problems(text: str) -> str:
    with pytest.raises(DefinitionError) as refused:
        parse_contract(text, "broken.yaml", CATALOGUE)
    assert all(p.file == "broken.yaml" for p in refused.value.problems)
    return str(refused.value)


def test_shipped_contract_is_valid_and_in_effect_for_new_pathways() -> None:
    (contract,) = CONTRACTS.all
    assert contract.key == "ucr-alliance-subcontract@1"
    when = datetime(2026, 10, 1, tzinfo=UTC)
    assert CONTRACTS.for_pathway("urgent-community-response@1", when) is contract
    assert CONTRACTS.for_pathway("urgent-community-response@1",
                                 datetime(2026, 3, 1, tzinfo=UTC)) is None
    assert CONTRACTS.for_pathway("hip-replacement-d2a@1", when) is None


@pytest.mark.parametrize(("change", "reason"), [
    (("role: home-care", "role: plumbing"), "role 'plumbing' is not in urgent-community-response@1"),
    (("withhold_percent: 5", "withhold_percent: 30"), "withhold_percent must be 0 or between 5 and 20"),
    (("base: 3500", "base: 35.5"), "base"),
    (("base: 18000", "base: 180.0"), "base"),
    (("base: 12000", "base: -1"), "base"),
    (("{step: urgent-response, within: PT6H}", "{step: gp-follow-up, within: PT6H}"),
     "top-up step 'gp-follow-up' is not an earlier step of 'step-up-admission'"),
    (("    dont-know: 50\n", ""), "missing ['dont-know']"),
    (("default: neither-good-nor-poor", "default: meh"), "default"),
    (("kestrel-home-care: 20", "nobody-at-all: 20"), "alliance member 'nobody-at-all'"),
    (("max_adjust_percent: 10", "max_adjust_percent: 25"), "max_adjust_percent"),
    (("definition: urgent-community-response@1", "definition: urgent-community-response@9"),
     "has no version 9"),
    (("currency: GBP", "currency: USD"), "currency"),
    (("  stop_gain_percent: 20\n", "  stop_gain_percent: 20\n  surprise: 1\n"), "surprise"),
])
def test_broken_terms_are_refused_with_the_reason(change: tuple[str, str], reason: str) -> None:
    old, new = change
    assert old in SHIPPED
    assert reason in _problems(SHIPPED.replace(old, new))


def test_every_problem_in_a_directory_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SHIPPED.replace("role: home-care", "role: plumbing"))
    (tmp_path / "b.yaml").write_text("id: [unclosed")
    with pytest.raises(DefinitionError) as refused:
        load_contracts(tmp_path, CATALOGUE)
    files = {Path(p.file or "").name for p in refused.value.problems}
    assert files == {"a.yaml", "b.yaml"}
