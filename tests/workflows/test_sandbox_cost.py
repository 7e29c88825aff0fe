"""What each workflow instance costs the worker: the sandbox re-runs workflows/pathway.py for
every instance it creates (every start, and every wake-up of a pathway evicted from the worker's
cache, which is every SLA timer once more pathways are open than the cache holds), so nothing
expensive may be built at that module's import. Building the input model's validator (it embeds
the whole definition and state schemas) was most of it: bench/scale.py."""

from __future__ import annotations

import sys
from importlib._bootstrap_external import SourceLoader  # where a module is compiled
from pathlib import Path
from typing import Any

import pytest
from pydantic._internal import _model_construction
from temporalio.testing import WorkflowEnvironment

import workflows
from pathways.demo import DEMO_PATIENTS
from pathways.settings import Settings
from tests.workflows.support import TWO_DAY, start, state_of
from workflows.sandbox import precompile, write_bytecode

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


async def test_a_new_workflow_instance_does_not_compile_the_workflow_from_source(
    env: WorkflowEnvironment,
    skipping_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """With no .pyc (PYTHONDONTWRITEBYTECODE, as here and in many containers) the sandbox
    compiles workflows/pathway.py for every instance: the worker writes the .pyc at start."""
    compiled: list[str] = []
    original = SourceLoader.source_to_code

    def recording(self: Any, data: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(str(path))
        return original(self, data, path, *args, **kwargs)

    async def start_three() -> list[str]:
        compiled.clear()
        for patient in DEMO_PATIENTS[:3]:
            handle = await start(env.client, skipping_settings, TWO_DAY, patient)
            assert (await state_of(handle)).pathway_id == handle.id
        return [p for p in compiled if Path(p).parent.name == "workflows"]

    monkeypatch.setattr(SourceLoader, "source_to_code", recording)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    package = Path(workflows.__file__).parent
    for cached in package.glob("__pycache__/*.pyc"):  # as if the worker had not written them
        cached.unlink()
    assert len(await start_three()) >= 3, "each instance compiled the workflow from source"

    written = precompile(tmp_path / "pycache")
    assert {p.name.split(".")[0] for p in written} >= {"__init__", "pathway", "search"}
    assert await start_three() == []


def test_bytecode_goes_to_the_fallback_prefix_when_the_source_dir_cannot_take_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "readonly"
    package.mkdir()
    (package / "module.py").write_text("VALUE = 1\n")
    (package / "__pycache__").write_text("a file where the cache folder would go\n")
    monkeypatch.setattr(sys, "pycache_prefix", None)
    written = write_bytecode(str(package / "module.py"), tmp_path / "prefix")
    assert written.is_relative_to((tmp_path / "prefix").resolve()) and written.exists()
    assert sys.pycache_prefix == str((tmp_path / "prefix").resolve())
