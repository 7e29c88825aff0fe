"""Random command sequences: the engine's invariants hold whatever providers and coordinators do."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathways import commands as cmd
from pathways.engine import PathwayRun
from pathways.state import PathwayState, PathwayStatus, StepStatus, TaskStatus
from tests.engine.engine_builders import T0, definition, start, step

DEFN = definition(
    step("assess", "gp", handover=[{"name": "route", "type": "coded", "codes": ["a", "b"]}]),
    step("visit", "nurse", ("assess",), when={"step": "assess", "field": "route", "equals": "a"},
         accept="PT2H", complete="PT12H"),
    step("bloods", "lab", ("assess",), accept="PT2H", complete="PT6H",
         recurrence={"every": "PT8H", "count": 3}),
    step("review", "gp", ("visit", "bloods")),
    escalation=[
        {"at": "-PT1H", "action": "remind-provider", "clock": "accept"},
        {"at": "PT0S", "action": "alert-coordinator", "clock": "accept"},
        {"at": "PT1H", "action": "reassign"},
        {"at": "PT2H", "action": "mark-breached"},
    ],
)
PROVIDERS = ["gp-a", "gp-b", "gp-c", "nurse-a", "nurse-b", "lab-a"]
OUTPUTS: list[dict[str, Any]] = [{}, {"route": "a"}, {"route": "b"}, {"route": "z"}, {"x": 1}]
ANN = "coordinator:ann"


def _command(data: st.DataObject, run: PathwayRun) -> tuple[str, Any]:
    handover_ids = sorted(run.state.handovers) + ["ghost.1"]
    kind = data.draw(st.sampled_from(
        ["provider"] * 6 + ["reassign", "extend", "hold", "resume", "cancel", "note", "ack",
                            "resolve"]))
    handover_id = data.draw(st.sampled_from(handover_ids))
    if kind == "provider":
        handover = run.state.handovers.get(handover_id)
        own = handover.provider_id if handover else "gp-a"
        return kind, cmd.ProviderCommand(
            handover_id=handover_id,
            provider_id=data.draw(st.sampled_from([own, own, *PROVIDERS])),
            status=data.draw(st.sampled_from(list(TaskStatus))),
            output=data.draw(st.sampled_from(OUTPUTS)),
            reason=data.draw(st.sampled_from([None, "no capacity"])),
            expected_version=data.draw(st.sampled_from([None, handover.version if handover else 1,
                                                        99])),
            actor="provider:x",
        )
    escalation_id = data.draw(st.integers(1, len(run.state.escalations) + 1))
    return kind, {
        "reassign": lambda: cmd.Reassign(handover_id=handover_id,
                                         provider_id=data.draw(st.sampled_from(PROVIDERS)),
                                         reason="r", actor=ANN),
        "extend": lambda: cmd.ExtendDue(handover_id=handover_id, by=timedelta(hours=3),
                                        reason="r", actor=ANN),
        "hold": lambda: cmd.HoldPathway(reason="r", actor=ANN),
        "resume": lambda: cmd.ResumePathway(actor=ANN),
        "cancel": lambda: cmd.CancelPathway(reason="r", actor=ANN),
        "note": lambda: cmd.AddNote(text="t", actor=ANN),
        "ack": lambda: cmd.EscalationAction(escalation_id=escalation_id, actor=ANN),
        "resolve": lambda: cmd.EscalationAction(escalation_id=escalation_id, actor=ANN),
    }[kind]()


def _pair(run: PathwayRun, kind: str) -> tuple[Any, Any]:
    name = {"ack": "acknowledge"}.get(kind, kind)
    return getattr(run, f"check_{name}"), getattr(run, f"apply_{name}")


def _check_invariants(run: PathwayRun, before: PathwayState, now: Any) -> None:
    state = run.state
    for handover_id, old in before.handovers.items():
        new = state.handovers[handover_id]
        assert new.version >= old.version
        if old.status is TaskStatus.COMPLETED:
            assert new == old, "a completed handover never changes"
    finished = all(s.status in (StepStatus.DONE, StepStatus.SKIPPED) for s in state.steps.values())
    assert (state.status is PathwayStatus.COMPLETED) == finished
    if state.status is PathwayStatus.ACTIVE:
        wakeup = run.next_wakeup()
        assert wakeup is None or wakeup > now, "a tick leaves nothing overdue"
    else:
        assert run.next_wakeup() is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_command_sequences_keep_the_invariants(data: st.DataObject) -> None:
    run = start(DEFN)
    now = T0
    seq = 0
    for _ in range(data.draw(st.integers(5, 40))):
        now += data.draw(st.sampled_from([timedelta(0), timedelta(minutes=20), timedelta(hours=3),
                                          timedelta(hours=9)]))
        run.tick(now)
        before = run.state.model_copy(deep=True)
        kind, command = _command(data, run)
        check, apply = _pair(run, kind)
        try:
            check(command)
        except cmd.Refusal:
            assert run.state == before, "a validator never changes state"
            try:
                apply(command, now)
            except cmd.Refusal:
                pass
            else:
                raise AssertionError("apply accepted what check refused")
            assert run.state == before, "a refused command leaves the state equal"
        else:
            try:
                apply(command, now)
            except cmd.Refusal as refusal:
                assert refusal.kind == "non-conforming"
                handover = run.state.handovers[command.handover_id]
                counted = before.handovers[command.handover_id].refused_deliveries + 1
                assert handover.refused_deliveries == counted
                assert handover.model_copy(update={"refused_deliveries": counted - 1}) == \
                    before.handovers[command.handover_id]
        _check_invariants(run, before, now)
        events = run.take_effects().events
        assert [e.seq for e in events] == list(range(seq + 1, seq + 1 + len(events)))
        seq = run.state.event_seq
    assert PathwayState.model_validate_json(run.state.model_dump_json()) == run.state
