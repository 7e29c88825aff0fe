"""Graph analysis: order, critical path and lead time worked out by hand, width, diagrams."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from pathways.graph import (
    critical_path,
    dependency_graph,
    max_parallelism,
    mermaid_id,
    planned_duration,
    to_dot,
    to_mermaid,
    topological_order,
)
from pathways.model import PathwayDefinition


@pytest.fixture
def definition(raw: dict[str, Any]) -> PathwayDefinition:
    return PathwayDefinition.model_validate(raw)


def _step(step_id: str, after: list[str], days: int) -> dict[str, Any]:
    return {
        "id": step_id,
        "title": step_id.title(),
        "role": "hospital",
        "after": after,
        "sla": {"accept_within": "PT1H", "complete_within": f"P{days}D"},
    }


def _with_steps(raw: dict[str, Any], steps: list[dict[str, Any]]) -> PathwayDefinition:
    return PathwayDefinition.model_validate(raw | {"escalation": [], "steps": steps})


def test_topological_order_puts_dependencies_first(definition: PathwayDefinition) -> None:
    assert topological_order(definition) == ["surgery", "discharge-summary", "home-therapy", "review"]


def test_recurring_step_spans_its_repeats(definition: PathwayDefinition) -> None:
    # every P7D, 3 times, each within P3D: 2 * 7 + 3 days
    assert planned_duration(definition.step("home-therapy")) == timedelta(days=17)


def test_critical_path_goes_through_the_longest_branch(definition: PathwayDefinition) -> None:
    # surgery 2 d; discharge-summary 1 d or home-therapy 17 d; review 2 d: 2 + 17 + 2 = 21 days
    path = critical_path(definition)
    assert path.steps == ("surgery", "home-therapy", "review")
    assert path.lead_time == timedelta(days=21)


def test_critical_path_of_a_diamond_with_a_long_side_branch(raw: dict[str, Any]) -> None:
    # a(1) -> b(5) -> d(1); a -> c(2) -> d; a -> e(9) alone: a-e = 10 beats a-b-d = 7
    definition = _with_steps(
        raw,
        [_step("a", [], 1), _step("b", ["a"], 5), _step("c", ["a"], 2), _step("d", ["b", "c"], 1),
         _step("e", ["a"], 9)],
    )
    path = critical_path(definition)
    assert (path.steps, path.lead_time) == (("a", "e"), timedelta(days=10))


def test_max_parallelism_is_the_largest_antichain(raw: dict[str, Any], definition: PathwayDefinition) -> None:
    assert max_parallelism(definition) == 2
    chain = _with_steps(raw, [_step("a", [], 1), _step("b", ["a"], 1), _step("c", ["b"], 1)])
    assert max_parallelism(chain) == 1
    # x and y in parallel, then z; w independent of all: {x, y, w} can be open at once
    mixed = _with_steps(
        raw, [_step("x", [], 1), _step("y", [], 1), _step("z", ["x", "y"], 1), _step("w", [], 1)]
    )
    assert max_parallelism(mixed) == 3


def test_dependency_graph_has_every_step_and_edge(definition: PathwayDefinition) -> None:
    graph = dependency_graph(definition)
    assert set(graph.nodes) == {s.id for s in definition.steps}
    assert set(graph.edges) == {(d, s.id) for s in definition.steps for d in s.after}


def test_mermaid_has_every_node_and_edge_and_marks_conditions(definition: PathwayDefinition) -> None:
    text = to_mermaid(definition)
    assert text.startswith("flowchart TD\n")
    nodes = dict(re.findall(r"^    (s_\w+)[\[{]+\"(.*?)\"[\]}]+$", text, re.MULTILINE))
    assert set(nodes) == {mermaid_id(s.id) for s in definition.steps}
    edges = set(re.findall(r"^    (s_\w+) --> (s_\w+)$", text, re.MULTILINE))
    assert edges == {(mermaid_id(d), mermaid_id(s.id)) for s in definition.steps for d in s.after}
    assert 'if surgery.route in [#quot;pathway-1#quot;, #quot;pathway-2#quot;]' in nodes["s_home_therapy"]
    assert re.search(r"^    s_home_therapy\{\{", text, re.MULTILINE)
    assert "    class s_home_therapy conditional" in text


def test_dot_has_every_node_and_edge_and_marks_conditions(definition: PathwayDefinition) -> None:
    text = to_dot(definition)
    assert text.startswith('digraph "hip-fracture-discharge@1" {')
    nodes = dict(re.findall(r'^    "([\w-]+)" \[label="(?:[^"\\]|\\.)*"(.*)\];$', text, re.MULTILINE))
    assert set(nodes) == {s.id for s in definition.steps}
    assert nodes["home-therapy"] == ", style=dashed"
    assert nodes["surgery"] == ""
    edges = set(re.findall(r'^    "([\w-]+)" -> "([\w-]+)";$', text, re.MULTILINE))
    assert edges == {(d, s.id) for s in definition.steps for d in s.after}


def test_dot_escapes_quotes_in_titles(raw: dict[str, Any]) -> None:
    raw["steps"][0]["title"] = 'The "big" operation'
    assert r'label="The \"big\" operation' in to_dot(PathwayDefinition.model_validate(raw))
