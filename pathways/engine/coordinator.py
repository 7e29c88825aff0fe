"""Pathway-level coordinator commands: hold, resume, cancel and notes.

(A coordinator's reassignment is in broker.py, an extension in clocks.py, acknowledging and
resolving escalations in escalations.py.)
"""

from __future__ import annotations

from datetime import datetime

from pathways import commands as cmd
from pathways.commands import Refusal
from pathways.engine import broker, clocks, escalations
from pathways.engine.base import RunBase, by_id
from pathways.events import EventKind, NotificationKind
from pathways.model import format_duration
from pathways.state import Note, PathwayState, PathwayStatus, TaskStatus


def check_hold(run: RunBase, c: cmd.HoldPathway) -> None:
    run.require_active()


def apply_hold(run: RunBase, c: cmd.HoldPathway, now: datetime) -> PathwayState:
    """Hold the whole pathway (e.g. the patient is admitted): nothing fires while held."""
    check_hold(run, c)
    run.state.status, run.state.held_since = PathwayStatus.ON_HOLD, now
    run.state.updated_at = now
    run.emit(EventKind.PATHWAY_HELD, now, actor=c.actor, detail={"reason": c.reason})
    return run.state


def check_resume(run: RunBase, c: cmd.ResumePathway) -> None:
    if run.state.status is not PathwayStatus.ON_HOLD:
        raise Refusal("conflict", [f"pathway is {run.state.status.value}, not on hold"])


def apply_resume(run: RunBase, c: cmd.ResumePathway, now: datetime) -> PathwayState:
    """Resume: every running clock and pending recurrence moves later by the time held."""
    check_resume(run, c)
    state = run.state
    assert state.held_since is not None
    held = now - state.held_since
    clocks.shift_for_hold(run, held, now)
    state.status, state.held_since = PathwayStatus.ACTIVE, None
    state.held_total += held
    state.updated_at = now
    run.emit(EventKind.PATHWAY_RESUMED, now, actor=c.actor,
             detail={"held": format_duration(held)})
    return state


def check_cancel(run: RunBase, c: cmd.CancelPathway) -> None:
    run.require_unfinished()


def apply_cancel(run: RunBase, c: cmd.CancelPathway, now: datetime) -> PathwayState:
    """Cancel the pathway: open handovers are cancelled and their providers told."""
    check_cancel(run, c)
    state = run.state
    for handover in by_id(h for h in state.handovers.values() if h.is_open):
        handover.status, handover.ended_at = TaskStatus.CANCELLED, now
        broker.end_attempt(handover, now, "cancelled", c.reason)
        escalations.resolve_automatically(run, handover, "cancelled", now)
        run.touch(handover, now)
        run.emit(EventKind.CANCELLED, now, handover=handover, actor=c.actor,
                 detail={"reason": c.reason})
        run.notify(handover, NotificationKind.CANCELLED)
    for st in state.steps.values():
        st.next_ready_at = None
    if state.held_since is not None:
        state.held_total += now - state.held_since
        state.held_since = None
    state.status, state.ended_at, state.updated_at = PathwayStatus.CANCELLED, now, now
    run.emit(EventKind.PATHWAY_CANCELLED, now, actor=c.actor, detail={"reason": c.reason})
    return state


def check_note(run: RunBase, c: cmd.AddNote) -> None:
    """Notes are welcome while the pathway runs (on hold too), up to MAX_NOTES so the carried
    state stays bounded; a finished pathway's record is closed."""
    run.require_open_record("notes")
    if len(run.state.notes) >= cmd.MAX_NOTES:
        raise Refusal("conflict", [f"this pathway already keeps {cmd.MAX_NOTES} notes, "
                                   "the most it can hold"])


def apply_note(run: RunBase, c: cmd.AddNote, now: datetime) -> Note:
    check_note(run, c)
    note = Note(at=now, author=c.actor, text=c.text)
    run.state.notes.append(note)
    run.state.updated_at = now
    # The text may name the patient: the event records only that a note was added.
    run.emit(EventKind.NOTE, now, actor=c.actor, detail={"note": len(run.state.notes)})
    return note
