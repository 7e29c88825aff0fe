"""No command can break a pathway: whatever a client sends, either the command model refuses it
at the door (pydantic), or check_* refuses it, or apply_* applies it; apply_* never raises
anything but Refusal (an exception in an Update handler would fail the workflow task)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pathways import commands as cmd
from pathways.engine import PathwayRun
from pathways.state import RULES_ORIGINAL, PathwayState, TaskStatus
from tests.engine.engine_builders import PATIENT, T0, definition, start, step
from tests.engine.test_engine_properties import DEFN as FLOW

DEFN = definition(
    step("assess", "gp", handover=[
        {"name": "route", "type": "coded", "codes": ["a", "b"]},
        {"name": "note", "type": "text", "required": False},
        {"name": "score", "type": "integer", "required": False},
        {"name": "weight", "type": "number", "required": False},
        {"name": "seen", "type": "date-time", "required": False},
        {"name": "on", "type": "date", "required": False},
        {"name": "ok", "type": "boolean", "required": False},
        {"name": "letter", "type": "document", "required": False},
    ]),
    step("visit", "nurse", ("assess",), accept="PT2H", complete="PT12H"),
    escalation=[{"at": "PT0S", "action": "alert-coordinator", "clock": "accept"},
                {"at": "PT1H", "action": "reassign", "clock": "accept"}],
)
FIELDS = ["route", "note", "score", "weight", "seen", "on", "ok", "letter", "x", "9434765919"]

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.integers(-10**40, 10**40)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
    | st.sampled_from(["a", "b", "2026-02-30", "2026-01-05", "2026-01-05T10:00:00Z",
                       "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00-12:00", "T", "x" * 70_000])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["url", "reference", "title", "content_type", "x"]),
                      inner, max_size=4),
    max_leaves=8,
)
TEXT = st.none() | st.text(max_size=20) | st.sampled_from(["", " ", "x" * 3000])
DURATION = st.none() | st.sampled_from(["PT30M", "P1D", "P366D", "P367D", "P99999999D", "-PT1H",
                                        "PT0S", "P1Y", "nonsense"]) | st.timedeltas()
INSTANT = st.none() | st.datetimes(timezones=st.none() | st.just(UTC)) | st.sampled_from(
    ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2026-01-06T09:00:00Z", "yesterday"])
IDS = st.sampled_from(["assess.1", "visit.1", "ghost.1", "", "x" * 200])
PROVIDERS = st.sampled_from(["gp-a", "gp-b", "gp-c", "nurse-a", "nurse-b", "lab-a", "", "y" * 50])
KINDS = ["provider", "reassign", "extend", "hold", "resume", "cancel", "note", "acknowledge",
         "resolve"]
MODELS = {
    "provider": cmd.ProviderCommand, "reassign": cmd.Reassign, "extend": cmd.ExtendDue,
    "hold": cmd.HoldPathway, "resume": cmd.ResumePathway, "cancel": cmd.CancelPathway,
    "note": cmd.AddNote, "acknowledge": cmd.EscalationAction, "resolve": cmd.EscalationAction,
}


def _raw(data: st.DataObject, kind: str) -> dict[str, Any]:
    """Fields as a client could send them (JSON-ish), many of them invalid."""
    draw = data.draw
    return {
        "provider": lambda: {
            "handover_id": draw(IDS), "provider_id": draw(PROVIDERS),
            "status": draw(st.sampled_from([*TaskStatus, "bogus"])),
            "output": draw(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=5)),
            "reason": draw(TEXT), "expected_version": draw(st.none() | st.integers()),
            "actor": "provider:x"},
        "reassign": lambda: {"handover_id": draw(IDS), "provider_id": draw(PROVIDERS),
                             "reason": draw(TEXT), "actor": "c"},
        "extend": lambda: {"handover_id": draw(IDS), "by": draw(DURATION),
                           "until": draw(INSTANT), "reason": "r", "actor": "c"},
        "hold": lambda: {"reason": draw(TEXT), "actor": "c"},
        "resume": lambda: {"actor": draw(st.sampled_from(["c", ""]))},
        "cancel": lambda: {"reason": draw(TEXT), "actor": "c"},
        "note": lambda: {"text": draw(TEXT), "actor": "c"},
        "acknowledge": lambda: {"escalation_id": draw(st.integers()), "actor": "c",
                                "note": draw(TEXT)},
        "resolve": lambda: {"escalation_id": draw(st.integers(-1, 4)), "actor": "c",
                            "note": draw(TEXT)},
    }[kind]()


def _send(run: PathwayRun, kind: str, raw: dict[str, Any], now: datetime) -> None:
    try:
        command = MODELS[kind].model_validate(raw)
    except ValidationError:
        return  # refused at the door: the Update's argument never reaches the workflow
    check, apply = getattr(run, f"check_{kind}"), getattr(run, f"apply_{kind}")
    try:
        check(command)
    except cmd.Refusal:
        pass
    try:
        apply(command, now)
    except cmd.Refusal:
        pass


def _run(data: st.DataObject, run: PathwayRun) -> None:
    now = T0
    for _ in range(data.draw(st.integers(1, 25))):
        now += data.draw(st.sampled_from([timedelta(0), timedelta(minutes=50), timedelta(hours=5),
                                          timedelta(days=400)]))
        run.tick(now)
        kind = data.draw(st.sampled_from(KINDS))
        _send(run, kind, _raw(data, kind), now)
        run.take_effects()
    assert PathwayState.model_validate_json(run.state.model_dump_json()) == run.state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_commands_never_make_apply_raise_anything_but_refusal(data: st.DataObject) -> None:
    _run(data, start(DEFN))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_commands_on_a_branching_recurring_pathway(data: st.DataObject) -> None:
    _run(data, start(FLOW))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_commands_on_the_original_rules(data: st.DataObject) -> None:
    _run(data, PathwayRun.begin("pw-old", DEFN, PATIENT, T0, rules_version=RULES_ORIGINAL))


def test_the_carried_state_stays_far_below_the_payload_limit() -> None:
    run = start(DEFN)
    big = {"route": "a", "note": "x" * 32_000}
    assert cmd.json_size(big) < cmd.MAX_OUTPUT_BYTES
    for i in range(cmd.MAX_NOTES + 5):
        try:
            run.apply_note(cmd.AddNote(text="n" * cmd.MAX_NOTE, actor="c"), T0)
        except cmd.Refusal as refusal:
            assert i == cmd.MAX_NOTES and refusal.kind == "conflict"
            break
    run.apply_provider(cmd.ProviderCommand(handover_id="assess.1", provider_id="gp-a",
                                           status=TaskStatus.COMPLETED, output=big,
                                           actor="provider:gp-a"), T0)
    assert len(run.state.model_dump_json()) < 512 * 1024


def test_inline_handover_data_over_64_kib_is_refused_at_the_door() -> None:
    big = {"route": "a", "note": "x" * (cmd.MAX_OUTPUT_BYTES + 1)}
    try:
        cmd.ProviderCommand(handover_id="assess.1", provider_id="gp-a",
                            status=TaskStatus.COMPLETED, output=big, actor="provider:gp-a")
    except ValidationError as error:
        assert "at most 64 KiB" in str(error) and "xxxx" not in str(error)
    else:
        raise AssertionError("a 64 KiB+ delivery must be refused")
