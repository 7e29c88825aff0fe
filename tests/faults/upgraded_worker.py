"""`python -m tests.faults.upgraded_worker`: `pathways worker` deployed with the upgraded
workflow (tests/faults/upgraded_workflow.py) in place of the current one; same settings."""

from __future__ import annotations

import asyncio
import os

import worker.main
from pathways.logs import configure_logging
from pathways.settings import Settings
from tests.faults.upgraded_workflow import UpgradedPathwayWorkflow


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    worker.main.PathwayWorkflow = UpgradedPathwayWorkflow  # type: ignore[misc]
    asyncio.run(worker.main.run_worker(settings))
    os._exit(0)  # the SDK runtime can crash the interpreter at exit (sdk-python issue 300)


if __name__ == "__main__":
    main()
