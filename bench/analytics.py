"""Flow report speed on a large synthetic event store (SQLite file and PostgreSQL).

    python -m bench.analytics --handovers 100000            # SQLite + a throwaway PostgreSQL
    python -m bench.analytics --handovers 100000 --database postgresql+psycopg://...

Writes a quarter of realistic pathways of a ten-step definition (one step a bottleneck, some
holds, rejections, reassignments after escalation, refused deliveries, late completions), the
events, handover rows and pathway rows exactly as the engine records them, in bulk. Then times
`flow_report` for that definition over the quarter (one warm-up, then --runs timed runs) and
appends the figures to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from activities.analytics import CACHE, flow_report
from activities.flow_summary import catch_up
from activities.store import EventStore, event_rows, handover_rows, pathway_rows

DEFINITION = "bench-flow"
STEPS = [f"step-{i:02d}" for i in range(10)]
PROVIDERS = {step: [f"prov-{i:02d}-{j}" for j in range(3)] for i, step in enumerate(STEPS)}
BOTTLENECK = "step-04"
QUARTER_START = datetime(2026, 7, 6, tzinfo=UTC)  # a Monday
QUARTER = timedelta(weeks=13)
RESULTS = Path(__file__).with_name("RESULTS.md")
EXPLAINED = (
    "One definition over a quarter (13 weeks), all its handovers completed; `flow_report` on "
    "the same machine as the database. median/p95/max: the summary up to date, the report "
    "cache emptied before each run (every query runs; after one warm-up); first: the first "
    "report (rows with a catch-up figure: after the worker's catch-up fold; earlier rows: the "
    "report folded the whole log itself); after new: the report right after ten new pathways (100 handovers) "
    "arrived, which folds only those; catch-up: the worker's fold of the whole log at start "
    "(chunked, in the background); cached: a report repeated with no new events.")


class Generator:
    """Pathways of sequential handovers with exponential waits; deterministic per seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def hours(self, mean: float) -> timedelta:
        return timedelta(hours=self.rng.expovariate(1 / mean))

    def pathway(self, number: int, handovers: int) -> tuple[list[dict[str, Any]], ...]:
        pathway_id = f"pw-bench-{number:06d}"
        start = QUARTER_START + timedelta(seconds=self.rng.uniform(0, QUARTER.total_seconds()
                                                                     * 0.9))
        events: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []

        def emit(kind: str, at: datetime, handover: str | None = None, step: str | None = None,
                 provider: str | None = None, **detail: Any) -> None:
            seq = len(events) + 1
            events.append({
                "event_id": f"{pathway_id}:{seq}", "pathway_id": pathway_id,
                "definition_id": DEFINITION, "definition_version": 1, "seq": seq, "kind": kind,
                "at": at, "handover_id": handover, "step_id": step, "provider_id": provider,
                "actor": None if provider is None else provider, "detail": detail,
            })

        emit("pathway-started", start)
        now = start
        for index in range(handovers):
            step = STEPS[index % len(STEPS)]
            now = self.handover(emit, rows, pathway_id, step, index, now)
        emit("pathway-completed", now)
        pathway = {
            "pathway_id": pathway_id, "definition_id": DEFINITION, "definition_version": 1,
            "lead_provider": "lead", "status": "completed", "sla_state": "on-track",
            "open_steps": [], "open_providers": [], "open_step_titles": [], "patient_key": None,
            "started_at": start, "updated_at": now, "ended_at": now,
        }
        return events, rows, [pathway]

    def handover(self, emit: Any, rows: list[dict[str, Any]], pathway_id: str, step: str,
                 index: int, ready: datetime) -> datetime:
        handover_id = f"{step}.{index // len(STEPS) + 1}"
        providers = PROVIDERS[step]
        provider = providers[0] if self.rng.random() < 0.6 else self.rng.choice(providers[1:])
        due = ready + timedelta(hours=48)
        now = ready
        ids = {"handover": handover_id, "step": step}
        emit("ready", now, provider=provider, **ids)
        emit("dispatched", now, provider=provider, **ids)
        transit = self.hours(8 if step == BOTTLENECK else 1.5)
        if self.rng.random() < 0.05:  # not accepted in time: escalated, then reassigned
            emit("escalated", now + timedelta(hours=2), provider=provider, escalation_id=index,
                 level="alert-coordinator", **ids)
            now += timedelta(hours=3)
            previous, provider = provider, self.rng.choice([p for p in providers if p != provider])
            emit("reassigned", now, provider=provider, **ids, **{"from": previous})
            emit("dispatched", now, provider=provider, **ids)
        elif self.rng.random() < 0.03:  # rejected, broker offers the next provider
            now += transit
            emit("rejected", now, provider=provider, reason="capacity", **ids)
            provider = self.rng.choice([p for p in providers if p != provider])
            emit("reassigned", now, provider=provider, **ids)
            emit("dispatched", now, provider=provider, **ids)
        now += transit
        emit("accepted", now, provider=provider, **ids)
        if self.rng.random() < 0.9:
            now += self.hours(3 if step == BOTTLENECK else 1)
            emit("started", now, provider=provider, **ids)
            if self.rng.random() < 0.1:
                now += self.hours(1)
                emit("held", now, provider=provider, **ids)
                now += self.hours(4)
                emit("resumed", now, provider=provider, **ids)
        now += self.hours(1.5)
        if self.rng.random() < 0.05:
            emit("refused-delivery", now, provider=provider, fields=["summary"], **ids)
            now += self.hours(0.5)
        if now > due:
            emit("breached", due, provider=provider, clock="complete", **ids)
        emit("completed", now, provider=provider, **ids)
        rows.append({
            "task_id": f"{pathway_id}.{handover_id}", "pathway_id": pathway_id,
            "definition_id": DEFINITION, "handover_id": handover_id, "step_id": step,
            "occurrence": 1, "provider_id": provider, "status": "completed",
            "business_status": "breached" if now > due else "on-track", "version": 3,
            "ready_at": ready, "complete_by": due, "updated_at": now,
        })
        return now


def populate(store: EventStore, handovers: int, per_pathway: int = 10, seed: int = 7,
             first: int = 0) -> int:
    """Write `handovers` completed handovers in pathways of `per_pathway` (numbered from
    `first`); return the events written."""
    generator = Generator(seed)
    buffers: tuple[list[dict[str, Any]], ...] = ([], [], [])
    written = 0
    with store.engine.begin() as conn:
        for number in range(handovers // per_pathway):
            pathway = generator.pathway(first + number, per_pathway)
            for buffer, rows in zip(buffers, pathway, strict=True):
                buffer.extend(rows)
            if len(buffers[0]) > 20000 or number == handovers // per_pathway - 1:
                for table, buffer in zip((event_rows, handover_rows, pathway_rows), buffers,
                                         strict=True):
                    if buffer:
                        conn.execute(insert(table), buffer)
                written += len(buffers[0])
                for buffer in buffers:
                    buffer.clear()
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
    return written


def timed_report(store: EventStore, cached: bool = False) -> float:
    """One report's wall time; the report cache emptied first unless `cached`."""
    until = QUARTER_START + QUARTER
    if not cached:
        CACHE.clear()
    began = time.perf_counter()
    report = flow_report(store, DEFINITION, since=QUARTER_START, until=until, now=until)
    elapsed = time.perf_counter() - began
    assert report.overall.completed > 0
    return elapsed


def time_report(store: EventStore, runs: int, cached: bool = False) -> list[float]:
    """`runs` timed reports after one warm-up; uncached (every query run) unless `cached`."""
    timed_report(store, cached)  # warm-up
    return [timed_report(store, cached) for _ in range(runs)]


def timed_catch_up(store: EventStore) -> float:
    """The worker's fold at start (chunked, beside the engine's writes), timed."""
    began = time.perf_counter()
    catch_up(store, threading.Event())
    return time.perf_counter() - began


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a temp dir on a free port (as the tests make one)."""
    initdb = shutil.which("initdb") or str(sorted(Path("/usr/lib/postgresql").glob(
        "*/bin/initdb"), key=lambda p: int(p.parent.parent.name))[-1])
    bin_dir = Path(initdb).parent
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = root / "data"
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                    "postgres", "--no-sync"], check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l",
                    str(root / "log"), "-o", options, "-w", "start"], check=True,
                   capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                        "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def run(url: str, handovers: int, runs: int) -> dict[str, Any]:
    store = EventStore(url)
    store.migrate()
    began = time.perf_counter()
    events = populate(store, handovers)
    loaded = time.perf_counter() - began
    catching_up = timed_catch_up(store)  # what the worker does at start
    first = timed_report(store)  # the first report after it
    if store.engine.dialect.name == "postgresql":  # what autovacuum does after bulk inserts:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("flow_summary", "flow_handovers"):  # visibility map for index-only
                conn.exec_driver_sql(f"VACUUM ANALYZE {table}")  # scans, statistics
    timings = time_report(store, runs)
    cached = time_report(store, runs, cached=True)
    populate(store, 100, seed=8, first=handovers)  # ten new pathways arrive
    after_new = timed_report(store, cached=True)  # the cache misses: the log moved on
    store.close()
    ordered = sorted(timings)
    return {
        "database": store.engine.dialect.name, "handovers": handovers, "events": events,
        "load_s": loaded, "median_s": statistics.median(timings),
        "p95_s": ordered[max(0, int(round(0.95 * len(ordered))) - 1)], "max_s": ordered[-1],
        "first_s": first, "after_new_s": after_new, "load": os.getloadavg()[0],
        "catch_up_s": catching_up, "cached_s": statistics.median(cached),
    }


def record(result: dict[str, Any], command: str) -> None:
    line = (
        f"| {datetime.now(UTC).date()} | {platform.machine()}, {os.cpu_count()} cores, "
        f"load {result['load']:.1f} "
        f"| {command} | {result['database']} | {result['handovers']} | {result['events']} "
        f"| {result['median_s'] * 1000:.0f} | {result['p95_s'] * 1000:.0f} "
        f"| {result['max_s'] * 1000:.0f} | {result['first_s']:.1f} "
        f"| {result['after_new_s'] * 1000:.0f} | {result['catch_up_s']:.1f} "
        f"| {result['cached_s'] * 1000:.1f} |\n"
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    header = "## Flow report (bench.analytics)"
    if header not in text:
        text += (
            f"\n{header}\n\n{EXPLAINED}\n\n"
            "| date | machine | command | database | handovers | events | median ms | p95 ms "
            "| max ms | first s | after new ms | catch-up s | cached ms |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        )
    start = text.index(header)
    end = text.find("\n## ", start)
    end = len(text) if end < 0 else end + 1  # rows go at the end of this section's table
    before = text[:end].rstrip("\n") + "\n"
    RESULTS.write_text(before + line + ("\n" + text[end:] if end < len(text) else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handovers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database", action="append", default=[],
                        help="event store URL (repeatable); default: a SQLite file and a "
                             "throwaway PostgreSQL")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()
    command = f"python -m bench.analytics --handovers {args.handovers}"
    with tempfile.TemporaryDirectory() as tmp:
        if args.database:
            urls = list(args.database)
            results = [run(url, args.handovers, args.runs) for url in urls]
        else:
            results = [run(f"sqlite:///{tmp}/events.db", args.handovers, args.runs)]
            with throwaway_postgres() as pg:
                results.append(run(pg, args.handovers, args.runs))
    for result in results:
        print(f"{result['database']}: {result['handovers']} handovers, {result['events']} events"
              f" (loaded in {result['load_s']:.1f} s); report median "
              f"{result['median_s'] * 1000:.0f} ms, p95 {result['p95_s'] * 1000:.0f} ms, "
              f"max {result['max_s'] * 1000:.0f} ms; first (full fold) {result['first_s']:.1f} s; "
              f"after 100 new handovers {result['after_new_s'] * 1000:.0f} ms; worker catch-up "
              f"{result['catch_up_s']:.1f} s; cached {result['cached_s'] * 1000:.1f} ms; "
              f"load {result['load']:.1f}")
        if not args.no_record:
            record(result, command)


if __name__ == "__main__":
    main()
