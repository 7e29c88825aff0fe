"""Cross-reference and graph checks of a pathway definition, and the typed error they raise.

Field-level checks (types, durations, unknown keys) are pydantic's; everything that needs the
whole definition (ids that must match, the step graph, escalation ladders, conditions) is here.
`PathwayDefinition` runs `check_definition` as its final validator, so the catalogue loader and
code constructing definitions by hand get the same guarantees. Every problem names the file, the
step and the reason, so an author can fix all of them in one pass.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import networkx as nx
from pydantic import ValidationError

from pathways.elements import (
    Clock,
    Condition,
    DefinitionParts,
    EscalationAction,
    EscalationRung,
    FieldType,
    HandoverField,
    Provider,
    Scalar,
    Step,
    format_duration,
)
from pathways.graph import dependency_graph


@dataclass(frozen=True)
class DefinitionProblem:
    """One reason a definition is refused: where (file, step) and why."""

    file: str | None
    step: str | None
    reason: str

    def __str__(self) -> str:
        place = [part for part in (self.file, self.step and f"step {self.step}") if part]
        return ": ".join([*place, self.reason])

    def in_file(self, file: str) -> DefinitionProblem:
        return DefinitionProblem(file, self.step, self.reason)


class DefinitionError(ValueError):
    """One or more definitions are invalid; `problems` lists every one found, not just the first."""

    def __init__(self, problems: Sequence[DefinitionProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def check_definition(definition: DefinitionParts) -> list[DefinitionProblem]:
    """All cross-reference and graph problems of a field-valid definition (empty when sound)."""
    graph = dependency_graph(definition)
    return [
        *_duplicates("role id", (r.id for r in definition.roles)),
        *_roles_without_providers(definition),
        *_provider_clashes(definition),
        *_duplicates("step id", (s.id for s in definition.steps), per_step=True),
        *_step_references(definition),
        *_cycles(definition, graph),
        *_unreachable(definition, graph),
        *_ladder_problems(definition),
        *_condition_problems(definition, graph),
    ]


def problems_from_validation(
    error: ValidationError, data: Any, file: str | None = None
) -> list[DefinitionProblem]:
    """Turn pydantic's errors into problems, naming the step a `loc` like steps.3.sla points into."""
    whole: list[DefinitionProblem] = []
    fields: list[DefinitionProblem] = []
    items = error.errors()
    for item in items:
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, DefinitionError):
            whole.extend(p.in_file(file) if file else p for p in cause.problems)
        elif not _follows_from_items(item, items):
            fields.append(_problem_from_error(item, data, file))
    return [*_merge_alternatives(fields), *whole]


# --- pydantic error formatting --------------------------------------------------------------


def _follows_from_items(item: Any, items: list[Any]) -> bool:
    """A list "too short" only because its items failed says nothing the item errors don't."""
    loc = tuple(item["loc"])
    inner = (tuple(other["loc"])[: len(loc)] == loc for other in items if len(other["loc"]) > len(loc))
    return item["type"] == "too_short" and any(inner)


def _problem_from_error(item: Any, data: Any, file: str | None) -> DefinitionProblem:
    loc = _without_union_tags(tuple(item["loc"]), data)
    step = None
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        step = _item_name(_lookup(data, loc[:2])) or f"#{loc[1] + 1}"
        path = _render_loc(_lookup(data, ("steps", loc[1])), loc[2:])
    else:
        path = _render_loc(data, loc)
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        reason = f"unknown key {path!r}"
    elif item["type"] == "missing":
        reason = f"missing required key {path!r}"
    else:
        reason = f"{path}: {message}" if path else message
    return DefinitionProblem(file, step, reason)


def _without_union_tags(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop the member names pydantic appends for unions (when.equals.str -> when.equals)."""
    while loc and isinstance(loc[-1], str) and not isinstance(_lookup(data, loc[:-1]), dict):
        loc = loc[:-1]
    return loc


def _merge_alternatives(problems: list[DefinitionProblem]) -> list[DefinitionProblem]:
    """One problem per place for a value no member of a union accepts ("a valid string or ...")."""
    merged: dict[tuple[str | None, str | None, str], list[str]] = {}
    for problem in problems:
        place, _, message = problem.reason.partition(": ")
        merged.setdefault((problem.file, problem.step, place), []).append(message)
    result: list[DefinitionProblem] = []
    for (file, step, place), messages in merged.items():
        if len(messages) == 1 or not all(m.startswith("Input should be ") for m in messages):
            result.extend(DefinitionProblem(file, step, f"{place}: {m}" if m else place) for m in messages)
        else:
            either = " or ".join(m.removeprefix("Input should be ") for m in messages)
            result.append(DefinitionProblem(file, step, f"{place}: Input should be {either}"))
    return result


def _render_loc(node: Any, loc: tuple[Any, ...]) -> str:
    """sla.accept_within stays; roles.0.providers.1 -> roles[gp].providers[nsh] (ids, else index)."""
    text = ""
    for part in loc:
        node = _lookup(node, (part,))
        if isinstance(part, int):
            text += f"[{_item_name(node) or part}]"
        else:
            text += f".{part}"
    return text.lstrip(".")


def _lookup(data: Any, path: Iterable[Any]) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _item_name(item: Any) -> str | None:
    """The id (or, for handover fields, the name) a list item is known by in the YAML."""
    if not isinstance(item, dict):
        return None
    name = item.get("id", item.get("name"))
    return name if isinstance(name, str) else None


# --- identity checks ------------------------------------------------------------------------


def _duplicates(
    what: str, ids: Iterable[str], *, per_step: bool = False
) -> Iterator[DefinitionProblem]:
    for ident, count in Counter(ids).items():
        if count > 1:
            step = ident if per_step else None
            yield DefinitionProblem(None, step, f"duplicate {what} {ident!r} ({count} times)")


def _roles_without_providers(definition: DefinitionParts) -> Iterator[DefinitionProblem]:
    for role in definition.roles:
        if not role.providers:
            yield DefinitionProblem(None, None, f"role {role.id!r} has no providers")


def _provider_clashes(definition: DefinitionParts) -> Iterator[DefinitionProblem]:
    """A provider id names one organisation: the same id must carry the same name everywhere."""
    seen: dict[str, tuple[Provider, str]] = {definition.lead_provider.id: (definition.lead_provider, "lead_provider")}
    for role in definition.roles:
        if len({p.id for p in role.providers}) != len(role.providers):
            yield DefinitionProblem(None, None, f"role {role.id!r} lists a provider twice")
        for provider in {p.id: p for p in role.providers}.values():
            first = seen.setdefault(provider.id, (provider, f"role {role.id!r}"))
            if first[0].name != provider.name:
                yield DefinitionProblem(
                    None,
                    None,
                    f"duplicate provider id {provider.id!r} in role {role.id!r}: "
                    f"{provider.name!r} here but {first[0].name!r} in {first[1]}",
                )


def _step_references(definition: DefinitionParts) -> Iterator[DefinitionProblem]:
    steps = {s.id for s in definition.steps}
    roles = {r.id for r in definition.roles}
    for step in definition.steps:
        if step.role not in roles:
            yield DefinitionProblem(None, step.id, f"unknown role {step.role!r}")
        for dependency in step.after:
            if dependency not in steps:
                yield DefinitionProblem(None, step.id, f"depends on unknown step {dependency!r}")
        yield from (
            DefinitionProblem(None, step.id, f"lists {name!r} twice in after")
            for name, count in Counter(step.after).items()
            if count > 1
        )
        yield from (
            DefinitionProblem(None, step.id, f"duplicate handover field {name!r}")
            for name, count in Counter(f.name for f in step.handover).items()
            if count > 1
        )


# --- graph checks ---------------------------------------------------------------------------


def _cycles(definition: DefinitionParts, graph: nx.DiGraph) -> Iterator[DefinitionProblem]:
    """One problem per strongly connected tangle, printed from its earliest-listed step."""
    order = {s.id: index for index, s in enumerate(definition.steps)}
    tangles = [c for c in nx.strongly_connected_components(graph) if _is_cyclic(graph, c)]
    for tangle in sorted(tangles, key=lambda c: min(order[s] for s in c)):
        start = min(tangle, key=order.__getitem__)
        edges = nx.find_cycle(graph.subgraph(tangle), source=start)
        path = [edges[0][0], *(target for _, target in edges)]
        rotate = path.index(start)
        path = path[rotate:-1] + path[:rotate] + [start]
        yield DefinitionProblem(None, start, f"dependency cycle: {' -> '.join(path)}")


def _is_cyclic(graph: nx.DiGraph, component: set[str]) -> bool:
    node = next(iter(component))
    return len(component) > 1 or graph.has_edge(node, node)


def _unreachable(definition: DefinitionParts, graph: nx.DiGraph) -> Iterator[DefinitionProblem]:
    starts = [s.id for s in definition.steps if not s.after]
    if not starts:
        yield DefinitionProblem(None, None, "no step without dependencies: the pathway cannot start")
        return
    reachable = set(starts).union(*(nx.descendants(graph, s) for s in starts))
    reported = {n for c in nx.strongly_connected_components(graph) if _is_cyclic(graph, c) for n in c}
    reported |= {s.id for s in definition.steps if not set(s.after) <= graph.nodes}
    for step in definition.steps:
        if step.id not in reachable | reported:
            yield DefinitionProblem(
                None,
                step.id,
                f"unreachable from the start steps ({', '.join(starts)}): "
                "it waits for a step that can never complete",
            )


# --- escalation ladders ---------------------------------------------------------------------


def rung_offset(step: Step, rung: EscalationRung) -> timedelta:
    """When a rung fires, measured from the moment the step becomes ready."""
    due = step.sla.accept_within if rung.clock is Clock.ACCEPT else step.sla.complete_within
    return due + rung.at


def _ladder_problems(definition: DefinitionParts) -> Iterator[DefinitionProblem]:
    for step in definition.steps:
        ladder = definition.ladder(step)
        source = "its" if step.escalation is not None else "the pathway default"
        offsets = [rung_offset(step, rung) for rung in ladder]
        for number, (rung, offset) in enumerate(zip(ladder, offsets, strict=False), start=1):
            where = f"rung {number} of {source} escalation ladder ({_describe_rung(step, rung)})"
            if offset <= timedelta(0):
                yield DefinitionProblem(
                    None, step.id, f"{where} falls at or before the moment the step becomes ready"
                )
            elif number > 1 and offset <= offsets[number - 2]:
                yield DefinitionProblem(
                    None,
                    step.id,
                    f"escalation out of order: {where} is not later than rung {number - 1} "
                    f"({format_duration(offsets[number - 2])} after ready)",
                )


def authoring_problems(definition: DefinitionParts) -> list[DefinitionProblem]:
    """Rules for definitions written from now on, not for those already carried by running
    pathways (which must keep loading): checked when the catalogue is read, not by the model."""
    return list(_rungs_taking_accepted_work(definition))


def _rungs_taking_accepted_work(definition: DefinitionParts) -> Iterator[DefinitionProblem]:
    for step in definition.steps:
        source = "its" if step.escalation is not None else "the pathway default"
        for number, rung in enumerate(definition.ladder(step), start=1):
            if (
                rung.action is EscalationAction.REASSIGN
                and rung.clock is Clock.COMPLETE
                and not rung.take_accepted_work
            ):
                yield DefinitionProblem(
                    None,
                    step.id,
                    f"rung {number} of {source} escalation ladder reassigns on the complete "
                    "clock, which takes work away from a provider that accepted it: put it on "
                    "the accept clock, or say so with take_accepted_work: true",
                )


def _describe_rung(step: Step, rung: EscalationRung) -> str:
    return (
        f"{rung.action.value} at {format_duration(rung.at)} on the {rung.clock.value} clock"
        f" = {format_duration(rung_offset(step, rung))} after ready"
    )


# --- conditions -----------------------------------------------------------------------------


def _condition_problems(definition: DefinitionParts, graph: nx.DiGraph) -> Iterator[DefinitionProblem]:
    steps = {s.id: s for s in definition.steps}
    for step in definition.steps:
        condition = step.when
        if condition is None:
            continue
        source = steps.get(condition.step)
        if source is None:
            yield DefinitionProblem(None, step.id, f"condition refers to unknown step {condition.step!r}")
        elif condition.step not in nx.ancestors(graph, step.id):
            yield DefinitionProblem(
                None,
                step.id,
                f"condition refers to step {condition.step!r}, which is not an earlier step "
                "this one waits for (directly or through others)",
            )
        elif (field := source.field(condition.field)) is None:
            delivered = ", ".join(f.name for f in source.handover) or "nothing"
            yield DefinitionProblem(
                None,
                step.id,
                f"condition refers to field {condition.field!r}, which step {condition.step!r} "
                f"does not deliver in its handover (it delivers: {delivered})",
            )
        else:
            yield from (
                DefinitionProblem(None, step.id, reason) for reason in _value_problems(condition, field)
            )


def _compared_values(condition: Condition) -> tuple[Scalar, ...]:
    if condition.in_ is not None:
        return condition.in_
    return tuple(v for v in (condition.equals, condition.not_equals) if v is not None)


_ACCEPTS: dict[FieldType, tuple[type, ...]] = {
    FieldType.TEXT: (str,),
    FieldType.NUMBER: (int, float),
    FieldType.INTEGER: (int,),
    FieldType.BOOLEAN: (bool,),
    FieldType.DATE: (str,),
    FieldType.DATE_TIME: (str,),
    FieldType.CODED: (str,),
    FieldType.DOCUMENT: (),
}


def _value_problems(condition: Condition, field: HandoverField) -> Iterator[str]:
    for value in _compared_values(condition):
        accepted = _ACCEPTS[field.type]
        is_bool = isinstance(value, bool)
        if not isinstance(value, accepted) or (is_bool and bool not in accepted):
            yield (
                f"condition compares {field.type.value} field {field.name!r} "
                f"with {json.dumps(value)}, a value of the wrong type"
            )
        elif field.type is FieldType.CODED and value not in field.codes:
            yield (
                f"condition compares coded field {field.name!r} with {value!r}, "
                f"which is not one of its codes ({', '.join(field.codes)})"
            )
