"""Graph analysis of a pathway: order, critical path, planned lead time, parallelism, diagrams.

A pathway is a DAG of handovers (edge: dependency -> dependent). Read as a supply chain, its
critical path is the chain of handovers that sets the planned lead time (each step taking its
full SLA), and its width is the most handovers that can be open at once: the work in progress
one patient can put on the providers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import networkx as nx

from pathways.elements import DefinitionParts, Step, format_duration


@dataclass(frozen=True)
class CriticalPath:
    """The longest chain of steps by planned duration, and that duration (the planned lead time)."""

    steps: tuple[str, ...]
    lead_time: timedelta


def dependency_graph(definition: DefinitionParts) -> nx.DiGraph:
    """DiGraph of step ids, edges from each dependency to its dependent; nodes carry `step`.

    Dependencies on unknown steps are left out, so validation can analyse a broken graph too.
    """
    graph = nx.DiGraph()
    for step in definition.steps:
        graph.add_node(step.id, step=step)
    graph.add_edges_from(
        (dependency, step.id) for step in definition.steps for dependency in step.after if dependency in graph
    )
    return graph


def topological_order(definition: DefinitionParts) -> list[str]:
    """Step ids so that every step follows its dependencies; ties keep the definition's order."""
    position = {step.id: index for index, step in enumerate(definition.steps)}
    return list(nx.lexicographical_topological_sort(dependency_graph(definition), key=position.get))


def planned_duration(step: Step) -> timedelta:
    """Time a step occupies at its SLA: a recurring step spans its repeats plus the last one."""
    if step.recurrence is None:
        return step.sla.complete_within
    return (step.recurrence.count - 1) * step.recurrence.every + step.sla.complete_within


def critical_path(definition: DefinitionParts) -> CriticalPath:
    """Longest path by planned durations (ties: the first listed dependency, the first end step)."""
    graph = dependency_graph(definition)
    finish: dict[str, timedelta] = {}
    via: dict[str, str | None] = {}
    for node in topological_order(definition):
        before = max(graph.predecessors(node), key=finish.__getitem__, default=None)
        start = finish[before] if before is not None else timedelta(0)
        finish[node] = start + planned_duration(graph.nodes[node]["step"])
        via[node] = before
    end = max(finish, key=finish.__getitem__)
    lead_time = finish[end]
    last: str | None = end
    path: list[str] = []
    while last is not None:
        path.append(last)
        last = via[last]
    return CriticalPath(tuple(reversed(path)), lead_time)


def max_parallelism(definition: DefinitionParts) -> int:
    """Most steps that can be open at once: the largest antichain, by Dilworth's theorem.

    Width = steps - maximum matching in the bipartite split of the transitive closure (minimum
    chain cover), polynomial where enumerating antichains is exponential.
    """
    closure = nx.transitive_closure_dag(dependency_graph(definition))
    split = nx.Graph()
    tops = [("out", node) for node in closure]
    split.add_nodes_from(tops)
    split.add_nodes_from(("in", node) for node in closure)
    split.add_edges_from((("out", a), ("in", b)) for a, b in closure.edges)
    matching = nx.bipartite.hopcroft_karp_matching(split, top_nodes=tops)
    return int(closure.number_of_nodes()) - len(matching) // 2


def _label_lines(step: Step) -> list[str]:
    lines = [step.title, f"{step.id} ({step.role}) {format_duration(planned_duration(step))}"]
    if step.when is not None:
        lines.append(f"if {step.when.describe()}")
    return lines


def mermaid_id(step_id: str) -> str:
    """Mermaid node id for a step (hyphens read as edges in Mermaid, so they become _)."""
    return "s_" + step_id.replace("-", "_")


def to_mermaid(definition: DefinitionParts) -> str:
    """Mermaid `flowchart TD`; conditional steps are hexagons with a dashed border."""
    lines = ["flowchart TD"]
    for step in definition.steps:
        label = "<br/>".join(_label_lines(step)).replace('"', "#quot;")
        shape = ('{{"', '"}}') if step.when else ('["', '"]')
        lines.append(f"    {mermaid_id(step.id)}{shape[0]}{label}{shape[1]}")
    lines.extend(
        f"    {mermaid_id(dependency)} --> {mermaid_id(step.id)}"
        for step in definition.steps
        for dependency in step.after
    )
    conditional = [mermaid_id(s.id) for s in definition.steps if s.when]
    if conditional:
        lines.append("    classDef conditional stroke-dasharray: 5 5")
        lines.append(f"    class {','.join(conditional)} conditional")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def to_dot(definition: DefinitionParts) -> str:
    """Graphviz DOT digraph; conditional steps are dashed."""
    lines = [f"digraph {_dot_quote(definition.key)} {{", "    rankdir=TB;", "    node [shape=box];"]
    for step in definition.steps:
        style = ", style=dashed" if step.when else ""
        label = _dot_quote("\n".join(_label_lines(step)))
        lines.append(f"    {_dot_quote(step.id)} [label={label}{style}];")
    lines.extend(
        f"    {_dot_quote(dependency)} -> {_dot_quote(step.id)};"
        for step in definition.steps
        for dependency in step.after
    )
    lines.append("}")
    return "\n".join(lines) + "\n"
