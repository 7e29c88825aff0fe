"""The discrete-event loop of one replication: a heap of timed events driving real PathwayRuns.

Every change to a pathway goes through the production engine: `PathwayRun.begin` on arrival,
`apply_provider` with the engine's `ProviderCommand` when a provider accepts, rejects, fails or
delivers, `apply_reassign` when the coordinator re-offers a handover no provider is left for,
and `tick` at `next_wakeup()` for ladder rungs, breaches and recurrences. The loop only reads
the engine's effects (dispatched, reassigned) to move offers between provider queues, so who is
offered what, and when a clock breaches, is decided by the engine, never re-modelled here.
"""

from __future__ import annotations

import gc
import hashlib
import heapq
import random  # noqa: TID251  (seeded streams given by the caller: same seed, same result)
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pathways.commands import ProviderCommand, Reassign, Refusal
from pathways.demo import example_output
from pathways.engine import PathwayRun
from pathways.events import EventKind, PathwayEvent
from pathways.model import Step
from pathways.simulation.metrics import Collector, ReplicationResult
from pathways.simulation.providers import DAY, Desk, Job
from pathways.simulation.scenario import Variant
from pathways.state import Patient, TaskStatus

PATIENT = Patient(nhs_number="9990000077")
"""Every simulated pathway is for the same NHS test-range number: no patient data."""

ARRIVAL, WAKE, DECIDE, FINISH, RESUBMIT, OPEN, COORDINATE, SAMPLE = range(8)


def stream(seed: int, replication: int, name: str) -> random.Random:
    """An independent random stream per replication and purpose (arrivals, each provider...):
    a change at one provider does not shift the arrivals (common random numbers)."""
    digest = hashlib.sha256(f"{seed}/{replication}/{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


@dataclass
class _Pathway:
    run: PathwayRun
    arrived: float
    measured: bool
    wake: float | None = None
    jobs: dict[str, Job] = field(default_factory=dict)


class Replication:
    """One simulated horizon of one variant; `run()` returns its measures."""

    def __init__(self, variant: Variant, replication: int, seed: int,
                 keep_events: bool = False, keep_samples: bool = False) -> None:
        self.v = variant
        self.start = variant.start
        self.end_arrivals = variant.horizon
        self.stop = variant.horizon + variant.drain
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.pathways: dict[int, _Pathway] = {}
        self.count = 0
        self.arrivals_rng = stream(seed, replication, "arrivals")
        self.outcome_rng = stream(seed, replication, "outcomes")
        self.coordinator_rng = stream(seed, replication, "coordinator")
        midnight = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
        self.sod = (self.start - midnight).total_seconds()
        self.weekday0 = self.start.weekday()
        window = (variant.warm_up, variant.horizon)
        self.desks = {
            pid: Desk(pid, behaviour, self.sod, window)
            for pid, behaviour in variant.behaviours.items()
        }
        self.rngs = {pid: stream(seed, replication, f"provider/{pid}") for pid in self.desks}
        self.collector = Collector(variant, self.desks)
        self.keep_events = keep_events
        self.keep_samples = keep_samples
        self.events: list[PathwayEvent] = []
        self._outputs = {s.id: example_output(s) for s in variant.definition.steps}
        self._commands: dict[tuple[Any, ...], ProviderCommand] = {}

    # --- the loop -----------------------------------------------------------------------
    def run(self) -> ReplicationResult:
        every = self.v.arrivals.every
        self._push(0.0 if every else self._next_arrival(0.0), ARRIVAL, None)
        self._push(self.v.warm_up, SAMPLE, None)
        handlers = (self._arrive, self._wake, self._decide, self._finish, self._resubmit,
                    self._open, self._coordinate, self._sample)
        heap = self.heap
        while heap:
            t, _, kind, payload = heapq.heappop(heap)
            if t > self.stop:
                break
            handlers[kind](t, payload)
        for desk in self.desks.values():
            desk.record(self.v.horizon)
        for pathway in self.pathways.values():
            self.collector.unfinished(pathway.run, pathway.measured)
        return self.collector.result(self.keep_samples)

    def _push(self, t: float, kind: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, payload))

    def at(self, t: float) -> Any:
        return self.start + timedelta(seconds=t)

    # --- arrivals -----------------------------------------------------------------------
    def _next_arrival(self, t: float) -> float:
        """Poisson arrivals, rate by weekday, only inside the arrival hours."""
        arrivals = self.v.arrivals
        if arrivals.every is not None:
            return t + arrivals.every.total_seconds()
        h0, h1 = arrivals.hours or (0, 24)
        while t < self.end_arrivals:
            day = int((self.sod + t) // DAY)
            opens, closes = day * DAY + h0 * 3600 - self.sod, day * DAY + h1 * 3600 - self.sod
            if t < opens:
                t = opens
            if t >= closes:
                t = (day + 1) * DAY - self.sod
                continue
            rate = arrivals.rate_on((self.weekday0 + day) % 7) / (closes - opens)
            if rate > 0:
                gap = self.arrivals_rng.expovariate(rate)
                if t + gap < closes:
                    return t + gap
            t = (day + 1) * DAY - self.sod
        return float("inf")

    def _arrive(self, t: float, _: Any) -> None:
        index = self.count
        self.count += 1
        run = PathwayRun.begin(f"pw-sim-{index}", self.v.definition, PATIENT, self.at(t))
        measured = t >= self.v.warm_up
        self.pathways[index] = _Pathway(run, t, measured)
        self.collector.arrived(measured)
        self._after(index, t)
        following = self._next_arrival(t)
        if following < self.end_arrivals:
            self._push(following, ARRIVAL, None)

    # --- the engine's timers ------------------------------------------------------------
    def _wake(self, t: float, index: int) -> None:
        pathway = self.pathways.get(index)
        if pathway is None or pathway.wake != t:
            return  # finished, or rescheduled since
        pathway.wake = None
        pathway.run.tick(self.at(t))
        self._after(index, t)

    def _after(self, index: int, t: float) -> None:
        """Read what the engine did: offers to queue, offers withdrawn; re-arm its timer."""
        pathway = self.pathways[index]
        run = pathway.run
        effects = run.take_effects()
        if self.keep_events:
            self.events.extend(effects.events)
        refused: list[str] = []
        for event in effects.events:
            kind = event.kind
            if kind is EventKind.DISPATCHED:
                self._offer(pathway, index, event, t)
            elif kind is EventKind.REASSIGNED:
                self._withdraw(pathway, event.handover_id, t)
            elif kind is EventKind.REJECTED or kind is EventKind.FAILED:
                refused.append(event.handover_id or "")
        for handover_id in refused:
            if run.state.handovers[handover_id].awaiting_coordinator:
                delay = self.v.coordinator.respond.sample(self.coordinator_rng)
                self._push(t + delay, COORDINATE, (index, handover_id))
        if run.state.is_finished:
            self.collector.finished(run, pathway.measured)
            del self.pathways[index]
            return
        wake = run.next_wakeup()
        due = None if wake is None else max(t, (wake - self.start).total_seconds())
        if due != pathway.wake:
            pathway.wake = due
            if due is not None:
                self._push(due, WAKE, index)

    # --- providers ----------------------------------------------------------------------
    def _offer(self, pathway: _Pathway, index: int, event: PathwayEvent, t: float) -> None:
        assert event.handover_id is not None and event.provider_id is not None
        job = Job(index, event.handover_id, event.step_id or "", event.provider_id, t,
                  pathway.measured)
        pathway.jobs[event.handover_id] = job
        desk = self.desks[event.provider_id]
        desk.enqueue(job, t)
        self._pull(desk, t)

    def _withdraw(self, pathway: _Pathway, handover_id: str | None, t: float) -> None:
        job = pathway.jobs.get(handover_id or "")
        if job is not None and not job.done:
            desk = self.desks[job.provider_id]
            desk.withdraw(job, t)
            self._pull(desk, t)

    def _pull(self, desk: Desk, t: float) -> None:
        """Free slots take the oldest offers; outside working hours or with today's slots used
        up, wait for the next chance."""
        while (job := desk.take(t)) is not None:
            self.collector.picked(job, t)
            delay = desk.behaviour.accept_for(job.step_id).sample(self.rngs[desk.provider_id])
            self._push(t + delay, DECIDE, job)
        if desk.queued and not desk.opening_pending and desk.blocked(t):
            desk.opening_pending = True
            self._push(desk.next_chance(t), OPEN, desk)

    def _open(self, t: float, desk: Desk) -> None:
        desk.opening_pending = False
        self._pull(desk, t)

    def _decide(self, t: float, job: Job) -> None:
        if job.done:
            return
        desk = self.desks[job.provider_id]
        behaviour, rng = desk.behaviour, self.rngs[job.provider_id]
        if behaviour.reject and rng.random() < behaviour.reject:
            self._leave(job, t)
            self._command(job, TaskStatus.REJECTED, t, reason="declined (simulated)")
            return
        self._command(job, TaskStatus.ACCEPTED, t)
        self._push(t + behaviour.complete_for(job.step_id).sample(rng), FINISH, job)

    def _finish(self, t: float, job: Job) -> None:
        if job.done:
            return
        behaviour, rng = self.desks[job.provider_id].behaviour, self.rngs[job.provider_id]
        if behaviour.fail and rng.random() < behaviour.fail:
            self._leave(job, t)
            self._command(job, TaskStatus.FAILED, t, reason="could not deliver (simulated)")
            return
        broken = self._broken(job)
        if broken is not None and behaviour.non_conforming and (
            rng.random() < behaviour.non_conforming
        ):
            self._command(job, TaskStatus.COMPLETED, t, output=broken)
            self._push(t + behaviour.rework.sample(rng), RESUBMIT, job)
            return
        self._deliver(job, t)

    def _resubmit(self, t: float, job: Job) -> None:
        if not job.done:
            self._deliver(job, t)

    def _deliver(self, job: Job, t: float) -> None:
        self._leave(job, t)
        self._command(job, TaskStatus.COMPLETED, t, output=self._output(job))

    def _leave(self, job: Job, t: float) -> None:
        desk = self.desks[job.provider_id]
        desk.withdraw(job, t)
        self._pull(desk, t)

    def _command(self, job: Job, status: TaskStatus, t: float, reason: str | None = None,
                 output: dict[str, Any] | None = None) -> None:
        """Send one provider command through the engine. A refusal other than a
        non-conforming delivery would be a simulator fault: counted and reported."""
        pathway = self.pathways.get(job.run)
        if pathway is None:
            return
        command = self._provider_command(job, status, reason, output)
        try:
            pathway.run.apply_provider(command, self.at(t))
        except Refusal as refusal:
            self.collector.refusal(refusal.kind)
        self._after(job.run, t)

    def _provider_command(self, job: Job, status: TaskStatus, reason: str | None,
                          output: dict[str, Any] | None) -> ProviderCommand:
        """The command, validated once per distinct content: handover ids repeat across
        pathways ("urgent-response.1") and outputs come from a few sampled values, so a
        replication needs a few hundred distinct commands, not one per move. The engine only
        reads commands."""
        content = output or {}
        key = (job.handover_id, job.provider_id, status, reason, repr(content))  # False != 0
        command = self._commands.get(key)
        if command is None:
            command = self._commands[key] = ProviderCommand(
                handover_id=job.handover_id, provider_id=job.provider_id, status=status,
                output=content, reason=reason, actor=f"provider:{job.provider_id}",
            )
        return command

    # --- handover data ------------------------------------------------------------------
    def _output(self, job: Job) -> dict[str, Any]:
        """A conforming delivery; fields with outcome shares get a sampled value."""
        shares = self.v.outcomes.get(job.step_id)
        if not shares:
            return self._outputs[job.step_id]
        output = dict(self._outputs[job.step_id])
        for name, (values, cumulative) in shares.items():
            u = self.outcome_rng.random()
            output[name] = next(v for v, c in zip(values, cumulative, strict=True) if u <= c)
        return output

    def _broken(self, job: Job) -> dict[str, Any] | None:
        """A delivery the step's contract refuses (its first required field missing); None
        when the step requires nothing, so nothing can be refused."""
        step: Step = self.v.definition.step(job.step_id)
        required = next((f.name for f in step.handover if f.required), None)
        if required is None:
            return None
        output = dict(self._outputs[job.step_id])
        output.pop(required)
        return output

    # --- coordinator and sampling -------------------------------------------------------
    def _coordinate(self, t: float, key: tuple[int, str]) -> None:
        """Re-offer a handover no provider is left for: to the least loaded provider of its
        role (the one that refused it is allowed again), through the engine's reassign."""
        index, handover_id = key
        pathway = self.pathways.get(index)
        if pathway is None:
            return
        run = pathway.run
        handover = run.state.handovers[handover_id]
        if not handover.awaiting_coordinator:
            return
        providers = run.definition.providers_for(run.step(handover))
        target = min(providers, key=lambda p: self._load(p.id))
        command = Reassign(handover_id=handover_id, provider_id=target.id,
                           reason="re-offered by the coordinator (simulated)",
                           actor="coordinator:simulation")
        try:
            run.apply_reassign(command, self.at(t))
        except Refusal as refusal:
            self.collector.refusal(refusal.kind)
        self.collector.coordinator_reassigned(pathway.measured)
        self._after(index, t)

    def _load(self, provider_id: str) -> float:
        desk = self.desks[provider_id]
        return (desk.queued + desk.busy) / (desk.behaviour.capacity or 1_000_000)

    def _sample(self, t: float, _: Any) -> None:
        """Daily snapshot of work in progress per provider and open pathways."""
        self.collector.sample(self.desks, len(self.pathways))
        if t + DAY <= self.v.horizon:
            self._push(t + DAY, SAMPLE, None)


def run_replication(variant: Variant, replication: int, seed: int) -> ReplicationResult:
    """Entry point for worker processes.

    The cyclic garbage collector runs less often meanwhile: a replication allocates millions of
    short-lived objects (events, effects, due points) and none that form cycles, so the default
    thresholds only spent time scanning them."""
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        return Replication(variant, replication, seed).run()
    finally:
        gc.set_threshold(*thresholds)
