"""Replications in processes, and the side-by-side answer: baseline and each change with 95%
confidence intervals, plus each change's paired difference from the baseline.

Replication r of every variant uses the same random streams (seed, r): common random numbers,
so a difference reflects the change rather than luck, and its paired interval is narrow. Results
come back in replication order whatever the number of processes: same seed, same answer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from pathways.simulation.loop import run_replication
from pathways.simulation.metrics import Estimate, ReplicationResult, estimate
from pathways.simulation.scenario import Variant


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def run_variant(variant: Variant, replications: int, seed: int,
                workers: int = 1) -> list[ReplicationResult]:
    """All replications of one variant, in replication order."""
    return _run([variant], replications, seed, workers)[0]


Progress = Callable[[int, int], None]
"""Told (replications done, replications in all) after each one: the console's progress bar."""


def _run(variants: Sequence[Variant], replications: int, seed: int, workers: int,
         progress: Progress | None = None) -> list[list[ReplicationResult]]:
    tasks = [(v, r) for v in variants for r in range(replications)]
    flat: list[ReplicationResult] = []
    if workers <= 1 or len(tasks) <= 1:
        for v, r in tasks:
            flat.append(run_replication(v, r, seed))
            if progress is not None:
                progress(len(flat), len(tasks))
    else:
        # Chunks of one or two replications: a worker slowed by other work on the machine
        # gets fewer of them, so both finish at about the same time.
        size = max(1, len(tasks) // (workers * 8))
        chunks = [tasks[i:i + size] for i in range(0, len(tasks), size)]
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            for results in pool.map(_run_chunk, chunks, [seed] * len(chunks)):
                flat.extend(results)
                if progress is not None:
                    progress(len(flat), len(tasks))
    return [flat[i * replications:(i + 1) * replications] for i in range(len(variants))]


def _run_chunk(chunk: Sequence[tuple[Variant, int]], seed: int) -> list[ReplicationResult]:
    return [run_replication(v, r, seed) for v, r in chunk]


@dataclass
class Column:
    """One variant's answer: an estimate per measure, and its difference from the baseline."""

    name: str
    description: str
    estimates: dict[str, Estimate]
    differences: dict[str, Estimate]
    series: dict[str, list[float]]


@dataclass
class Comparison:
    scenario: str
    replications: int
    seed: int
    columns: list[Column]
    targets: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "replications": self.replications,
            "seed": self.seed,
            "confidence": 0.95,
            "targets_pct": self.targets,
            "variants": [
                {
                    "name": c.name,
                    "description": c.description,
                    "measures": {k: e.as_dict() for k, e in sorted(c.estimates.items())},
                    "difference_from_baseline": {
                        k: e.as_dict() for k, e in sorted(c.differences.items())},
                    "weekly": {k: [round(x, 3) for x in v] for k, v in sorted(c.series.items())},
                }
                for c in self.columns
            ],
        }


def compare(scenario_name: str, variants: Sequence[Variant], replications: int, seed: int,
            workers: int = 1, progress: Progress | None = None) -> Comparison:
    """Run every variant and summarise them side by side (the first is the baseline)."""
    results = _run(variants, replications, seed, workers, progress)
    baseline = results[0]
    columns = []
    for variant, reps in zip(variants, results, strict=True):
        keys = sorted({k for r in reps for k in r.scalars})
        estimates = {k: estimate([r.scalars.get(k, math.nan) for r in reps]) for k in keys}
        differences = {}
        if reps is not baseline:
            for k in keys:
                paired = [r.scalars.get(k, math.nan) - b.scalars.get(k, math.nan)
                          for r, b in zip(reps, baseline, strict=True)]
                differences[k] = estimate(paired)
        columns.append(Column(variant.name, variant.description, estimates, differences,
                              weekly_means(reps)))
    targets = {s.name: 100.0 * s.target for s in variants[0].standards}
    return Comparison(scenario_name, replications, seed, columns, targets)


def weekly_means(reps: Sequence[ReplicationResult]) -> dict[str, list[float]]:
    """Daily snapshots averaged over replications, then over each week: WIP over time."""
    result = {}
    for key in sorted({k for r in reps for k in r.series}):
        days = min(len(r.series.get(key, [])) for r in reps)
        daily = [sum(r.series[key][d] for r in reps) / len(reps) for d in range(days)]
        result[key] = [sum(daily[w:w + 7]) / len(daily[w:w + 7]) for w in range(0, days, 7)]
    return result
