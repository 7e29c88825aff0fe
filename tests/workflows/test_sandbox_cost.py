"""What each workflow instance costs the worker: the sandbox re-runs workflows/pathway.py for
every instance it creates (every start, and every wake-up of a pathway evicted from the worker's
cache, which is every SLA timer once more pathways are open than the cache holds), so nothing
expensive may be built at that module's import. Building the input model's validator (it embeds
the whole definition and state schemas) was most of it: bench/scale.py."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic._internal import _model_construction
from temporalio.testing import WorkflowEnvironment

from pathways.demo import DEMO_PATIENTS
from pathways.settings import Settings
from tests.workflows.support import TWO_DAY, start, state_of

CARRIED = {"PathwayInput", "PathwayResult", "Outgoing"}


@pytest.fixture
def env(skipping_env: WorkflowEnvironment, skipping_worker: object) -> WorkflowEnvironment:
    return skipping_env


async def test_a_new_workflow_instance_does_not_rebuild_the_carried_models(
    env: WorkflowEnvironment, skipping_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    metaclass = _model_construction.ModelMetaclass
    original = metaclass.__new__

    def recording(mcs: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        built.append(name)
        return original(mcs, name, *args, **kwargs)

    monkeypatch.setattr(metaclass, "__new__", staticmethod(recording))
    handles = [
        await start(env.client, skipping_settings, TWO_DAY, patient) for patient in DEMO_PATIENTS[:3]
    ]
    for handle in handles:  # each one's workflow instance exists and answers
        assert (await state_of(handle)).pathway_id == handle.id

    assert not CARRIED & set(built), f"built again in the sandbox: {sorted(CARRIED & set(built))}"
