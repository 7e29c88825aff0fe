"""Simulations in the background for the console: one spawned process per job, progress after
each replication, cancellable, at most `limit` at once.

A process rather than a thread: a simulation is CPU-bound Python and would hold the GIL from
the API's requests; spawned rather than forked, as forking a process with threads (the API's
Temporal client) is unsafe. A `Keeper` (the API gives one on the event store database) keeps
each job at every change of state, so a restart forgets none: it shows those it had as they
were, and those that were running as interrupted.
"""

from __future__ import annotations

import logging
import multiprocessing
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from multiprocessing.connection import Connection
from typing import Any, Protocol

from pathways.simulation.runner import Comparison, compare
from pathways.simulation.scenario import Variant


class JobState(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    """The API stopped while it ran (a deploy, a crash): its process ended with the API's."""


log = logging.getLogger(__name__)


class Busy(Exception):
    """As many simulations as allowed are running already."""


@dataclass
class Job:
    """One what-if run: its question, its progress and, once finished, its answer."""

    id: str
    scenario: str
    description: str
    variants: list[str]
    replications: int
    seed: int
    started_at: datetime
    done: int = 0
    total: int = 0
    state: JobState = JobState.RUNNING
    comparison: Comparison | None = None
    problem: str | None = None
    ended_at: datetime | None = None
    _process: Any = field(default=None, repr=False)

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def running(self) -> bool:
        return self.state is JobState.RUNNING


class Keeper(Protocol):
    """Where jobs outlive the process: saved at each change of state, read back at start."""

    def save(self, job: Job) -> None: ...

    def recent(self, limit: int) -> list[Job]: ...


def _work(conn: Connection, name: str, variants: Sequence[Variant], replications: int,
          seed: int) -> None:
    """The job process: every replication in turn (one core per job), progress after each."""
    try:
        answer = compare(name, variants, replications, seed, 1,
                         progress=lambda done, total: conn.send(("progress", done, total)))
        conn.send(("finished", answer))
    except Exception as error:  # reported on the page; the process ends
        conn.send(("failed", f"the simulation stopped: {type(error).__name__}"))
    finally:
        conn.close()


class Jobs:
    """The jobs of one API process (newest first), at most `limit` running at once."""

    def __init__(self, now: Callable[[], datetime], limit: int = 2, keep: int = 20,
                 keeper: Keeper | None = None) -> None:
        """`keeper`: the jobs kept by an earlier process come back from it (none running: the
        keeper's owner marks those interrupted first); every change is saved to it."""
        self._now = now  # the caller's clock (pathways code never reads the wall clock)
        self.limit = limit
        self.keep = keep
        self._keeper = keeper
        kept = [] if keeper is None else keeper.recent(keep)
        self._jobs: OrderedDict[str, Job] = OrderedDict((j.id, j) for j in kept)
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")

    def start(self, name: str, description: str, variants: Sequence[Variant],
              replications: int, seed: int) -> Job:
        """Start a job; Busy when `limit` jobs are running."""
        with self._lock:
            if sum(j.running for j in self._jobs.values()) >= self.limit:
                raise Busy()
            job = Job(secrets.token_urlsafe(9), name, description, [v.name for v in variants],
                      replications, seed, self._now(),
                      total=replications * len(variants))
            receive, send = self._context.Pipe(duplex=False)
            process = self._context.Process(
                target=_work, args=(send, name, list(variants), replications, seed),
                daemon=True, name=f"simulation-{job.id}")
            process.start()
            send.close()  # the child holds the only sending end: EOF when it ends
            job._process = process
            self._jobs[job.id] = job
            self._jobs.move_to_end(job.id, last=False)
            self._forget_old()
        self._save(job)
        threading.Thread(target=self._follow, args=(job, receive), daemon=True,
                         name=f"simulation-follow-{job.id}").start()
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def recent(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def cancel(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None:
            return None
        return self._stop(job, JobState.CANCELLED)

    def shutdown(self) -> None:
        """The API stops: its running jobs end with it, kept as interrupted."""
        for job in self.recent():
            self._stop(job, JobState.INTERRUPTED)

    def _stop(self, job: Job, state: JobState) -> Job:
        with self._lock:
            if not job.running:
                return job
            job.state, job.ended_at = state, self._now()
            if job._process is not None:
                job._process.terminate()
        self._save(job)
        return job

    def _save(self, job: Job) -> None:
        """Keep the job's state; a database that fails here costs the job its restart, not
        the simulation (it is still shown from memory)."""
        if self._keeper is None:
            return
        try:
            self._keeper.save(job)
        except Exception:
            log.exception("what-if job %s not kept", job.id)

    def _follow(self, job: Job, receive: Connection) -> None:
        """Read the job's messages until its process ends."""
        try:
            while True:
                message = receive.recv()
                with self._lock:
                    ended = self._apply(job, message)
                if ended:
                    self._save(job)
        except (EOFError, OSError):
            pass
        finally:
            receive.close()
            job._process.join(timeout=5)
            with self._lock:
                failed = job.running  # ended without an answer (killed, out of memory)
                if failed:
                    job.state, job.problem = JobState.FAILED, "the simulation stopped"
                    job.ended_at = self._now()
            if failed:
                self._save(job)

    def _apply(self, job: Job, message: tuple[Any, ...]) -> bool:
        """Apply one message from the job's process; True when it ended the job."""
        if not job.running:
            return False  # cancelled meanwhile: late messages change nothing
        kind = message[0]
        if kind == "progress":
            job.done, job.total = message[1], message[2]
        elif kind == "finished":
            job.comparison, job.state = message[1], JobState.FINISHED
            job.ended_at = self._now()
        elif kind == "failed":
            job.problem, job.state = message[1], JobState.FAILED
            job.ended_at = self._now()
        return not job.running

    def _forget_old(self) -> None:
        """Keep the newest `keep` jobs (running ones are never forgotten)."""
        for job_id in list(reversed(self._jobs)):
            if len(self._jobs) <= self.keep:
                break
            if not self._jobs[job_id].running:
                del self._jobs[job_id]
