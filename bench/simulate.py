"""Simulation speed: a year of 10,000 urgent community response referrals, 30 replications.

    .venv/bin/python -m bench.simulate            # --replications 30 --workers 2
    .venv/bin/python -m bench.simulate --patients 1000 --replications 4 --no-record  # quick

Runs the baseline of examples/scenarios/ucr-add-team.yaml (about 27.4 referrals a day, so
10,000 a year; every pathway through the real engine) in worker processes, and appends the wall
time, the CPU time of the workers and the load average when it started to bench/RESULTS.md:
on a shared machine the wall time depends on what else runs, the CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

from pathways.catalogue import load_catalogue
from pathways.settings import SHIPPED_CATALOGUE
from pathways.simulation.runner import compare
from pathways.simulation.scenario import load_scenario, variants

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "examples" / "scenarios" / "ucr-add-team.yaml"
RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = """
## Simulation (`python -m bench.simulate`)

Baseline of examples/scenarios/ucr-add-team.yaml: 10,000 urgent community response referrals
a year (plus warm-up and drain), every pathway through the real engine, replications in worker
processes. Wall time depends on the other work on the machine (load average at the start);
worker CPU time is the work itself.

| date | machine | reps | workers | measured pathways / rep. | wall s | worker CPU s | CPU s / rep. | load avg |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--patients", type=int, default=10_000,
                        help="referrals a year (the scenario's rate scaled; 10,000 by default)")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()

    scenario = load_scenario(SCENARIO)
    per_day = args.patients / 365
    if abs(per_day - scenario.arrivals.per_day) > 0.05:
        scenario = scenario.model_copy(update={
            "arrivals": scenario.arrivals.model_copy(update={"per_day": per_day})})
    baseline = variants(scenario, load_catalogue(SHIPPED_CATALOGUE))[0]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    answer = compare(scenario.name, [baseline], args.replications, args.seed, args.workers)
    wall = time.perf_counter() - started
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = cpu.ru_utime + cpu.ru_stime
    if args.workers <= 1:
        own = resource.getrusage(resource.RUSAGE_SELF)
        worker_cpu = own.ru_utime + own.ru_stime
    measures = answer.columns[0].estimates
    per_rep = measures["pathways|all|started"].mean + measures["pathways|all|unfinished"].mean
    attainment = measures["standard|UCR 2-hour response|attainment_pct"]
    print(f"{args.replications} replications, {args.workers} workers: {wall:.1f} s wall, "
          f"{worker_cpu:.1f} s worker CPU ({worker_cpu / args.replications:.2f} s each); "
          f"load average {load:.1f} at the start")
    print(f"UCR 2-hour attainment {attainment.mean:.1f}% [{attainment.low:.1f}, "
          f"{attainment.high:.1f}]; {per_rep:.0f} measured pathways a replication")
    if args.no_record:
        return
    text = RESULTS.read_text(encoding="utf-8")
    if "## Simulation" not in text:
        text = text.rstrip("\n") + "\n" + HEADER
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    row = (f"| {datetime.now(UTC).date()} | {machine} | {args.replications} | {args.workers} "
             f"| {per_rep:.0f} (+ 28-day warm-up) | {wall:.0f} | {worker_cpu:.0f} | "
             f"{worker_cpu / args.replications:.1f} | {load:.1f} |\n")
    print(row, end="")
    RESULTS.write_text(_insert_row(text, row), encoding="utf-8")


def _insert_row(text: str, row: str) -> str:
    """After the last row of the simulation table (other sections may follow it)."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("## Simulation"))
    last = start
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("## "):
            break
        if lines[i].startswith("| 20"):
            last = i
    return "".join(lines[:last + 1] + [row] + lines[last + 1:])


if __name__ == "__main__":
    main()
