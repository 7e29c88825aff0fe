"""Fault-test fixtures: a whole installation in processes, fresh per test (see harness.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.faults.harness import Cluster

PATHWAYS = int(os.environ.get("PATHWAYS_FAULT_PATHWAYS", "60"))
"""Pathways per fault test (three handovers each); 60 keeps CI short, PATHWAYS_FAULT_PATHWAYS=200 for a longer run."""


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    running = Cluster(tmp_path / "install")
    try:
        await running.start()
        yield running
    finally:
        await running.close()
