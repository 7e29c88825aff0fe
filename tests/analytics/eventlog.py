"""A small synthetic event log whose measures are worked out by hand in tests/analytics.

Times are hours from T0 = Monday 2026-01-05 00:00 UTC; the report covers two weeks,
[T0, T0 + 336 h). Definition `urgent-community-response`, steps `urgent-response` (a) and
`gp-follow-up` (b), providers A, B, C.

P1 (started 0 h, completed 12 h):
  a: ready 0, accepted 1, started 3, held 4, resumed 5, completed 7 (A); due 8.
     in transit 1, queued 2, working 3, blocked 1: lead 7, waiting 4, working 3; attained.
  b: ready 7 (gap 0) to B; reminder 7.5; coordinator escalation 8; reassigned to C at 9;
     accepted 10, started 10; refused delivery 11; completed 12 (C); due 10.
     in transit 2 (B) + 1 (C): lead 5, waiting 3, working 2; breached; not first time right.
P2 (started 192 h, still open):
  a: ready 192, accepted 192.5, completed 193.5 (A, never started: working 1); due 200.
     lead 1.5 (within the 2-hour standard), waiting 0.5, working 1; attained.
  b: ready 196.5 (gap 3 h) to B; rejected 197.5 (B); reassigned to C, accepted 198.5; open.
     in transit 1 (B) + 1 (C), queued 198.5 to the end of the period (336): 137.5; due 204.5,
     open past it: breached.
P3 (before the period: ready -48, completed -40): not counted.
P4 (started 300 h): a: ready 300, accepted 301, started 302 (A), completed 340 (after the
  period: open at its end); due 310: breached. in transit 1, queued 1, working 34 (to 336).
P5: another definition: not counted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from activities.store import EventStore
from pathways.events import EventKind, HandoverRow, PathwayEvent, PathwayRow, RecordBatch

T0 = datetime(2026, 1, 5, tzinfo=UTC)
SINCE, UNTIL = T0, T0 + timedelta(hours=336)
NOW = datetime(2026, 2, 1, tzinfo=UTC)
DEFINITION = "urgent-community-response"
A_STEP, B_STEP = "urgent-response", "gp-follow-up"
H = 3600.0


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


class _Pathway:
    def __init__(self, pathway_id: str, definition: str = DEFINITION) -> None:
        self.id, self.definition = pathway_id, definition
        self.events: list[PathwayEvent] = []
        self.rows: list[HandoverRow] = []

    def event(self, kind: EventKind, hours: float, handover: str | None = None,
              provider: str | None = None, **detail: Any) -> None:
        seq = len(self.events) + 1
        step = None if handover is None else (A_STEP if handover.startswith("a") else B_STEP)
        self.events.append(PathwayEvent(
            event_id=f"{self.id}:{seq}", pathway_id=self.id, definition_id=self.definition,
            definition_version=1, seq=seq, kind=kind, at=at(hours), handover_id=handover,
            step_id=step, provider_id=provider, detail=detail))

    def handover(self, handover: str, provider: str, status: str, ready: float, due: float,
                 updated: float) -> None:
        step = A_STEP if handover.startswith("a") else B_STEP
        self.rows.append(HandoverRow(
            task_id=f"{self.id}.{handover}", pathway_id=self.id, definition_id=self.definition,
            handover_id=handover, step_id=step, occurrence=1, provider_id=provider,
            status=status, business_status="on-track", version=1, ready_at=at(ready),
            complete_by=at(due), updated_at=at(updated)))

    def record(self, store: EventStore, status: str, started: float,
               ended: float | None) -> None:
        row = PathwayRow(
            pathway_id=self.id, definition_id=self.definition, definition_version=1,
            lead_provider="lead", status=status, sla_state="on-track", open_steps=[],
            open_providers=[], open_step_titles=[], started_at=at(started),
            updated_at=at(ended) if ended is not None else self.events[-1].at,
            ended_at=None if ended is None else at(ended))
        store.record(RecordBatch(events=self.events, handovers=self.rows, pathway=row))


def _lifecycle(p: _Pathway, handover: str, moves: list[tuple[EventKind, float, str]]) -> None:
    for kind, hours, provider in moves:
        p.event(kind, hours, handover, provider)


def write_log(store: EventStore) -> None:
    k = EventKind
    p1 = _Pathway("pw-1")
    p1.event(k.PATHWAY_STARTED, 0)
    _lifecycle(p1, "a.1", [(k.READY, 0, "A"), (k.DISPATCHED, 0, "A"), (k.ACCEPTED, 1, "A"),
                           (k.STARTED, 3, "A"), (k.HELD, 4, "A"), (k.RESUMED, 5, "A"),
                           (k.COMPLETED, 7, "A")])
    _lifecycle(p1, "b.1", [(k.READY, 7, "B"), (k.DISPATCHED, 7, "B")])
    p1.event(k.ESCALATED, 7.5, "b.1", "B", escalation_id=2, level="remind-provider")
    p1.event(k.ESCALATED, 8, "b.1", "B", escalation_id=3, level="alert-coordinator")
    p1.event(k.ESCALATED, 8.5, "b.1", "B", escalation_id=3, level="alert-coordinator")
    p1.event(k.REASSIGNED, 9, "b.1", "C", **{"from": "B", "to": "C"})
    _lifecycle(p1, "b.1", [(k.DISPATCHED, 9, "C"), (k.ACCEPTED, 10, "C"), (k.STARTED, 10, "C")])
    p1.event(k.REFUSED_DELIVERY, 11, "b.1", "C", fields=["x"])
    p1.event(k.COMPLETED, 12, "b.1", "C")
    p1.event(k.PATHWAY_COMPLETED, 12)
    p1.handover("a.1", "A", "completed", 0, 8, 7)
    p1.handover("b.1", "C", "completed", 7, 10, 12)
    p1.record(store, "completed", 0, 12)

    p2 = _Pathway("pw-2")
    p2.event(k.PATHWAY_STARTED, 192)
    _lifecycle(p2, "a.1", [(k.READY, 192, "A"), (k.DISPATCHED, 192, "A"),
                           (k.ACCEPTED, 192.5, "A"), (k.COMPLETED, 193.5, "A")])
    _lifecycle(p2, "b.1", [(k.READY, 196.5, "B"), (k.DISPATCHED, 196.5, "B"),
                           (k.REJECTED, 197.5, "B"), (k.REASSIGNED, 197.5, "C"),
                           (k.DISPATCHED, 197.5, "C"), (k.ACCEPTED, 198.5, "C")])
    p2.handover("a.1", "A", "completed", 192, 200, 193.5)
    p2.handover("b.1", "C", "accepted", 196.5, 204.5, 198.5)
    p2.record(store, "active", 192, None)

    p3 = _Pathway("pw-3")
    p3.event(k.PATHWAY_STARTED, -48)
    _lifecycle(p3, "a.1", [(k.READY, -48, "A"), (k.DISPATCHED, -48, "A"),
                           (k.COMPLETED, -40, "A")])
    p3.handover("a.1", "A", "completed", -48, -46, -40)
    p3.record(store, "completed", -48, -40)

    p4 = _Pathway("pw-4")
    p4.event(k.PATHWAY_STARTED, 300)
    _lifecycle(p4, "a.1", [(k.READY, 300, "A"), (k.DISPATCHED, 300, "A"), (k.ACCEPTED, 301, "A"),
                           (k.STARTED, 302, "A"), (k.COMPLETED, 340, "A")])
    p4.handover("a.1", "A", "completed", 300, 310, 340)
    p4.record(store, "active", 300, None)

    p5 = _Pathway("pw-5", definition="hip-replacement-d2a")
    p5.event(k.PATHWAY_STARTED, 10)
    _lifecycle(p5, "a.1", [(k.READY, 10, "A"), (k.DISPATCHED, 10, "A"), (k.COMPLETED, 100, "A")])
    p5.handover("a.1", "A", "completed", 10, 11, 100)
    p5.record(store, "completed", 10, 100)
