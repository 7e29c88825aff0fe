"""Ledger posting speed: the whole log replayed per request (before) against the replay kept at
the stored watermark with only new writes applied on top (after).

    python -m bench.settle --pathways 2000 --rounds 20

Writes --pathways completed urgent community response pathways (the shipped definition and
contract, driven by the pure engine) to a SQLite event store, posts the ledger once, then for
each round writes the next six store writes in time order (a pathway's worth) and times
`LedgerStore.post`: first with a fresh store per round (no replay in memory: what every request
did before), then with one store kept across rounds (what the API does now; its first posting,
a whole replay, is not counted). Appends the figures to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from activities.ledger import LedgerStore
from activities.store import EventStore
from pathways.events import PathwayEvent
from tests.settlement.support import CONTRACTS, T0, Scenario, record

RESULTS = Path(__file__).with_name("RESULTS.md")
SPACING = timedelta(minutes=50)
WRITES = 6
"""Store writes per pathway (start, accept, complete, accept, complete and end)."""
EPSILON = timedelta(microseconds=1)
BEFORE = "whole log replayed per posting (before)"
AFTER = "on top of the watermark (after)"


def _batches(pathways: int) -> list[tuple[Scenario, list[PathwayEvent]]]:
    """Every store write of `pathways` pathways, in time order (as the workflows write them)."""
    writes: list[tuple[datetime, int, int, Scenario, list[PathwayEvent]]] = []
    for n in range(pathways):
        scenario = Scenario(f"pw-bench-{n:06d}", start=T0 + n * SPACING).simple()
        writes.extend((b[0].at, n, i, scenario, b) for i, b in enumerate(scenario.batches))
    writes.sort(key=lambda w: w[:3])
    return [(s, b) for _, _, _, s, b in writes]


def _time(ledger: LedgerStore, as_of: datetime) -> float:
    began = time.perf_counter()
    ledger.post(as_of)
    return (time.perf_counter() - began) * 1000


def run(pathways: int, rounds: int) -> dict[str, list[float]]:
    """Times of one posting after each round's writes (a pathway's worth: WRITES batches)."""
    writes = _batches(pathways + 2 * rounds + 1)
    prime, rest = writes[: -(2 * rounds + 1) * WRITES], writes[-(2 * rounds + 1) * WRITES:]
    with tempfile.TemporaryDirectory() as folder:
        store = EventStore(f"sqlite:///{Path(folder) / 'bench.db'}")
        store.migrate()
        LedgerStore(store, CONTRACTS).migrate()
        for scenario, batch in prime:
            record(store, scenario, batch)
        LedgerStore(store, CONTRACTS).post(rest[0][1][0].at - EPSILON)
        kept = LedgerStore(store, CONTRACTS)
        figures: dict[str, list[float]] = {BEFORE: [], AFTER: []}
        for r in range(2 * rounds):
            chunk = rest[r * WRITES:(r + 1) * WRITES]
            for scenario, batch in chunk:
                record(store, scenario, batch)
            # posted between this round's writes and the next's, as a request at "now" is
            as_of = rest[(r + 1) * WRITES][1][0].at - EPSILON
            if r < rounds:
                figures[BEFORE].append(_time(LedgerStore(store, CONTRACTS), as_of))
            else:
                figures[AFTER].append(_time(kept, as_of))
        assert kept.full_replays == 1, kept.full_replays  # the first of its rounds only
        figures[AFTER].pop(0)
        assert kept.entries() == kept.rebuild(as_of)
        store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pathways", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    figures = run(args.pathways, args.rounds)
    command = f"python -m bench.settle --pathways {args.pathways} --rounds {args.rounds}"
    rows = []
    for label, times in figures.items():
        times.sort()
        p50 = statistics.median(times)
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        rows.append(f"| {datetime.now(UTC):%Y-%m-%d} | {platform.machine()}, "
                    f"{_cores()} cores | {command} | {args.pathways} | {label} | "
                    f"{p50:.0f} | {p95:.0f} |")
        command = "(same run)"
    print("\n".join(rows))
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if "## Settlement ledger posting" not in text:
        text += ("\n## Settlement ledger posting\n\n`LedgerStore.post` after six more store "
                 "writes in time order, SQLite file, pure engine runs of "
                 "the shipped UCR pathway under its contract.\n\n| date | machine | command | "
                 "pathways | posting | p50 ms | p95 ms |\n| --- | --- | --- | --- | --- | --- "
                 "| --- |\n")
    RESULTS.write_text(text.rstrip("\n") + "\n" + "\n".join(rows) + "\n", encoding="utf-8")


def _cores() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
