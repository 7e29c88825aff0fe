"""Property: validation accepts every acyclic step graph and refuses every cyclic one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pathways.graph import critical_path, max_parallelism, topological_order
from pathways.model import PathwayDefinition
from pathways.validation import problems_from_validation


@st.composite
def step_graphs(draw: st.DrawFn) -> tuple[list[str], set[tuple[int, int]]]:
    """Shuffled step ids and dependency edges (i, j): step j waits for step i, with i < j."""
    size = draw(st.integers(min_value=1, max_value=12))
    pairs = [(i, j) for i in range(size) for j in range(i + 1, size)]
    edges = set(draw(st.lists(st.sampled_from(pairs), unique=True))) if pairs else set()
    ids = draw(st.permutations([f"step-{n}" for n in range(size)]))
    return list(ids), edges


def _definition(ids: list[str], edges: set[tuple[int, int]]) -> dict[str, Any]:
    steps = [
        {
            "id": step_id,
            "title": step_id,
            "role": "care",
            "after": sorted(ids[i] for i, j in edges if j == index),
            "sla": {"accept_within": "PT1H", "complete_within": f"P{index + 1}D"},
        }
        for index, step_id in enumerate(ids)
    ]
    return {
        "id": "generated",
        "version": 1,
        "title": "Generated",
        "lead_provider": {"id": "lead", "name": "Lead"},
        "roles": [{"id": "care", "title": "Care", "providers": [{"id": "p", "name": "P"}]}],
        "steps": steps,
    }


@settings(max_examples=150, deadline=None)
@given(step_graphs())
def test_every_acyclic_graph_is_accepted(graph: tuple[list[str], set[tuple[int, int]]]) -> None:
    ids, edges = graph
    definition = PathwayDefinition.model_validate(_definition(ids, edges))
    order = topological_order(definition)
    assert all(order.index(ids[i]) < order.index(ids[j]) for i, j in edges)


@settings(max_examples=100, deadline=None)
@given(step_graphs())
def test_analysis_matches_brute_force(graph: tuple[list[str], set[tuple[int, int]]]) -> None:
    ids, edges = graph
    definition = PathwayDefinition.model_validate(_definition(ids, edges))
    dag = nx.DiGraph([(ids[i], ids[j]) for i, j in edges])
    dag.add_nodes_from(ids)
    days = {step_id: timedelta(days=index + 1) for index, step_id in enumerate(ids)}  # P{index+1}D
    chains = [[node] for node in dag] + [
        path
        for source in dag
        for sink in dag
        for path in nx.all_simple_paths(dag, source, sink)
    ]
    path = critical_path(definition)
    assert path.lead_time == max(sum((days[s] for s in chain), timedelta()) for chain in chains)
    assert path.lead_time == sum((days[s] for s in path.steps), timedelta())
    assert list(path.steps) in chains
    if len(ids) <= 8:  # enumerating antichains is exponential: compare on small graphs only
        closure = nx.transitive_closure_dag(dag)
        assert max_parallelism(definition) == max(len(a) for a in nx.antichains(closure))


@settings(max_examples=150, deadline=None)
@given(step_graphs(), st.data())
def test_every_cyclic_graph_is_refused(graph: tuple[list[str], set[tuple[int, int]]], data: st.DataObject) -> None:
    ids, edges = graph
    if not edges:
        edges = {(0, len(ids))}
        ids = [*ids, f"step-{len(ids)}"]
    forward = nx.DiGraph(list(edges))
    low = data.draw(st.sampled_from(sorted(forward.nodes)))
    descendants = sorted(nx.descendants(forward, low))
    if not descendants:  # a sink: pick an edge's ends instead
        low, high = data.draw(st.sampled_from(sorted(edges)))
    else:
        high = data.draw(st.sampled_from(descendants))
    raw = _definition(ids, edges | {(high, low)})  # the back edge closes a cycle through low
    with pytest.raises(ValidationError) as caught:
        PathwayDefinition.model_validate(raw)
    cycles = [p for p in problems_from_validation(caught.value, raw) if "dependency cycle" in p.reason]
    assert cycles
    assert any(ids[low] in p.reason and ids[high] in p.reason for p in cycles)
