"""Determinism: recorded histories replay against the current workflow code."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from pathways.catalogue import Catalogue
from pathways.demo import DEMO_PATIENTS
from pathways.settings import Settings
from tests.conftest import CONVERTER
from tests.workflows.histories import FOLDER
from tests.workflows.support import deliver_everything, start
from workflows.pathway import PathwayWorkflow
from workflows.sandbox import RUNNER

REPLAYER = Replayer(workflows=[PathwayWorkflow], data_converter=CONVERTER, workflow_runner=RUNNER)
"""The clients' converter: decrypts fresh histories, passes recorded (unencrypted) ones through."""
RECORDED = sorted(FOLDER.glob("*/*.json"))


def test_every_shipped_definition_has_a_recorded_history(catalogue: Catalogue) -> None:
    names = {path.stem for path in RECORDED}
    for definition in catalogue:
        assert definition.key.replace("@", "-v") in names, (
            f"no recorded history for {definition.key}: run python -m tests.workflows.histories"
        )


@pytest.mark.parametrize("path", RECORDED, ids=[f"{p.parent.name}/{p.stem}" for p in RECORDED])
async def test_recorded_history_replays_on_current_code(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await REPLAYER.replay_workflow(history)


async def test_fresh_histories_of_every_shipped_pathway_replay(
    dev_env: WorkflowEnvironment, worker: object, settings: Settings, catalogue: Catalogue
) -> None:
    histories = []
    for definition in catalogue:
        handle = await start(dev_env.client, settings, definition, DEMO_PATIENTS[2])
        await deliver_everything(handle)
        histories.append(await handle.fetch_history())
    for history in histories:
        await REPLAYER.replay_workflow(history)
