"""Console analytics pages on a large synthetic event store (SQLite), over real HTTP.

    python -m bench.console_analytics --handovers 100000

Fills a store with bench.analytics' generator (a quarter of a ten-step definition), serves the
API with its console, signs a coordinator in and times the four analytics pages for that
definition over the quarter: "cached" (the report already built: what a coordinator clicking
between tabs sees) and "rebuilt" (both report caches cleared before each view: the first view
after the store changed). Prints a table; the figures go into bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from activities.analytics import CACHE
from activities.flow_summary import catch_up
from activities.store import EventStore
from api.tokens import TokenStore
from bench.analytics import DEFINITION, PROVIDERS, QUARTER, QUARTER_START, STEPS, populate
from pathways.settings import SHIPPED_CATALOGUE
from tests.api.conftest import serve_in_thread
from tests.conftest import make_settings
from tests.ops.processes import free_port

PAGES = ["/analytics", "/analytics/providers", "/analytics/spc", "/analytics/wip"]


def catalogue(folder: Path) -> Path:
    """The shipped definitions plus the generator's ten-step one."""
    folder.mkdir()
    for definition in SHIPPED_CATALOGUE.glob("*.yaml"):
        shutil.copy(definition, folder / definition.name)
    roles = "\n".join(
        f"  - id: role-{i:02d}\n    title: Role {i}\n    providers:\n"
        + "\n".join(f"      - {{id: {p}, name: Provider {p}}}" for p in PROVIDERS[step])
        for i, step in enumerate(STEPS)
    )
    steps = "\n".join(
        f"  - id: {step}\n    title: Step {i}\n    role: role-{i:02d}\n"
        + (f"    after: [{STEPS[i - 1]}]\n" if i else "")
        + "    sla: {accept_within: PT8H, complete_within: P2D}\n"
        + "    handover:\n      - {name: note, type: text}"
        for i, step in enumerate(STEPS)
    )
    (folder / "bench-flow.yaml").write_text(
        f"id: {DEFINITION}\nversion: 1\ntitle: Bench flow\n"
        f"lead_provider: {{id: lead, name: Lead}}\nroles:\n{roles}\nsteps:\n{steps}\n"
    )
    return folder


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handovers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-console-analytics-"))
    try:
        settings = make_settings(root / "data", "127.0.0.1:1", api_port=free_port(),
                                 catalogue_dir=catalogue(root / "catalogue"),
                                 update_timeout_seconds=1)
        store = EventStore(settings.event_store)
        store.migrate()
        started = time.perf_counter()
        populate(store, args.handovers)
        catch_up(store, threading.Event())  # what the worker does at start
        print(f"filled and folded {args.handovers} handovers in "
              f"{time.perf_counter() - started:.0f} s")
        tokens = TokenStore(settings.event_store)
        tokens.migrate()
        served = serve_in_thread(settings)
        client = httpx.Client(base_url=next(served), timeout=120)
        client.get("/signin")
        signed = client.post("/signin", data={"token": tokens.issue_coordinator("bench"),
                                              "csrf": client.cookies["pathways_signin"]})
        assert signed.status_code == 303
        params = {"definition": DEFINITION, "since": QUARTER_START.date().isoformat(),
                  "until": (QUARTER_START + QUARTER).date().isoformat()}
        print("| page | cached p50 ms | cached p95 ms | rebuilt p50 ms | rebuilt p95 ms |")
        print("| --- | --- | --- | --- | --- |")
        for page in PAGES:
            figures = []
            for rebuilt in (False, True):
                times = []
                for _ in range(args.rounds if not rebuilt else max(3, args.rounds // 4)):
                    if rebuilt:
                        CACHE.clear()
                    begun = time.perf_counter()
                    answer = client.get(page, params=params)
                    times.append(time.perf_counter() - begun)
                    assert answer.status_code == 200, answer.text[-500:]
                figures += [statistics.median(times) * 1000, p95(times) * 1000]
            print(f"| {page} | " + " | ".join(f"{f:.0f}" for f in figures) + " |")
        client.close()
        served.close()
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
