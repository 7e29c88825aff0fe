"""Providers in one replication: a queue of offered handovers, a number of slots, working hours,
and the time-weighted averages (work in progress, queue, busy slots) over the measured window."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from pathways.simulation.scenario import Behaviour

DAY = 86_400.0


@dataclass(eq=False)
class Job:
    """One offer of a handover to a provider (one attempt); `done` once it leaves the provider."""

    run: int
    handover_id: str
    step_id: str
    provider_id: str
    offered: float
    measured: bool
    picked: float | None = None
    done: bool = False


class Desk:
    """One provider: FIFO queue of offers, `capacity` slots, optional working hours."""

    def __init__(self, provider_id: str, behaviour: Behaviour, start_of_day: float,
                 window: tuple[float, float]) -> None:
        self.provider_id = provider_id
        self.behaviour = behaviour
        self.capacity = behaviour.capacity or math.inf
        self.queue: deque[Job] = deque()
        self.queued = 0
        self.busy = 0
        self.offers = 0
        self.opening_pending = False
        self._day = -1
        self._picked_today = 0
        self._sod = start_of_day
        self._window = window
        self._last = window[0]
        self.queue_area = 0.0
        self.busy_area = 0.0
        self.queue_max = 0

    # --- time averages ------------------------------------------------------------------
    def record(self, now: float) -> None:
        """Accumulate queue and busy areas since the last change, inside the window."""
        lo, hi = self._window
        start, end = max(self._last, lo), min(now, hi)
        if end > start:
            self.queue_area += self.queued * (end - start)
            self.busy_area += self.busy * (end - start)
        self._last = max(self._last, now)
        if lo <= now <= hi:
            self.queue_max = max(self.queue_max, self.queued)

    # --- changes ------------------------------------------------------------------------
    def enqueue(self, job: Job, now: float) -> None:
        self.record(now)
        self.queue.append(job)
        self.queued += 1
        self.offers += job.measured

    def take(self, now: float) -> Job | None:
        """The next live offer, if a slot is free and the provider is working now."""
        if self.busy >= self.capacity or not self.queued or self.blocked(now):
            return None
        while self.queue:
            job = self.queue.popleft()
            if not job.done:
                self.record(now)
                self.queued -= 1
                self.busy += 1
                self._picked_today += 1
                job.picked = now
                return job
        return None

    def withdraw(self, job: Job, now: float) -> None:
        """The handover left this provider (reassigned, rejected, failed or completed)."""
        if job.done:
            return
        self.record(now)
        job.done = True
        if job.picked is None:
            self.queued -= 1  # the entry stays in the deque and is skipped when reached
        else:
            self.busy -= 1

    # --- working hours and daily slots ---------------------------------------------------
    def blocked(self, now: float) -> bool:
        """Closed now, or today's slots are used up."""
        return not self.is_open(now) or self._out_of_slots(now)

    def _out_of_slots(self, now: float) -> bool:
        slots = self.behaviour.slots_per_day
        if slots is None:
            return False
        day = int((self._sod + now) // DAY)
        if day != self._day:
            self._day, self._picked_today = day, 0
        return self._picked_today >= slots

    def next_chance(self, now: float) -> float:
        """When a blocked provider may pick up work again: its opening, or tomorrow's."""
        if self._out_of_slots(now):
            midnight = now + DAY - (self._sod + now) % DAY
            return midnight if self.is_open(midnight) else self.next_opening(midnight)
        return self.next_opening(now)

    def is_open(self, now: float) -> bool:
        hours = self.behaviour.hours
        if hours is None:
            return True
        hour = ((self._sod + now) % DAY) / 3600.0
        return hours[0] <= hour < hours[1]

    def next_opening(self, now: float) -> float:
        hours = self.behaviour.hours
        assert hours is not None
        of_day = (self._sod + now) % DAY
        opens = hours[0] * 3600.0
        return now + (opens - of_day if of_day < opens else DAY - of_day + opens)
