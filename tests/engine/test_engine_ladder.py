"""The SLA ladder on a 2-day SLA: rungs and breach points fire once, in time order."""

from __future__ import annotations

from datetime import timedelta

from pathways.commands import ExtendDue, HoldPathway, ResumePathway
from pathways.engine import PathwayRun
from pathways.events import NotificationKind
from pathways.model import EscalationAction
from pathways.state import BusinessStatus, SlaState, TaskStatus
from tests.engine.engine_builders import HOOK, T0, command, complete, definition, kinds, start, step

H = timedelta(hours=1)

LADDER = [
    {"at": "-PT2H", "action": "remind-provider", "clock": "accept"},     # T0 + 2h
    {"at": "PT0S", "action": "alert-coordinator", "clock": "accept"},    # T0 + 4h
    {"at": "-PT4H", "action": "remind-provider"},                        # T0 + 44h
    {"at": "PT0S", "action": "mark-breached"},                           # T0 + 48h
    {"at": "PT2H", "action": "reassign"},                                # T0 + 50h
]
REFERRAL = definition(step("referral", "gp", accept="PT4H", complete="P2D"),
                      escalation=LADDER)
LAB = definition(step("bloods", "lab", accept="PT4H", complete="P2D"), escalation=LADDER)

EXPECTED = [  # (hours after T0, event kind, the rung's action that raised the escalation)
    (2, "escalated", "remind-provider"),
    (4, "escalated", "alert-coordinator"),
    (4, "breached", None),
    (44, "escalated", "remind-provider"),
    (48, "escalated", "mark-breached"),
    (50, "escalated", "reassign"),
    (50, "escalation-resolved", None),
    (50, "reassigned", None),
    (50, "dispatched", None),
]


def _fired(run: PathwayRun) -> list[tuple[float, str, str | None]]:
    return [((e.at - T0) / H, e.kind.value, e.detail.get("cause"))
            for e in run.take_effects().events]


def test_the_ladder_fires_in_time_order_one_timer_at_a_time() -> None:
    run = start(REFERRAL)
    run.take_effects()
    fired = []
    while (wakeup := run.next_wakeup()) is not None and wakeup < T0 + 51 * H:
        run.tick(wakeup)
        fired += _fired(run)
    assert fired == EXPECTED


def test_one_late_tick_fires_every_overdue_point_in_the_same_order_at_that_time() -> None:
    run = start(REFERRAL)
    run.take_effects()
    run.tick(T0 + 51 * H)
    fired = _fired(run)
    assert [(kind, level) for _, kind, level in fired] == [(k, v) for _, k, v in EXPECTED]
    assert {hours for hours, _, _ in fired} == {51}
    handover = run.state.handovers["referral.1"]
    assert handover.dispatched_at == T0 + 51 * H, "gp-b is told now, so its clocks start now"
    assert run.state.escalations[0].at == T0 + 51 * H


def test_rungs_set_business_status_escalations_and_reminders() -> None:
    run = start(REFERRAL)
    run.take_effects()
    run.tick(T0 + 2 * H)
    handover = run.state.handovers["referral.1"]
    assert handover.business_status is BusinessStatus.AT_RISK
    assert run.state.sla_state is SlaState.AT_RISK
    [reminder] = run.take_effects().notifications
    assert (reminder.kind, reminder.provider_id, reminder.version) == (
        NotificationKind.REMINDER, "gp-a", handover.version)
    run.tick(T0 + 4 * H)
    assert handover.business_status is BusinessStatus.BREACHED and handover.accept_breached
    # one escalation per late handover: the alert raises the reminder's level
    assert [(e.id, e.level, e.provider_id) for e in run.state.escalations] == [
        (1, EscalationAction.ALERT_COORDINATOR, "gp-a"),
    ]
    assert "accept" in run.state.escalations[0].reason
    assert run.state.sla_state is SlaState.BREACHED


def test_the_accept_clock_stops_once_accepted() -> None:
    run = start(REFERRAL)
    run.apply_provider(command(run, "referral.1", "accepted"), T0 + H)
    run.take_effects()
    run.tick(T0 + 47 * H)
    assert _fired(run) == [(47, "escalated", "remind-provider")]
    assert not run.state.handovers["referral.1"].accept_breached


def test_a_completed_handover_fires_nothing() -> None:
    run = start(REFERRAL)
    complete(run, "referral.1", T0 + H)
    assert run.next_wakeup() is None
    run.take_effects()
    run.tick(T0 + 100 * H)
    assert not run.take_effects()


def test_the_reassign_rung_restarts_the_accept_clock_and_keeps_the_patients_clock() -> None:
    run = start(REFERRAL)
    run.tick(T0 + 50 * H)
    handover = run.state.handovers["referral.1"]
    assert handover.provider_id == "gp-b" and handover.status is TaskStatus.REQUESTED
    assert handover.accept_by == T0 + 54 * H, "gp-b gets its own 4 hours to accept"
    assert handover.complete_by == T0 + 48 * H, "the patient has waited since T0"
    assert handover.business_status is BusinessStatus.BREACHED
    assert run.state.sla_state is SlaState.BREACHED
    assert handover.fired_rungs == [2, 3, 4], "completion rungs already passed stay passed"
    assert handover.attempts[0].outcome == "reassigned"
    cancel = [n for n in run.take_effects().notifications if n.kind is NotificationKind.CANCELLED]
    assert [(n.provider_id, n.webhook) for n in cancel] == [("gp-a", HOOK)]
    assert run.next_wakeup() == T0 + 52 * H, "gp-b's own acceptance reminder"
    run.tick(T0 + 60 * H)
    assert [(k, c) for _, k, c in _fired(run)] == [
        ("escalated", "remind-provider"), ("escalated", "alert-coordinator"), ("breached", None)]
    assert handover.provider_id == "gp-b", "the completion reassign rung fired once, for gp-a"


def test_the_reassign_rung_with_no_one_left_alerts_the_coordinator() -> None:
    run = start(LAB)
    run.tick(T0 + 50 * H)
    handover = run.state.handovers["bloods.1"]
    assert handover.provider_id == "lab-a" and handover.is_open
    (last,) = run.state.escalations
    assert last.level is EscalationAction.MARK_BREACHED, "the level never drops"
    assert "no alternate provider left" in last.reason


def test_nothing_fires_on_hold_and_resume_shifts_every_clock() -> None:
    defn = definition(step("referral", "gp"),
                      step("review", "nurse", ("referral",), recurrence={"every": "P7D",
                                                                          "count": 2}),
                      escalation=LADDER)
    run = start(defn)
    complete(run, "referral.1", T0)
    complete(run, "review.1", T0 + H)
    review_anchor = run.state.steps["review"].anchor_at
    run.apply_hold(HoldPathway(reason="admitted", actor="coordinator:ann"), T0 + 2 * H)
    assert run.next_wakeup() is None
    run.take_effects()
    run.tick(T0 + 30 * 24 * H)
    assert not run.take_effects()
    run.apply_resume(ResumePathway(actor="coordinator:ann"), T0 + 26 * H)
    assert run.state.held_total == 24 * H and run.state.held_since is None
    assert run.state.steps["review"].next_ready_at == T0 + (7 * 24 + 24) * H
    assert run.state.steps["review"].anchor_at == review_anchor + 24 * H
    assert kinds(run.take_effects()) == ["pathway-resumed"]


def test_resume_shifts_open_handover_due_times() -> None:
    run = start(REFERRAL)
    run.apply_hold(HoldPathway(reason="admitted", actor="coordinator:ann"), T0 + H)
    run.apply_resume(ResumePathway(actor="coordinator:ann"), T0 + 11 * H)
    handover = run.state.handovers["referral.1"]
    assert handover.accept_by == T0 + 14 * H and handover.complete_by == T0 + 58 * H
    assert run.next_wakeup() == T0 + 12 * H


def test_extend_by_on_an_overdue_handover_counts_from_now_and_rungs_fire_once() -> None:
    run = start(REFERRAL)
    run.apply_provider(command(run, "referral.1", "accepted"), T0 + H)
    run.tick(T0 + 49 * H)
    handover = run.state.handovers["referral.1"]
    assert run.state.sla_state is SlaState.BREACHED
    run.take_effects()
    run.apply_extend(ExtendDue(handover_id="referral.1", by=timedelta(days=1),
                               reason="awaiting scan", actor="coordinator:ann"), T0 + 49 * H)
    assert handover.complete_by == T0 + 73 * H, "overdue since 48 h: a day from now"
    assert handover.accept_by == T0 + 4 * H
    assert handover.fired_rungs == [2, 3] and handover.fired_breaches == []
    assert handover.business_status is BusinessStatus.ON_TRACK
    assert handover.complete_breached, "the breach stays as history"
    assert run.state.sla_state is SlaState.ON_TRACK
    [event] = run.take_effects().events
    assert (event.kind, event.actor, event.detail["reason"]) == (
        "due-extended", "coordinator:ann", "awaiting scan")
    assert event.detail["counted_from"] == "now" and event.detail["by"] == "P1D"
    assert event.detail["from"] == (T0 + 48 * H).isoformat()
    run.tick(T0 + 73 * H)
    assert [k for _, k, _ in _fired(run)] == ["breached"], "rungs that fired stay fired"
    run.tick(T0 + 75 * H)
    assert [c for _, k, c in _fired(run) if k == "escalated"] == ["reassign"]
    assert handover.provider_id == "gp-b"


def test_extend_by_before_the_due_time_counts_from_the_due_time() -> None:
    run = start(REFERRAL)
    run.apply_extend(ExtendDue(handover_id="referral.1", by=timedelta(hours=2),
                               reason="bank holiday", actor="coordinator:ann"), T0 + H)
    handover = run.state.handovers["referral.1"]
    assert handover.complete_by == T0 + 50 * H and handover.accept_by == T0 + 6 * H
    assert run.take_effects().events[-1].detail["counted_from"] == "due"


def test_extend_until_moves_accept_by_too_when_not_yet_accepted() -> None:
    run = start(REFERRAL)
    run.tick(T0 + 3 * H)
    run.apply_extend(ExtendDue(handover_id="referral.1", until=T0 + 50 * H, reason="bank holiday",
                               actor="coordinator:ann"), T0 + 3 * H)
    handover = run.state.handovers["referral.1"]
    assert handover.accept_by == T0 + 6 * H and handover.complete_by == T0 + 50 * H
    assert handover.fired_rungs == [0], "the reminder at accept_by - 2h fired once, stays fired"
    assert handover.business_status is BusinessStatus.ON_TRACK
